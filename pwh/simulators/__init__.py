"""Simulated source APIs for tests, the demo and the benchmark: a deterministic dataset
per source served by an aiohttp app with injectable faults. Never imported by the API
clients or the flows (the layer contract in pyproject.toml)."""
