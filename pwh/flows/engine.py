"""The sync engine every source runs through: list → plan → (fetch → transform →
validate → load) per batch → mark deletions → ledger.

A source plugs in as a :class:`SourceAdapter`. Units (projects) are planned against the
cursors committed with the data, fetched batch by batch with bounded concurrency, and
each batch is loaded in one transaction while the next batch is being fetched.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, Self, TypeVar

import duckdb
import orjson
import polars as pl

from pwh.errors import PwhError
from pwh.flows.streams import Stream, StreamGate, UnitStreams
from pwh.schemas.rows import RejectedRecord, RowIssue
from pwh.schemas.spec import Table
from pwh.schemas.validate import split_valid
from pwh.sources.errors import AuthError, NotFoundError, SourceError
from pwh.sources.http import SourceClient
from pwh.transforms.frames import TableBatch
from pwh.warehouse.crashpoints import crash_point
from pwh.warehouse.load import UnitState, load_dimensions
from pwh.warehouse.runs import RunRecord
from pwh.warehouse.sink import WarehouseSink

log = logging.getLogger("pwh.sync")

MODES = ("incremental", "full_refresh")

# The mass-deletion guard (see :func:`check_deletions`): a run may mark at most this share
# of an account's live projects deleted, or this many whatever the share, unless the user
# confirms. An empty or truncated list looks exactly like an account that lost its
# projects; a real account rarely loses a quarter of them between two syncs, and when it
# does, one confirmed run says so. The floor lets a tiny account (1-3 projects) lose one
# or two without a confirmation.
DEFAULT_MAX_DELETE_SHARE = 0.25
MASS_DELETE_FLOOR = 2


class ListingNotFoundError(SourceError):
    """The project list itself answered 404: a wrong base URL, not a vanished project."""


class DimensionsNotStagedError(PwhError):
    """A sharded run of a source whose per-account streams only load into the warehouse."""


class MassDeleteError(PwhError, RuntimeError):
    """A run would mark more of an account's projects deleted than the guard allows."""


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of atomic replacement: one project, as the list showed it.

    The list entry is kept as JSON text and parsed again when the unit is fetched: a
    whole account's parsed entries are ~4x the memory (36 MB at 20,000 projects) and
    held for the whole run."""

    key: str
    cursor: str | None
    listed: Any = None  # the list entry; stored as JSON bytes, read back through ``entry``
    stored: bool = False  # the warehouse holds rows of it: a load must replace them

    def __post_init__(self) -> None:
        if self.listed is not None and not isinstance(self.listed, bytes):
            # A copy: orjson's own bytes object keeps its ~8 KB working buffer (measured:
            # 156 MB of RSS for 9.5 MB of entries at 20,000 projects).
            object.__setattr__(self, "listed", bytes(memoryview(orjson.dumps(self.listed))))

    @property
    def entry(self) -> Any:
        """The list entry as the source sent it (parsed anew on each call)."""
        return None if self.listed is None else orjson.loads(self.listed)


@dataclass(frozen=True)
class Listing:
    """What a source lists. ``complete`` is False when the source filtered the list on
    the server (e.g. "modified since" the last sync): then a unit's absence proves
    nothing, and only listed units are planned."""

    units: list[Unit]
    complete: bool = True


def listed_units(
    entries: Iterable[Any], key_field: str, cursor: Callable[[Any], str | None], source: str
) -> list[Unit]:
    """The units of a project list: one per entry whose ``key_field`` is non-empty text.
    An entry without one cannot be fetched; it is counted in one warning, never guessed.

    A list of entries is emptied as it is read: each parsed entry is released as soon as
    its unit holds it as JSON bytes, so the parsed list and the units never coexist whole
    (the parsed list is ~4x the units' memory; docs/performance.md)."""
    units, unnamed = [], 0
    for entry in _drained(entries):
        key = entry.get(key_field) if isinstance(entry, Mapping) else None
        if not isinstance(key, str) or not key:
            unnamed += 1
            continue
        units.append(Unit(key, cursor(entry), entry))
    if unnamed:
        log.warning("%s: the project list held %d entries without %s; they cannot be synced", source, unnamed,
                    key_field)
    return units


def _drained(entries: Iterable[Any]) -> Iterator[Any]:
    """The items of ``entries`` in order; a list gives each up (and holds it no more) as it is yielded."""
    if not isinstance(entries, list):
        yield from entries
        return
    entries.reverse()  # popped from the end: O(1) a pop, original order kept
    while entries:
        yield entries.pop()


class SourceAdapter(Protocol):
    source: str
    account: str

    # Read-only: an adapter's own narrower types (a str strategy, a tuple of tables) fit.
    @property
    def strategy(self) -> str | None: ...

    @property
    def tables(self) -> Sequence[Table]: ...

    # Tables the adapter's fetch sees only in part (e.g. a strategy that cannot see every
    # kind of record): a unit's rows there are not replaced, only upserted by key.
    partial_tables: frozenset[str]

    @property
    def streams(self) -> Sequence[Stream]:
        """The unit's sub-resources (pwh/flows/streams.py); tables no stream names are the
        unit's own, read by its existence call."""
        ...

    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        """List the units; ``known`` is the committed state, for sources that can ask
        the server for changes since a cursor."""
        ...

    async def fetch_unit(self, unit: Unit, streams: UnitStreams) -> Any:
        """A unit's answers. Only the unit's own existence call may raise NotFoundError
        (the unit is gone); every stream is fetched through ``streams.fetch``."""
        ...

    def transform(self, fetched: list[Any]) -> TableBatch: ...

    def redact(self, raw: Any) -> Any: ...

    @property
    def requests(self) -> int: ...

    @property
    def retries(self) -> int: ...


ClientT = TypeVar("ClientT", bound=SourceClient)


class ClientAdapter(Generic[ClientT]):
    """Base of the source adapters: the adapter opens and closes its source client and
    reports the client's request counters."""

    client: ClientT
    region: str | None = None  # where the account lives, when the source has regions
    strategy: str | None = None  # how it fetches, when the source has more than one way (the ledger's)
    partial_tables: frozenset[str] = frozenset()  # every table's rows are replaced whole
    streams: Sequence[Stream] = ()

    @property
    def base_url(self) -> str | None:
        return self.client.http.base_url

    async def __aenter__(self) -> Self:
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


class Sink(Protocol):
    """Where a run reads the committed state and writes what it loads: the warehouse
    (:class:`pwh.warehouse.sink.WarehouseSink`; a DuckDB connection given to the engine
    becomes one) or a shard's staging folder (:class:`pwh.warehouse.staging.StagingSink`).
    ``replace_units`` and ``mark_deleted`` take the keyword arguments of their namesakes in
    pwh/warehouse/load.py, without the connection."""

    def read_state(self, source: str, account: str) -> dict[str, UnitState]: ...

    def resumed_runs(self, source: str, account: str, run_id: str) -> set[str]: ...

    def start_run(self, run: RunRecord, *, region: str | None, base_url: str | None) -> None: ...

    def save_run(self, run: RunRecord) -> None: ...

    def replace_units(
        self, *, source: str, account: str, run_id: str, tables: Sequence[Table],
        cursors: Mapping[str, str | None], frames: Mapping[str, pl.DataFrame], rejected: Iterable[RejectedRecord],
        now: datetime, stored: Collection[str] | None = None, partial_tables: Collection[str] = (),
        issues: Iterable[RowIssue] = (), kept_tables: Mapping[str, Collection[str]] | None = None,
        missing_streams: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, int]: ...

    def mark_deleted(
        self, *, source: str, account: str, unit_keys: Iterable[str], tables: Sequence[Table], now: datetime
    ) -> int: ...


def as_sink(target: duckdb.DuckDBPyConnection | Sink) -> Sink:
    return WarehouseSink(target) if isinstance(target, duckdb.DuckDBPyConnection) else target


@dataclass
class Plan:
    new: list[Unit] = field(default_factory=list)
    changed: list[Unit] = field(default_factory=list)
    unchanged: list[Unit] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)

    @property
    def to_fetch(self) -> list[Unit]:
        return self.new + self.changed


