"""The fixed sets of values CLI options take, as enums: typer lists them in ``--help``,
refuses anything else in one line, and completes them in the shell. A module of its own
so the CLI knows them without importing Prefect or aiohttp; tests/test_cli_errors.py
checks each against the tuple its module accepts."""

from __future__ import annotations

from enum import Enum

from pwh.flows.registry import names

# Simulated sources ``pwh demo`` syncs: every source of the registry, or all of them.
DemoSource = Enum("DemoSource", {name: name for name in (*names(), "all")}, type=str)  # type: ignore[misc]


class Auth(str, Enum):
    """Incoplax authentication scheme (pwh.sources.incoplax.client)."""

    bearer = "bearer"
    basic = "basic"


class LookupKey(str, Enum):
    """Which key ``pwh incoplax lookup`` matches."""

    code = "code"
    id = "id"
