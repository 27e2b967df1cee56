"""The RAYTeams sync flow: the client, transform and tables wired into the engine."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow

from flows.engine import Listing, Unit
from flows.runner import sync_into_warehouse
from flows.secrets import read_secret
from schemas import rayteams as tables
from sources.http import HttpSettings
from sources.rayteams.client import (
    CLIENT_ID_VARIABLE,
    DEFAULT_STRATEGY,
    TOKEN_VARIABLE,
    RayteamsClient,
)
from transforms.coerce import CoercionError, as_epoch_ms
from transforms.frames import TableBatch
from transforms.pseudonym import Pseudonymizer, load_key
from transforms.rayteams import FetchedProject, transform_projects
from transforms.redact import redact
from warehouse.load import UnitState

log = logging.getLogger("pwh.rayteams")


class RayteamsAdapter:
    source = "rayteams"
    tables = tables.TABLES

    def __init__(self, client: RayteamsClient, *, account: str, strategy: str, pseudonyms: Pseudonymizer) -> None:
        self.client = client
        self.account = account
        self.strategy = strategy
        self.pseudonyms = pseudonyms
        self.redact = partial(redact, pseudonyms=pseudonyms)

    async def __aenter__(self) -> RayteamsAdapter:
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.__aexit__(*exc)

    @property
    def requests(self) -> int:
        return self.client.requests

    @property
    def retries(self) -> int:
        return self.client.retries

    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        # GET /project has no server-side filter: list everything, compare cursors.
        units = []
        unnamed = 0
        for record in await self.client.list_projects():
            project_id = record.get("_id") if isinstance(record, dict) else None
            if not isinstance(project_id, str) or not project_id:
                unnamed += 1
                continue
            units.append(Unit(project_id, project_cursor(record), record))
        if unnamed:
            log.warning("the project list held %d entries without an _id; they cannot be fetched", unnamed)
        return Listing(units)

    async def fetch_unit(self, unit: Unit) -> FetchedProject:
        payload = await self.client.fetch_project(unit.key, self.strategy)
        return FetchedProject(unit.key, unit.listed, payload.records, payload.files)

    def transform(self, fetched: list[FetchedProject]) -> TableBatch:
        return transform_projects(fetched, account=self.account, pseudonyms=self.pseudonyms)


def project_cursor(record: dict[str, Any]) -> str | None:
    """The incremental cursor of a listed project: its `updated` (epoch ms) as text.
    None (unreadable) makes the project count as changed on every run."""
    try:
        updated = as_epoch_ms(record.get("updated"), "updated")
    except CoercionError:
        return None
    return None if updated is None else str(updated)


def default_key_file(db_path: str) -> Path:
    """Pseudonyms must match across runs of one warehouse: its key lives beside it."""
    return Path(db_path).resolve().parent / ".pwh" / "pseudonym.key"


@flow(name="sync-rayteams", log_prints=False, validate_parameters=True)
async def sync_rayteams(
    base_url: str,
    db_path: str = "warehouse.duckdb",
    account: str = "default",
    mode: str = "incremental",
    strategy: str = DEFAULT_STRATEGY,
    concurrency: int = 32,
    batch_size: int = 250,
    timeout_s: float = 30.0,
    max_attempts: int = 6,
    max_response_bytes: int | None = None,
) -> dict[str, Any]:
    """Sync every RAYTeams project of one account into the DuckDB warehouse at ``db_path``.

    Credentials come from RAYTEAMS_TOKEN and RAYTEAMS_CLIENT_ID (or Prefect Secret blocks
    ``rayteams-token`` / ``rayteams-client-id``), the pseudonym key from PWH_PSEUDONYM_KEY
    (or a key file beside the warehouse); none of them is a parameter.
    """
    token = read_secret(TOKEN_VARIABLE)
    client_id = read_secret(CLIENT_ID_VARIABLE)
    pseudonyms = Pseudonymizer(load_key(default_key_file(db_path)))
    # No cap given: PWH_MAX_RESPONSE_BYTES, else 64 MiB (HttpSettings' default).
    cap = {} if max_response_bytes is None else {"max_response_bytes": max_response_bytes}
    settings = HttpSettings(concurrency=concurrency, timeout_s=timeout_s, max_attempts=max_attempts, **cap)
    client = RayteamsClient.connect(base_url, token=token, client_id=client_id, settings=settings)
    return await sync_into_warehouse(
        RayteamsAdapter(client, account=account, strategy=strategy, pseudonyms=pseudonyms),
        db_path=db_path, tables=tables.TABLES, mode=mode, batch_size=batch_size,
    )