def plan_units(
    listing: Listing, state: Mapping[str, UnitState], mode: str, resumed: frozenset[str] | set[str] = frozenset(),
    selected: frozenset[str] = frozenset(),
) -> Plan:
    """Which units to fetch: new ones, ones whose cursor moved (or that came back after
    deletion), ones loaded without a stream this run fetches (``selected``: excluded or
    forbidden then), and in full-refresh mode all of them — except, when a full refresh
    resumes one that was interrupted (``resumed``: its runs' ids), units those runs already
    loaded and that did not change since; known units missing from a complete list are gone."""
    plan = Plan()
    listed = set()
    for unit in listing.units:
        listed.add(unit.key)
        known = state.get(unit.key)
        if known is None:
            plan.new.append(unit)
        elif known.deleted or unit.cursor is None or known.cursor != unit.cursor or (
            mode == "full_refresh" and known.run_id not in resumed
        ) or not selected.isdisjoint(known.missing_streams):
            plan.changed.append(replace(unit, stored=True))
        else:
            plan.unchanged.append(unit)
    if listing.complete:
        plan.gone = sorted(key for key, known in state.items() if key not in listed and not known.deleted)
    return plan


@dataclass
class Progress:
    """What a progress bar shows; the engine calls ``update`` after each batch."""

    total: int = 0
    done: int = 0
    requests: int = 0
    retries: int = 0
    listener: Callable[[Progress], None] | None = None

    def update(self, **changes: int) -> None:
        for name, value in changes.items():
            setattr(self, name, value)
        if self.listener is not None:
            self.listener(self)


