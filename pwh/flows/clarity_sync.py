"""The Clarity LIMS adapter (its sync is made from the registry: pwh/flows/syncs.py): client, transform and tables wired into the shared engine.

Incremental syncs ask the server for the projects modified since a watermark
(``last-modified``) instead of fetching every project:

- Each project loaded gets as its cursor a mark of the listing that named it:
  ``<as of>~<run>~<listed>~<since>``, e.g. ``2026-11-22T18:30:05Z~1a2b3c4d~42~2026-11-22T17:55:00Z``.
  *as of* is when the listing began: the **earlier** of the server's clock (the ``Date``
  header of the first list page) and ours (read before the request). The server stamps
  ``last-modified`` by its own clock, so its ``Date`` is the right measure, but a
  ``Date`` that runs ahead (seen: two hours, for one run) would move the watermark past
  changes not made yet, and they would never be listed; a watermark too early only
  refetches a few projects. The project list carries no ``last-modified`` of its own, so
  the data cannot vouch for the time instead. *run* is a nonce of
  the listing: every listed project counts as changed even when two runs start within the
  same second (a project on a ``last-modified`` list has changed by definition, and the
  list says nothing finer). *listed* is how many projects the listing named, *since* the
  ``last-modified`` it asked for (empty for a complete list).
- The next run's watermark is the latest listing's *as of* (never later than our clock
  now: marks written by an earlier version may lie in the future) minus a safety overlap
  (``overlap_s``, 5 minutes by default) covering changes committed late with an earlier
  stamp and the Date header's one-second resolution. Projects modified inside the overlap
  are fetched again: harmless (each load replaces the project whole).
- **Unless that listing was not loaded whole** (fewer projects carry its mark than it
  listed: a project failed after every retry, answered 404, or the run died): then the
  next run asks again for that listing's own window (its *since*; a complete list if it
  was one), so nothing it named is lost. A project that keeps failing keeps the window
  open until it loads.
- No known project (first run) or ``mode="full_refresh"``: the whole (user-filtered) list
  is read, every project fetched, and projects missing from it are marked deleted. A
  ``last-modified`` list is incomplete by nature, so **deletions are only detected by a
  full refresh**.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from pwh.flows.engine import MODES, ClientAdapter, Listing, Unit
from pwh.flows.registry import CLARITY
from pwh.flows.runner import OpenedAdapter
from pwh.flows.secrets import read_secret
from pwh.flows.streams import UnitStreams
from pwh.schemas import clarity as tables
from pwh.sources.clarity.client import (
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    ClarityClient,
    filter_params,
    format_timestamp,
    parse_timestamp,
)
from pwh.sources.http import HttpSettings
from pwh.transforms.clarity import FetchedProject, last_segment, transform_dimensions, transform_projects
from pwh.transforms.frames import TableBatch
from pwh.transforms.redact import redact_unknown_source
from pwh.warehouse.load import UnitState

log = logging.getLogger("pwh.clarity")

DEFAULT_OVERLAP_S = 300.0


@dataclass(frozen=True)
class ListingMark:
    """What a project's cursor records about the listing that named it."""

    as_of: datetime  # when the listing began, by the server's clock
    run: str  # nonce of the listing
    listed: int | None  # projects it named (None: not recorded)
    since: datetime | None  # the last-modified it asked for (None: a complete list)

    def cursor(self) -> str:
        since = format_timestamp(self.since) if self.since else ""
        return f"{format_timestamp(self.as_of)}~{self.run}~{'' if self.listed is None else self.listed}~{since}"

    @classmethod
    def parse(cls, cursor: str) -> ListingMark:
        """The mark in a cursor (ValueError when it is none)."""
        as_of, run, listed, since = (cursor.split("~") + ["", "", ""])[:4]
        return cls(parse_timestamp(as_of), run, int(listed) if listed else None,
                   parse_timestamp(since) if since else None)


def watermark(known: Mapping[str, UnitState], overlap: timedelta) -> datetime | None:
    """The ``last-modified`` to ask for; None: read the complete list.

    The latest listing's time minus the overlap when every project it named was loaded;
    that listing's own window again when some were not."""
    marks: dict[str, ListingMark] = {}
    loaded: Counter[str] = Counter()
    for state in known.values():
        if not state.cursor:
            continue
        try:
            mark = ListingMark.parse(state.cursor)
        except ValueError:
            continue  # not a mark (hand-edited state?): it cannot move the watermark
        marks[mark.run] = mark
        loaded[mark.run] += 1
    if not marks:
        return None
    latest_time = max(m.as_of for m in marks.values())
    latest = [m for m in marks.values() if m.as_of == latest_time]
    unfinished = [m for m in latest if m.listed is not None and loaded[m.run] < m.listed]
    if not unfinished:
        return min(latest_time, datetime.now(timezone.utc)) - overlap
    missing = sum(m.listed - loaded[m.run] for m in unfinished if m.listed is not None)
    sinces = [m.since for m in unfinished if m.since is not None]
    since = min(sinces) if len(sinces) == len(unfinished) else None  # a complete listing among them: None
    log.warning(
        "the last listing (%s) named %d projects that were not loaded (failed, gone, or the run "
        "stopped); asking again for its whole window (%s)", format_timestamp(latest_time), missing,
        f"modified since {format_timestamp(since)}" if since else "complete list",
    )
    return since


