"""Shared fixtures: real parts only (aiohttp servers on 127.0.0.1, DuckDB files, Prefect
flow runs under one test harness per session)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Deterministic, distinctive secrets: tests grep the warehouse and logs for them.
os.environ.setdefault("PWH_PSEUDONYM_KEY", "test-pseudonym-key-0123456789abcdef")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One Prefect test harness per session: it costs 8–12 s to start."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """A real `prefect server start` (its own PREFECT_HOME, a free loopback port) for the
    tests that need one: scheduled runs and `pwh` subprocesses (a flow run in a fresh
    process costs ~4 s with a server, 10–19 s without). Yields the API URL. Its home is
    outside pytest's basetemp, which concurrent pytest sessions prune."""
    import tempfile
    from pathlib import Path

    from tests.live import prefect_server as start_server

    with tempfile.TemporaryDirectory(prefix="pwh-prefect-home-") as home:
        with start_server(Path(home)) as api_url:
            yield api_url