@dataclass
class FetchedBatch:
    units: list[Unit]
    payloads: list[Any]
    failed: dict[str, str]
    vanished: list[str]
    skipped: dict[str, frozenset[str]] = field(default_factory=dict)  # unit → streams it went without


@dataclass(frozen=True)
class BatchOutcome:
    """What a batch task returns: counts and keys only, never records (Prefect walks task
    parameters and results; raw payloads there cost it ~10x our own CPU)."""

    rows: dict[str, int]
    rejected: int
    failed: dict[str, str]
    vanished: list[str]


@dataclass
class Stages:
    """The engine's stages; a flow swaps in Prefect-task versions of the same functions."""

    list_units: Callable[[SourceAdapter, Mapping[str, UnitState]], Awaitable[Listing]]
    sync_batch: Callable[..., Awaitable[BatchOutcome]]


async def list_units(adapter: SourceAdapter, known: Mapping[str, UnitState]) -> Listing:
    return await adapter.list_units(known)


async def fetch_batch(adapter: SourceAdapter, units: list[Unit], gate: StreamGate) -> FetchedBatch:
    """Fetch every unit of a batch concurrently (the HTTP client bounds requests in
    flight). A unit that fails is recorded, not fatal; a 401 stops the run. Only a unit's
    own existence call can make it vanish; its streams go through ``gate``."""
    unit_streams = [gate.for_unit() for _ in units]
    unselected = {stream.name for stream in adapter.streams if stream.per_unit} - gate.selected
    results = await asyncio.gather(*(adapter.fetch_unit(u, s) for u, s in zip(units, unit_streams)),
                                   return_exceptions=True)
    batch = FetchedBatch([], [], {}, [])
    for unit, streams, result in zip(units, unit_streams, results):
        if isinstance(result, AuthError):
            raise result
        if isinstance(result, NotFoundError):
            batch.vanished.append(unit.key)
        elif isinstance(result, SourceError):
            batch.failed[unit.key] = str(result)
        elif isinstance(result, BaseException):
            raise result
        else:
            batch.units.append(unit)
            batch.payloads.append(result)
            if streams.skipped or unselected:
                batch.skipped[unit.key] = frozenset(streams.skipped | unselected)
    return batch


