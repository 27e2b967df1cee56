"""The Clarity LIMS sync flow: client, transform and tables wired into the shared engine.

Incremental syncs ask the server for the projects modified since a watermark
(``last-modified``) instead of fetching every project:

- Each project loaded gets as its cursor the time its listing began, **by the server's
  clock** (the ``Date`` header of the first list page; the local clock only when the
  server sends none), tagged with a per-run nonce (``2026-11-22T18:30:05Z~1a2b3c4d``).
  Using the server's clock for both ends removes the skew between our clock and the
  server's ``last-modified`` stamps. The nonce makes every listed project count as changed
  even when two runs start within the same second: a project on a ``last-modified`` list
  has changed by definition, and the list says nothing finer to compare.
- The next run's watermark is the latest cursor of the account minus a safety overlap
  (``overlap_s``, 5 minutes by default) that covers changes committed late with an
  earlier stamp and the Date header's one-second resolution. Projects modified inside the
  overlap are fetched again: harmless (each load replaces the project whole).
- No known project (first run) or ``mode="full_refresh"``: the whole (user-filtered) list
  is read, every project fetched, and projects missing from it are marked deleted. A
  ``last-modified`` list is incomplete by nature, so **deletions are only detected by a
  full refresh**.
- A project that keeps failing in an incremental run (after every retry), or that a
  crashed run never reached, is not listed again unless it changes again or falls in the
  overlap: the run is recorded ``partial``/``failed`` in ``pipeline.runs``; follow such a
  run with ``--full-refresh`` (or ``since=`` the failed run's start).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect import flow

from flows.engine import MODES, Listing, Unit
from flows.runner import sync_into_warehouse
from flows.secrets import read_secret
from schemas import clarity as tables
from sources.clarity.client import (
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    ClarityClient,
    filter_params,
    format_timestamp,
    parse_timestamp,
)
from sources.http import HttpSettings
from transforms.clarity import FetchedProject, transform_projects
from transforms.frames import TableBatch
from warehouse.load import UnitState

log = logging.getLogger("pwh.clarity")

DEFAULT_OVERLAP_S = 300.0


def unit_cursor(as_of: datetime, nonce: str) -> str:
    return f"{format_timestamp(as_of)}~{nonce}"


def cursor_time(cursor: str) -> datetime:
    """The listing time of a cursor made by :func:`unit_cursor` (ValueError otherwise)."""
    return parse_timestamp(cursor.split("~", 1)[0])


def watermark(known: Mapping[str, UnitState], overlap: timedelta) -> datetime | None:
    """The ``last-modified`` to ask for: the latest cursor minus the overlap; None (list
    everything) when no cursor is known."""
    latest: datetime | None = None
    for state in known.values():
        if not state.cursor:
            continue
        try:
            when = cursor_time(state.cursor)
        except ValueError:
            continue  # not a time stamp (hand-edited state?): it cannot move the watermark
        latest = when if latest is None or when > latest else latest
    return None if latest is None else latest - overlap


def _identity(value: Any) -> Any:
    return value


class ClarityAdapter:
    source = "clarity"
    tables = tables.TABLES
    strategy = None

    def __init__(
        self,
        client: ClarityClient,
        *,
        account: str,
        mode: str = "incremental",
        filters: Sequence[tuple[str, str]] = (),
        overlap: timedelta = timedelta(seconds=DEFAULT_OVERLAP_S),
        since: datetime | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
        self.client = client
        self.account = account
        self.mode = mode
        self.filters = list(filters)
        self.overlap = overlap
        self.since = since
        self.udf_parse_errors = 0
        self.redact = _identity  # no patient data in Clarity projects: raw records kept as sent

    async def __aenter__(self) -> ClarityAdapter:
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

    def since_for(self, known: Mapping[str, UnitState]) -> datetime | None:
        if self.mode == "full_refresh":
            return None
        if self.since is not None:
            return self.since
        return watermark(known, self.overlap)

    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        since = self.since_for(known)
        params = list(self.filters)
        if since is not None:
            params.append(("last-modified", format_timestamp(since)))
        listing = await self.client.list_projects(params)
        as_of = listing.server_time
        if as_of is None:
            log.warning("the Clarity server sent no Date header; the local clock dates this listing")
            as_of = datetime.now(timezone.utc)
        cursor = unit_cursor(as_of, secrets.token_hex(4))
        units, unnamed = [], 0
        for link in listing.links:
            limsid = link.get("limsid")
            if not limsid:
                unnamed += 1
                continue
            units.append(Unit(limsid, cursor, link))
        if unnamed:
            log.warning("the project list held %d links without a limsid; they cannot be fetched", unnamed)
        log.info("clarity/%s: %d projects listed in %d pages (%s)", self.account, len(units), listing.pages,
                 f"modified since {format_timestamp(since)}" if since else "complete list")
        return Listing(units, complete=since is None)

    async def fetch_unit(self, unit: Unit) -> FetchedProject:
        return FetchedProject(unit.key, unit.listed, await self.client.fetch_project(unit.key))

    def transform(self, fetched: list[FetchedProject]) -> TableBatch:
        batch, parse_errors = transform_projects(fetched, account=self.account)
        self.udf_parse_errors += parse_errors
        return batch


@flow(name="sync-clarity", log_prints=False, validate_parameters=True)
async def sync_clarity(
    base_url: str,
    db_path: str = "warehouse.duckdb",
    account: str = "default",
    mode: str = "incremental",
    names: list[str] | None = None,
    open_date: str | None = None,
    udf: list[str] | None = None,
    since: str | None = None,
    overlap_s: float = DEFAULT_OVERLAP_S,
    concurrency: int = 8,
    batch_size: int = 250,
    timeout_s: float = 60.0,
    max_attempts: int = 6,
    max_response_bytes: int | None = None,
) -> dict[str, Any]:
    """Sync the Clarity LIMS projects of one instance (``base_url``: ``https://host/api/v2``)
    into the DuckDB warehouse at ``db_path``.

    Filters are passed to the project list as given: ``names`` (``name=``), ``open_date``
    (YYYY-MM-DD, opened since), ``udf`` (``udf.NAME=VALUE``, ``udt.name=UDTNAME``,
    ``udt.UDTNAME.UDFNAME=VALUE``). ``since`` (ISO 8601 with zone) overrides the computed
    watermark of an incremental run. Credentials come from CLARITY_USERNAME and
    CLARITY_PASSWORD (or Prefect Secret blocks ``clarity-username`` / ``clarity-password``),
    never from parameters.
    """
    username = read_secret(USERNAME_VARIABLE)
    password = read_secret(PASSWORD_VARIABLE)
    if overlap_s < 0:
        raise ValueError("overlap_s must not be negative")
    filters = filter_params(names or (), open_date, udf or ())
    cap = {} if max_response_bytes is None else {"max_response_bytes": max_response_bytes}
    settings = HttpSettings(concurrency=concurrency, timeout_s=timeout_s, max_attempts=max_attempts, **cap)
    client = ClarityClient.connect(base_url, username=username, password=password, settings=settings)
    adapter = ClarityAdapter(
        client, account=account, mode=mode, filters=filters, overlap=timedelta(seconds=overlap_s),
        since=parse_timestamp(since) if since else None,
    )
    summary = await sync_into_warehouse(adapter, db_path=db_path, tables=tables.TABLES, mode=mode,
                                        batch_size=batch_size)
    summary["udf_parse_errors"] = adapter.udf_parse_errors
    if adapter.udf_parse_errors:
        log.warning("%d UDF values do not parse as their declared type; kept as text "
                    "(clarity.project_udfs.parse_error)", adapter.udf_parse_errors)
    return summary
