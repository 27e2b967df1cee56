"""Sharded syncs: a parent splits a source's sync into shards (one per account, and
``parts`` parts of each by a stable hash of the unit key), each shard runs the engine as
it is into a staging folder (pwh/warehouse/staging.py; it never opens the warehouse), and
the parent, the one writer, loads the finished shards (pwh/warehouse/shard_load.py) and
publishes the readers' replica.

The parent holds the warehouse's writer lock from reading the committed state (which it
hands to the shards as a Parquet file in the staging folder) until the last shard is
loaded: no other sync can move the state underneath, and a second parent started for the
same schedule waits or fails on the lock (pwh/flows/runner.py ``lock_wait_s``)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager, AsyncExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from pwh.errors import PwhError
from pwh.flows.engine import PLAIN_STAGES, Listing, SourceAdapter, run_sync
from pwh.flows.host import flow_run_context
from pwh.flows.progress import new_progress
from pwh.flows.runner import lock_wait_s, max_delete_share
from pwh.schemas.spec import Table
from pwh.settings import PseudonymKey
from pwh.warehouse.integrity import check_primary
from pwh.warehouse.load import UnitState, read_state
from pwh.warehouse.lock import open_writer
from pwh.warehouse.migrations import check_tables, migrate
from pwh.warehouse.pseudonym_keys import settle_key
from pwh.warehouse.replica import ledger_for_readers, publish_replica, refresh_analyst_layer
from pwh.warehouse.shard_load import load_staged
from pwh.warehouse.staging import StagingSink

log = logging.getLogger("pwh.shards")

STATE_SCHEMA = {"unit_key": pl.Utf8, "cursor": pl.Utf8, "deleted": pl.Boolean, "run_id": pl.Utf8}


def shard_part(unit_key: str, parts: int) -> int:
    """The part (0 … parts-1) a unit belongs to: the same on every machine and every run
    (Python's ``hash()`` of text changes with each process)."""
    digest = hashlib.blake2b(unit_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % parts


@dataclass(frozen=True)
class Shard:
    """One shard of a parent run: an account's ``part`` of ``parts``."""

    parent_run_id: str
    account: str
    part: int
    parts: int

    @property
    def manifest_id(self) -> str:
        """Its identity in the load log, and the idempotency key its flow run starts with."""
        return f"{self.parent_run_id}:{self.account}:{self.part}/{self.parts}"


class PartAdapter:
    """A source adapter that lists only the units of one part (everything else as the adapter)."""

    def __init__(self, adapter: SourceAdapter, part: int, parts: int) -> None:
        self._adapter, self._part, self._parts = adapter, part, parts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._adapter, name)

    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        listing = await self._adapter.list_units(known)
        return Listing([u for u in listing.units if shard_part(u.key, self._parts) == self._part], listing.complete)


def state_file(staging: Path | str, parent_run_id: str, source: str, account: str) -> Path:
    return Path(staging) / parent_run_id / "state" / f"{source}.{account}.parquet"


def write_state(path: Path, state: Mapping[str, UnitState]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pl.DataFrame({
        "unit_key": list(state), "cursor": [s.cursor for s in state.values()],
        "deleted": [s.deleted for s in state.values()], "run_id": [s.run_id for s in state.values()],
    }, schema=STATE_SCHEMA).write_parquet(path)


def read_part_state(path: Path, part: int, parts: int) -> dict[str, UnitState]:
    frame = pl.read_parquet(path)
    return {key: UnitState(cursor, deleted, run_id) for key, cursor, deleted, run_id in frame.iter_rows()
            if shard_part(key, parts) == part}


async def stage_shard(adapter: Any, shard: Shard, *, staging: str, mode: str, batch_size: int,
                      fingerprint: str | None, allow_mass_delete: bool = False) -> dict[str, Any]:
    """Run one shard: the engine over the shard's units, into a new staged attempt;
    ``adapter`` is the source's (an async context manager). Returns the run summary."""
    context = flow_run_context()
    stages = PLAIN_STAGES
    logs: AbstractContextManager = nullcontext()
    if context is not None:
        from pwh.flows.records import flow_run_logs
        from pwh.flows.tasks import TASK_STAGES

        run_id, stages, logs = str(context.flow_run.id), TASK_STAGES, flow_run_logs()
    else:
        run_id = str(uuid.uuid4())
    state = read_part_state(state_file(staging, shard.parent_run_id, adapter.source, shard.account), shard.part,
                            shard.parts)
    sink = StagingSink(Path(staging) / shard.parent_run_id / "shards", shard.manifest_id, state, fingerprint)
    try:
        with logs:  # the engine's log lines in the shard's flow run logs
            async with adapter as opened:
                run = await run_sync(PartAdapter(opened, shard.part, shard.parts), sink, run_id=run_id, mode=mode,
                                     batch_size=batch_size, stages=stages, progress=new_progress(),
                                     allow_mass_delete=allow_mass_delete, max_delete_share=max_delete_share())
    finally:
        sink.finish()  # a failed or interrupted run's staged batches are whole, and its ledger row counts
    return run.summary()


class ShardsFailedError(PwhError, RuntimeError):
    """Some shards did not finish; what finished was loaded. ``outcome`` holds every shard's."""

    def __init__(self, message: str, outcome: dict[str, Any]):
        super().__init__(message)
        self.outcome = outcome


async def run_sharded(
    *,
    db_path: str,
    staging: str,
    source: str,
    tables: Sequence[Table],
    accounts: Sequence[str],
    parts: int,
    start_shard: Callable[[Shard], Awaitable[Any]],
    pseudonym_key: PseudonymKey | None,
) -> dict[str, Any]:
    """The parent: hand each shard the committed state, start every shard (``start_shard``:
    a deployment's flow run, or in this process), then load what they staged and publish
    the replica. Raises :class:`ShardsFailedError` when a shard failed or did not finish."""
    if parts < 1:
        raise ValueError("parts must be at least 1")
    context = flow_run_context()
    parent_run_id = str(context.flow_run.id) if context is not None else str(uuid.uuid4())
    shards = [Shard(parent_run_id, account, part, parts) for account in accounts for part in range(parts)]
    async with AsyncExitStack() as stack:
        con = await asyncio.to_thread(stack.enter_context, open_writer(db_path, wait_s=lock_wait_s()))
        await asyncio.to_thread(check_primary, con, db_path)
        migrate(con)
        stack.enter_context(ledger_for_readers(con, db_path))
        check_tables(con, tables)
        if pseudonym_key is not None:
            settle_key(con, pseudonym_key, source=source, tables=tables, run_id=parent_run_id)
        for account in accounts:
            write_state(state_file(staging, parent_run_id, source, account), read_state(con, source, account))
        started = await asyncio.gather(*(start_shard(shard) for shard in shards), return_exceptions=True)
        loads = await asyncio.to_thread(load_staged, con, str(Path(staging) / parent_run_id / "shards"))
        failed = {shard.manifest_id: f"{type(error).__name__}: {error}".splitlines()[0][:2000]
                  for shard, error in zip(shards, started, strict=True) if isinstance(error, BaseException)}
        loaded = {load.manifest_id: load for load in loads}
        for shard in shards:
            if shard.manifest_id not in failed and shard.manifest_id not in loaded:
                failed[shard.manifest_id] = "the shard staged nothing (killed before it finished?)"
            elif shard.manifest_id in loaded and loaded[shard.manifest_id].status not in ("success", "partial"):
                failed.setdefault(shard.manifest_id, f"its run ended {loaded[shard.manifest_id].status}")
        if not failed:
            refresh_analyst_layer(con)
            await asyncio.to_thread(publish_replica, con, db_path)
            # Loaded and published: the staged copy of the rows is no longer needed. (A
            # failed parent's is kept for its retry; a new parent never reads it.)
            await asyncio.to_thread(shutil.rmtree, Path(staging) / parent_run_id)
    outcome = {
        "parent_run_id": parent_run_id,
        "shards": {load.manifest_id: {"run_id": load.run_id, "status": load.status, "units": load.units,
                                      "rows": load.rows, "loaded_now": load.loaded} for load in loads},
        "failed": failed,
    }
    if failed:
        raise ShardsFailedError(
            f"{len(failed)} of {len(shards)} shards failed (the others are loaded; readers keep the previous "
            "replica): " + "; ".join(f"{name}: {why}" for name, why in sorted(failed.items())), outcome)
    return outcome