def kept_tables(streams: Sequence[Stream], skipped: Mapping[str, frozenset[str]]) -> dict[str, frozenset[str]]:
    """Per unit, the tables whose rows stay as they are: those its skipped streams feed."""
    feeds = {stream.name: stream.tables for stream in streams}
    return {key: frozenset(table for name in names for table in feeds.get(name, ())) for key, names in skipped.items()}


def transform_and_load(
    adapter: SourceAdapter,
    con: duckdb.DuckDBPyConnection | Sink,
    fetched: FetchedBatch,
    run_id: str,
) -> tuple[dict[str, int], int]:
    """Transform, validate and load one batch (runs in a worker thread); returns rows
    loaded per table and the number of rejected records."""
    crash_point("transform")
    batch = adapter.transform(fetched.payloads)
    kept = kept_tables(adapter.streams, fetched.skipped)
    frames: dict[str, pl.DataFrame] = {}
    rejected: list[RejectedRecord] = list(batch.rejected)
    issues: list[RowIssue] = []
    for name, buffer in batch.buffers.items():
        valid, bad = split_valid(buffer, adapter.redact, batch.unit_redactors)
        frames[name] = valid
        rejected.extend(bad)
        issues.extend(buffer.row_issues())
    if kept:
        # A skipped stream's rows stay as they were, even where another answer carried
        # some (RAYTeams' aggregate answer holds every kind of record).
        tables_by_name = {table.name: table for table in adapter.tables}
        for name, frame in frames.items():
            keeping = [key for key, tables in kept.items() if name in tables]
            unit_column = tables_by_name[name].unit_column if name in tables_by_name else None
            if keeping and unit_column is not None:
                frames[name] = frame.filter(~pl.col(unit_column).is_in(keeping))
        rejected = [r for r in rejected if r.table not in kept.get(r.unit_key, ())]
        issues = [i for i in issues if i.table not in kept.get(i.unit_key, ())]
    loaded = as_sink(con).replace_units(
        source=adapter.source,
        account=adapter.account,
        run_id=run_id,
        tables=adapter.tables,
        cursors={u.key: u.cursor for u in fetched.units},
        stored=[u.key for u in fetched.units if u.stored],
        partial_tables=adapter.partial_tables,
        kept_tables=kept,
        missing_streams=fetched.skipped,
        frames=frames,
        rejected=rejected,
        issues=issues,
        now=_now(),
    )
    return loaded, len(rejected)


async def sync_batch(
    adapter: SourceAdapter,
    con: duckdb.DuckDBPyConnection | Sink,
    units: list[Unit],
    run_id: str,
    writer: asyncio.Lock,
    gate: StreamGate,
) -> BatchOutcome:
    """Fetch a batch of units, then transform, validate and load it in a worker thread.
    ``writer`` keeps one load at a time on the connection; the next batch fetches meanwhile."""
    fetched = await fetch_batch(adapter, units, gate)
    crash_point("fetched")
    rows: dict[str, int] = {}
    rejected = 0
    if fetched.units:
        async with writer:
            load = asyncio.ensure_future(asyncio.to_thread(transform_and_load, adapter, con, fetched, run_id))
            try:
                rows, rejected = await asyncio.shield(load)
            except asyncio.CancelledError:
                # Interrupted while loading: the transaction runs on in its thread, on the
                # run's connection, which must outlive it. Once it has committed, the batch
                # is done and is counted as such.
                rows, rejected = await load
    return BatchOutcome(rows, rejected, fetched.failed, fetched.vanished)


PLAIN_STAGES = Stages(list_units, sync_batch)
# Batches in flight: one loading while the next one fetches.
BATCHES_IN_FLIGHT = 2


