"""The fixed sets of values CLI options take, as enums: typer lists them in ``--help``,
refuses anything else in one line, and completes them in the shell. A module of its own
so the CLI knows them without importing Prefect or aiohttp; tests/test_cli_errors.py
checks each against the tuple its module accepts."""

from __future__ import annotations

from enum import Enum


class Strategy(str, Enum):
    """RAYTeams fetch strategy (pwh.sources.rayteams.client.STRATEGIES)."""

    aggregate = "aggregate"
    per_resource = "per_resource"


class FileType(str, Enum):
    """RAYTeams file type (pwh.flows.rayteams_sync.FILE_TYPES)."""

    maxilla = "maxilla"
    mandible = "mandible"
    face = "face"


class Listing(str, Enum):
    """Incoplax listing (pwh.flows.incoplax_sync.LISTINGS)."""

    auto = "auto"
    minimal = "minimal"
    recent = "recent"


class DemoSource(str, Enum):
    """Simulated sources ``pwh demo`` syncs (pwh.demo.DEMO_SOURCES)."""

    rayteams = "rayteams"
    openproject = "openproject"
    all = "all"


class Auth(str, Enum):
    """Incoplax authentication scheme (pwh.sources.incoplax.client)."""

    bearer = "bearer"
    basic = "basic"


class LookupKey(str, Enum):
    """Which key ``pwh incoplax lookup`` matches."""

    code = "code"
    id = "id"