class ClarityAdapter(ClientAdapter[ClarityClient]):
    source = "clarity"
    streams = CLARITY.streams
    dimension_tables = tables.DIMENSION_TABLES
    # A run reads the details of the files of the projects it fetched only: others stay.
    upserted_dimensions = frozenset({"files"})
    tables = tables.TABLES

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
        self.file_uris: set[str] = set()  # the files of the projects fetched, for their details
        # No patient subject in Clarity projects: the key and link rules only.
        self.redact = redact_unknown_source

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
        local_start = datetime.now(timezone.utc)
        listing = await self.client.list_projects(params)
        as_of = listing.server_time
        if as_of is None:
            log.warning("the Clarity server sent no Date header; the local clock dates this listing")
            as_of = local_start
        elif as_of > local_start + self.overlap:
            log.warning("the Clarity server's clock (Date: %s) is ahead of ours (%s); the listing is dated "
                        "by ours", format_timestamp(as_of), format_timestamp(local_start))
        as_of = min(as_of, local_start)
        named: dict[str, dict[str, Any]] = {}
        unnamed = 0
        for link in listing.links:
            limsid = link.get("limsid")
            if not limsid:
                unnamed += 1
                continue
            named.setdefault(limsid, link)
        cursor = ListingMark(as_of, secrets.token_hex(4), len(named), since).cursor()
        units = [Unit(limsid, cursor, link) for limsid, link in named.items()]
        if unnamed:
            log.warning("the project list held %d links without a limsid; they cannot be fetched", unnamed)
        if len(named) + unnamed < len(listing.links):
            log.warning("the project list named %d projects more than once; each is synced once",
                        len(listing.links) - len(named) - unnamed)
        log.info("clarity/%s: %d projects listed in %d pages (%s)", self.account, len(units), listing.pages,
                 f"modified since {format_timestamp(since)}" if since else "complete list")
        return Listing(units, complete=since is None)

    async def fetch_unit(self, unit: Unit, streams: UnitStreams) -> FetchedProject:
        project = await self.client.fetch_project(unit.key)
        self.file_uris.update(f["uri"] for f in project.get("files", []) if f.get("uri"))
        return FetchedProject(unit.key, unit.entry, project)

    def transform(self, fetched: list[FetchedProject]) -> TableBatch:
        batch, parse_errors = transform_projects(fetched, account=self.account)
        self.udf_parse_errors += parse_errors
        return batch

    async def fetch_dimension(self, name: str) -> Any:
        """``researchers``: the researcher list, each researcher's detail (its lab: the
        list does not say) once, concurrently, and the lab list (the labs' names).
        ``file_details``: one batch retrieve (per 500) of the files of the projects fetched."""
        if name == "file_details":
            return await self.client.fetch_file_details(sorted(self.file_uris))
        if name != "researchers":
            raise ValueError(f"clarity has no dimension stream {name!r}")
        links, labs = await asyncio.gather(self.client.list_researchers(), self.client.list_labs())
        ids = sorted({rid for rid in (last_segment(link.get("uri")) for link in links) if rid})
        details = await asyncio.gather(*(self.client.fetch_researcher(rid) for rid in ids))
        return {"researchers": list(details), "labs": labs}

    def transform_dimensions(self, fetched: Mapping[str, Any]) -> TableBatch:
        return transform_dimensions(fetched, account=self.account)


def open_clarity(parameters: dict[str, Any], settings: HttpSettings) -> OpenedAdapter:
    """The adapter of a sync's parameters (pwh/flows/syncs.py); ``base_url``: ``https://host/api/v2``.

    Filters are passed to the project list as given: ``names`` (``name=``), ``open_date``
    (YYYY-MM-DD, opened since), ``udf`` (``udf.NAME=VALUE``, ``udt.name=UDTNAME``,
    ``udt.UDTNAME.UDFNAME=VALUE``). ``since`` (ISO 8601 with zone) overrides the computed
    watermark of an incremental run. Credentials come from CLARITY_USERNAME and
    CLARITY_PASSWORD (or Prefect Secret blocks ``clarity-username`` / ``clarity-password``).

    Once a run, after the projects, the researchers (names and lab) are loaded into
    ``clarity.researchers``; if they cannot be read (e.g. 403) their rows are kept and the
    run ends ``partial``.
    """
    username = read_secret(USERNAME_VARIABLE)
    password = read_secret(PASSWORD_VARIABLE)
    if parameters["overlap_s"] < 0:
        raise ValueError("overlap_s must not be negative")
    filters = filter_params(parameters["names"] or (), parameters["open_date"], parameters["udf"] or ())
    client = ClarityClient.connect(parameters["base_url"], username=username, password=password, settings=settings)
    since = parameters["since"]
    adapter = ClarityAdapter(client, account=parameters["account"], mode=parameters["mode"], filters=filters,
                             overlap=timedelta(seconds=parameters["overlap_s"]),
                             since=parse_timestamp(since) if since else None)

    def report(summary: dict[str, Any]) -> None:
        summary["udf_parse_errors"] = adapter.udf_parse_errors
        if adapter.udf_parse_errors:
            log.warning("%d UDF values do not parse as their declared type; kept as text "
                        "(clarity.project_udfs.parse_error)", adapter.udf_parse_errors)

    return OpenedAdapter(adapter, tables.TABLES + tables.DIMENSION_TABLES, report=report)