def _taken_in_batches(units: list[Unit], size: int) -> Iterator[list[Unit]]:
    """``units`` in order, ``size`` at a time, each batch taken out of the list (which
    ends empty), so that the list no longer holds the units already handed out."""
    units.reverse()
    while units:
        batch = units[-size:]
        del units[-size:]
        batch.reverse()
        yield batch


def _now() -> datetime:
    return datetime.now(timezone.utc)


def check_deletions(source: str, account: str, live: int, deleting: int, max_share: float) -> None:
    """Refuse (:class:`MassDeleteError`) to mark more than ``max_share`` of ``live``
    projects deleted, and more than :data:`MASS_DELETE_FLOOR`."""
    allowed = max(MASS_DELETE_FLOOR, int(max_share * live))
    if deleting > allowed:
        raise MassDeleteError(
            f"{source}/{account}: this run would mark {deleting} of {live} projects deleted (more than "
            f"{max_share:.0%}); none were marked. If they really are gone, run again with "
            "--allow-mass-delete (flow parameter allow_mass_delete=true)"
        )


async def run_sync(
    adapter: SourceAdapter,
    con: duckdb.DuckDBPyConnection | Sink,
    *,
    run_id: str,
    mode: str = "incremental",
    batch_size: int = 250,
    stages: Stages = PLAIN_STAGES,
    progress: Progress | None = None,
    allow_mass_delete: bool = False,
    max_delete_share: float = DEFAULT_MAX_DELETE_SHARE,
    streams: frozenset[str] | None = None,
) -> RunRecord:
    """Sync one source account into an open warehouse connection (or another :class:`Sink`:
    a shard's staging folder); returns the ledger row.

    Unless ``allow_mass_delete``, a run that would mark more than ``max_delete_share`` of
    the account's live projects deleted (listing gaps and 404s alike) marks none and fails
    with :class:`MassDeleteError`, after loading what it fetched: those projects are good
    data, but the run is ``failed`` and readers get only its ledger (pwh/warehouse/replica.py).

    A run cancelled (Ctrl-C, SIGTERM: the CLI cancels its task) stops fetching at once,
    lets a load in flight commit, and is recorded ``interrupted``; the next run resumes
    (committed batches are unchanged units).

    ``streams`` names the streams to fetch (default: all the adapter declares); a stream
    that answers 403 is skipped for the rest of the run, its rows kept, and the run ends
    ``partial`` naming it (pwh/flows/streams.py)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    progress = progress or Progress()
    run = RunRecord(run_id, adapter.source, adapter.account, mode, adapter.strategy, _now())
    sink = as_sink(con)
    sink.start_run(run, region=getattr(adapter, "region", None), base_url=getattr(adapter, "base_url", None))
    started = time.perf_counter()
    try:
        guard = None if allow_mass_delete else max_delete_share
        gate = StreamGate(frozenset(s.name for s in adapter.streams) if streams is None else streams)
        await _sync(adapter, sink, run, mode, batch_size, stages, progress, guard, gate)
    except (asyncio.CancelledError, KeyboardInterrupt) as exc:
        run.status = "interrupted"
        run.error = str(exc) or "interrupted"  # the CLI names the signal in the cancellation
        raise
    except BaseException as exc:
        run.status = "failed"
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        raise
    finally:
        run.requests, run.retries = adapter.requests, adapter.retries
        run.ended_at = _now()
        sink.save_run(run)
        log.info(
            "%s/%s %s run %s: %s in %.1f s (%d projects fetched, %d unchanged, %d deleted, %d failed, %d requests)",
            adapter.source, adapter.account, mode, run_id, run.status, time.perf_counter() - started,
            run.units_new + run.units_changed, run.units_unchanged, run.units_deleted, run.units_failed, run.requests,
        )
    return run


async def _sync(adapter: SourceAdapter, sink: Sink, run: RunRecord, mode: str, batch_size: int, stages: Stages,
                progress: Progress, max_delete_share: float | None, gate: StreamGate) -> None:
    state = sink.read_state(adapter.source, adapter.account)
    try:
        listing = await stages.list_units(adapter, state)
    except NotFoundError as exc:
        if exc.url is None:
            raise
        # The list of every project is not there: the base URL points elsewhere.
        raise ListingNotFoundError(
            f"{adapter.source}: the project list {exc.url} answered HTTP 404: check --base-url"
        ) from None
    units = listing.units
    duplicates = len(units) - len({u.key for u in units})
    if duplicates:
        log.warning("%s list named %d projects more than once; each is synced once", adapter.source, duplicates)
        listing = Listing(list({u.key: u for u in units}.values()), listing.complete)
    resumed = sink.resumed_runs(adapter.source, adapter.account, run.run_id) if mode == "full_refresh" else set()
    plan = plan_units(listing, state, mode, resumed, gate.selected)
    if resumed:
        log.info("%s/%s: resuming an interrupted full refresh; %d projects it loaded are kept",
                 adapter.source, adapter.account, len(plan.unchanged))
    run.units_seen = len(listing.units)
    run.units_new, run.units_changed, run.units_unchanged = len(plan.new), len(plan.changed), len(plan.unchanged)
    progress.update(total=len(plan.to_fetch), done=0)

    vanished: list[str] = list(plan.gone)
    writer = asyncio.Lock()
    to_fetch = plan.to_fetch
    # From here on a unit is held only by its batch, until that batch is done: the list
    # entries of a large account are not kept for the whole run.
    del listing, units, plan
    pending: set[asyncio.Task[BatchOutcome]] = set()

    def absorb(done: set[asyncio.Task[BatchOutcome]]) -> None:
        for future in done:
            outcome: BatchOutcome = future.result()
            for table, rows in outcome.rows.items():
                run.rows_loaded[table] = run.rows_loaded.get(table, 0) + rows
            run.rows_rejected += outcome.rejected
            run.failed_units.update(outcome.failed)
            vanished.extend(outcome.vanished)
            progress.update(done=progress.done + outcome_size[future],
                            requests=adapter.requests, retries=adapter.retries)

    outcome_size: dict[asyncio.Task[BatchOutcome], int] = {}
    try:
        for units in _taken_in_batches(to_fetch, batch_size):
            if len(pending) >= BATCHES_IN_FLIGHT:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                absorb(done)
            future = asyncio.ensure_future(stages.sync_batch(adapter, sink, units, run.run_id, writer, gate))
            outcome_size[future] = len(units)
            pending.add(future)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            absorb(done)
    except asyncio.CancelledError:
        for future in pending:  # interrupted: stop fetching (a load in flight finishes: sync_batch)
            future.cancel()
        raise
    finally:
        if pending:
            # A batch failed: let the one still in flight finish (its load may be running
            # on the connection in a worker thread) before the run is closed; what it
            # committed counts in the ledger of the failed or interrupted run.
            await asyncio.gather(*pending, return_exceptions=True)
            absorb({future for future in pending if not future.cancelled() and future.exception() is None})

    run.units_failed = len(run.failed_units)
    unloaded_streams = await sync_dimensions(adapter, sink, run, gate)
    if max_delete_share is not None:
        live = {key for key, known in state.items() if not known.deleted}
        check_deletions(adapter.source, adapter.account, len(live), len(live.intersection(vanished)),
                        max_delete_share)
    run.units_deleted = sink.mark_deleted(
        source=adapter.source, account=adapter.account, unit_keys=vanished,
        tables=adapter.tables, now=_now(),
    )
    # Streams not loaded this run: forbidden (403) per project or per account, and dimension
    # streams that failed; their rows are kept and the next run tries again.
    not_loaded = {**gate.forbidden, **unloaded_streams}
    if not_loaded:
        run.skipped_streams = not_loaded
        run.error = "; ".join(
            f"stream {name} not loaded ({why}): its rows are kept, the next run tries again"
            for name, why in sorted(not_loaded.items())
        )
    run.status = "partial" if run.failed_units or not_loaded else "success"
    progress.update(requests=adapter.requests, retries=adapter.retries)


# ------------------------------------------------------------------ dimension streams
# A source's per-account streams (OpenProject's users, statuses, custom field
# definitions): fetched once a run, after its units, and loaded by replacing the account's
# rows of their tables: the adapter's streams with per_unit=False. An adapter with them has,
# besides SourceAdapter:
#   dimension_tables: Sequence[Table]          (no unit column)
#   upserted_dimensions: Collection[str]       tables whose rows are upserted, not replaced
#   async fetch_dimension(name) -> Any         one stream's raw answer
#   transform_dimensions({name: raw}) -> TableBatch

_NOT_FETCHED = object()


async def sync_dimensions(adapter: Any, sink: Sink, run: RunRecord, gate: StreamGate) -> dict[str, str]:
    """Fetch and load the adapter's dimension streams that ``gate`` lets through (none:
    nothing to do). A stream that fails, answers 404 or is forbidden (403) is not loaded:
    its rows are kept and it is returned (name → why), which makes the run ``partial``; the
    units are never blocked. A 401 stops the run, as everywhere."""
    streams = [s for s in adapter.streams if not s.per_unit and gate.open(s.name)]
    if not streams:
        return {}
    if not isinstance(sink, WarehouseSink):
        raise DimensionsNotStagedError(
            f"{adapter.source}: a sharded run cannot load its per-account streams "
            f"({', '.join(s.name for s in streams)}) yet: exclude them, or run without --shards")
    fetches = gate.for_unit()
    results = await asyncio.gather(
        *(fetches.fetch(stream.name, _fetcher(adapter, stream.name), _NOT_FETCHED) for stream in streams),
        return_exceptions=True,
    )
    fetched: dict[str, Any] = {}
    unloaded: dict[str, str] = {}
    for stream, result in zip(streams, results):
        if isinstance(result, AuthError):
            raise result
        if isinstance(result, SourceError):
            unloaded[stream.name] = str(result)
        elif isinstance(result, BaseException):
            raise result
        elif stream.name in gate.forbidden:
            unloaded[stream.name] = gate.forbidden[stream.name]
        elif result is _NOT_FETCHED:  # selected, and answered 404
            unloaded[stream.name] = "HTTP 404"
        else:
            fetched[stream.name] = result
    for name, why in sorted(unloaded.items()):
        log.warning("%s/%s: stream %s was not loaded (%s); its rows are kept", adapter.source, adapter.account,
                    name, why)
    if fetched:
        load = asyncio.ensure_future(asyncio.to_thread(_transform_and_load_dimensions, adapter, sink.con, fetched,
                                                       run.run_id))
        try:
            rows = await asyncio.shield(load)
        except asyncio.CancelledError:
            await load  # the transaction runs on in its thread, on the run's connection: let it end
            raise
        for table, count in rows.items():
            run.rows_loaded[table] = run.rows_loaded.get(table, 0) + count
    return unloaded


def _fetcher(adapter: Any, name: str) -> Callable[[], Awaitable[Any]]:
    return lambda: adapter.fetch_dimension(name)


def _transform_and_load_dimensions(adapter: Any, con: duckdb.DuckDBPyConnection, fetched: dict[str, Any],
                                   run_id: str) -> dict[str, int]:
    batch = adapter.transform_dimensions(fetched)
    frames: dict[str, pl.DataFrame] = {}
    rejected: list[RejectedRecord] = list(batch.rejected)
    issues: list[RowIssue] = []
    for name, buffer in batch.buffers.items():
        frames[name], bad = split_valid(buffer, adapter.redact, batch.unit_redactors)
        rejected.extend(bad)
        issues.extend(buffer.row_issues())
    return load_dimensions(
        con, source=adapter.source, account=adapter.account, run_id=run_id, tables=adapter.dimension_tables,
        frames=frames, rejected=rejected, issues=issues, now=_now(), upserted=adapter.upserted_dimensions,
    )
