"""The Incoplax adapter (the sync is pwh/flows/syncs.py's, from the registry): a domain's projects into ``incoplax.projects``.

Incremental by ``ext.lwt`` through the engine's per-unit cursors. The list has no
documented server-side time filter, so a run has to list to learn what changed; how it
lists (``listing``):

- ``auto`` (default): on the first run (nothing synced yet) and in full refresh, the list
  without a mask, so an entry that carries every field (``opts`` included) needs no
  detail request; otherwise ``minimal``.
- ``minimal``: the whole list with ``mask=id,ext.lwt`` (~60 bytes a project, one request
  per page), then one ``GET /projects/{id}`` per new or changed project (the list cannot
  output ``opts.comment``). The listing is complete, so deletions are seen every run.
- ``recent``: ``order=[{"ext.lwt":"desc"}]`` with the minimal mask, stopping at the first
  page that reaches below the newest committed ``ext.lwt``: usually one request when
  little changed, but the listing is incomplete (``Listing(complete=False)``: absence
  proves nothing, so deletions are not seen) and a project skipped by an offset shift
  while paging can be missed until the next complete listing. If the server ignores
  ``order`` (the answer is not sorted descending), the scan goes on to the end and is
  complete after all.

Cost, for N projects, page size P, C changed: ``minimal`` is N/P + 1 list requests + C
detail requests (10,000 projects, P = 500: 21 small requests, ~0.6 MB); ``recent`` is
~1 + C. The ~20 requests ``minimal`` spends buy deletions on every run and self-healing
(a missed change is caught by the next complete listing, as each project is compared with
its own cursor), so it is the default; ``recent`` suits very large domains synced often,
with a scheduled ``minimal`` run for deletions.

A complete listing over offset paging can miss a project when another is deleted while
the pages are read (everything after it shifts one place left). Before the engine marks
a known project deleted because the listing lacks it, the adapter asks for it
(``GET /projects/{id}?mask=id,ext.lwt``): only a 404 confirms the deletion, a found
project is synced as listed, and an error leaves it as it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TypedDict

from pwh.flows.engine import ClientAdapter, Listing, Unit, listed_units
from pwh.flows.runner import OpenedAdapter
from pwh.flows.secrets import read_secret
from pwh.flows.streams import UnitStreams
from pwh.schemas import incoplax as tables
from pwh.sources.errors import AuthError, NotFoundError, SourceError
from pwh.sources.http import HttpSettings
from pwh.sources.incoplax.client import (
    MINIMAL_MASK,
    PASSWORD_VARIABLE,
    ROW_FIELDS,
    TOKEN_VARIABLE,
    USERNAME_VARIABLE,
    IncoplaxClient,
    check_filter,
    check_mask,
    field_value,
    has_fields,
)
from pwh.transforms.frames import TableBatch
from pwh.transforms.incoplax import FetchedProject, transform_projects
from pwh.transforms.redact import redact_unknown_source
from pwh.warehouse.load import UnitState

log = logging.getLogger("pwh.incoplax")

LISTINGS = ("auto", "minimal", "recent")
# A stable order for offset paging (without one, a server may order each page
# differently); None sends no order.
DEFAULT_ORDER: tuple[Any, ...] = ("id",)
RECENT_ORDER: tuple[Any, ...] = ({"ext.lwt": "desc"},)


def parse_lwt(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def project_cursor(entity: Mapping[str, Any]) -> str | None:
    """``ext.lwt`` as sent; None (unreadable) makes the project count as changed."""
    lwt = field_value(entity, "ext.lwt")
    return lwt if isinstance(lwt, str) and lwt else None


class IncoplaxAdapter(ClientAdapter[IncoplaxClient]):
    source = "incoplax"
    tables = tables.TABLES
    redact = staticmethod(redact_unknown_source)

    def __init__(self, client: IncoplaxClient, *, account: str, mode: str = "incremental",
                 listing: str = "auto", order: Sequence[Any] | None = DEFAULT_ORDER,
                 filter: Mapping[str, Any] | str | None = None, mask: Sequence[str] | None = None) -> None:
        if listing not in LISTINGS:
            raise ValueError(f"unknown listing {listing!r}; expected one of {LISTINGS}")
        self.client = client
        self.account = account
        self.mode = mode
        self.listing = listing
        self.strategy = listing
        self.order = list(order) if order else None
        # A filtered list is not the domain: a project it leaves out is not gone.
        self.filter = check_filter(filter)
        # Only these fields are fetched and stored (the others load NULL); None: all.
        self.mask = check_mask(mask)

    # ------------------------------------------------------------------ listing
    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        live = {key: state for key, state in known.items() if not state.deleted}
        if self.listing == "recent" and self.mode == "incremental" and live:
            units, complete = await self._recent(live)
        else:
            whole = self.listing == "auto" and (not live or self.mode == "full_refresh")
            entries = await self.client.list_projects(mask=self.mask if whole else MINIMAL_MASK, order=self.order,
                                                      filter=self.filter)
            units, complete = self._units(entries), True
        if self.filter is not None:
            return Listing(units, complete=False)
        if complete:
            units += await self._still_there(live, {u.key for u in units})
        return Listing(units, complete)

    def _units(self, entries: list[dict[str, Any]]) -> list[Unit]:
        return listed_units(entries, "id", project_cursor, self.source)

    async def _recent(self, live: Mapping[str, UnitState]) -> tuple[list[Unit], bool]:
        """Newest first, down to the newest committed ``ext.lwt``; (units, complete)."""
        floor = max((t for t in (parse_lwt(s.cursor) for s in live.values()) if t is not None), default=None)
        entries: list[dict[str, Any]] = []
        previous: datetime | None = None
        descending = True
        async for page in self.client.pages(mask=MINIMAL_MASK, order=RECENT_ORDER, filter=self.filter):
            entries.extend(page.entities)
            for entry in page.entities:
                lwt = parse_lwt(field_value(entry, "ext.lwt"))
                if lwt is None:
                    continue
                if previous is not None and lwt > previous:
                    descending = False  # the server does not sort as asked: read it all
                previous = lwt
            if descending and floor is not None and previous is not None and previous < floor:
                return self._units(entries), False
        if not descending:
            log.warning("the server ignored order=ext.lwt desc: listed every project")
        return self._units(entries), True

    async def _still_there(self, live: Mapping[str, UnitState], listed: set[str]) -> list[Unit]:
        """Known projects a complete listing lacks: deleted (404), or missed by the
        offset paging (found: synced as usual), or unknown (error: left as they were)."""
        missing = sorted(key for key in live if key not in listed)
        if not missing:
            return []
        answers = await asyncio.gather(
            *(self.client.get_project(key, mask=MINIMAL_MASK) for key in missing), return_exceptions=True
        )
        units = []
        for key, answer in zip(missing, answers):
            if isinstance(answer, NotFoundError):
                continue  # confirmed deleted: the engine marks it
            if isinstance(answer, AuthError):
                raise answer
            if isinstance(answer, SourceError):
                log.warning("could not confirm that project %s was deleted (%s); kept as it was", key, answer)
                units.append(Unit(key, live[key].cursor, None))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                log.warning("project %s was missing from the listing but exists (paging shifted); synced", key)
                units.append(Unit(key, project_cursor(answer), answer))
        return units

    # ------------------------------------------------------------------ one project
    async def fetch_unit(self, unit: Unit, streams: UnitStreams) -> FetchedProject:
        """The list entry when it carries every field of the row (of the mask), else ``GET {id}``."""
        entry = unit.entry
        if isinstance(entry, dict) and has_fields(entry, self.mask or ROW_FIELDS):
            return FetchedProject(unit.key, entry)
        return FetchedProject(unit.key, await self.client.get_project(unit.key, mask=self.mask))

    def transform(self, fetched: list[FetchedProject]) -> TableBatch:
        return transform_projects(fetched, account=self.account)


class Credentials(TypedDict, total=False):
    """The secrets IncoplaxClient.connect takes: a token (bearer) or a user name and password (basic)."""

    token: str
    username: str
    password: str


def read_credentials(auth_scheme: str) -> Credentials:
    """The secrets of an auth scheme, read inside the flow run (never parameters)."""
    if auth_scheme == "bearer":
        return {"token": read_secret(TOKEN_VARIABLE)}
    if auth_scheme == "basic":
        return {"username": read_secret(USERNAME_VARIABLE), "password": read_secret(PASSWORD_VARIABLE)}
    raise ValueError(f"auth_scheme must be 'bearer' or 'basic', not {auth_scheme!r}")


def open_incoplax(parameters: dict[str, Any], settings: HttpSettings) -> OpenedAdapter:
    """The adapter of a sync's parameters (pwh/flows/syncs.py).

    ``base_url`` is the server root (the client adds ``/rest/v1/domain/projects``).
    Credentials: ``auth_scheme="bearer"`` reads INCOPLAX_TOKEN, ``"basic"`` reads
    INCOPLAX_USERNAME and INCOPLAX_PASSWORD (or Prefect Secret blocks of those names).
    ``filter`` (the list's ``filter``: an object of field values) syncs only the projects
    it selects; one it leaves out is kept as it is, never marked deleted.
    ``mask`` (fields among ``MASK_FIELDS``; ``id`` and ``ext.lwt`` are always added)
    fetches and stores only those fields: the row's other columns load NULL.
    """
    listing, auth_scheme = parameters["listing"], parameters["auth_scheme"]
    if listing not in LISTINGS:
        raise ValueError(f"listing must be one of {LISTINGS}, not {listing!r}")
    client = IncoplaxClient.connect(parameters["base_url"], auth_scheme=auth_scheme,
                                    page_size=parameters["page_size"], settings=settings,
                                    **read_credentials(auth_scheme))
    adapter = IncoplaxAdapter(client, account=parameters["account"], mode=parameters["mode"], listing=listing,
                              order=parameters["order"], filter=parameters["filter"], mask=parameters["mask"])
    return OpenedAdapter(adapter, tables.TABLES)
