"""What every source's sync does around the engine: open the warehouse (one writer),
migrate, check the tables, run the sync, close, summarise. Inside a Prefect flow run the
stages are Prefect tasks and the run's logs and summary go to its records; a plain run
(`pwh sync` with no Prefect API) runs the same stages in this process and never imports
Prefect (pwh/flows/host.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any, Protocol

from pwh.errors import PwhError
from pwh.flows.engine import DEFAULT_MAX_DELETE_SHARE, PLAIN_STAGES, SourceAdapter, run_sync
from pwh.flows.host import flow_run_context
from pwh.flows.progress import new_progress
from pwh.flows.streams import choose_streams
from pwh.schemas.spec import Table
from pwh.settings import LOCK_WAIT_S, MAX_DELETE_SHARE, PseudonymKey
from pwh.sources.http import HttpSettings
from pwh.warehouse.integrity import check_primary
from pwh.warehouse.lock import open_writer
from pwh.warehouse.migrations import check_tables, migrate
from pwh.warehouse.pseudonym_keys import settle_key
from pwh.warehouse.replica import ledger_for_readers, publish_replica, refresh_analyst_layer
from pwh.warehouse.runs import record_failure

# A run started by a deployment (a schedule) waits this long for another writer of the
# same file (a manual sync, another source's run) to finish; a direct run (`pwh sync`)
# fails at once. PWH_LOCK_WAIT_S overrides it.
SCHEDULED_LOCK_WAIT_S = 900.0


class PublishFailedError(PwhError, RuntimeError):
    """The sync committed, but the readers' replica could not be published."""


def lock_wait_s() -> float:
    configured = LOCK_WAIT_S.read()
    if configured is not None:
        return configured
    return SCHEDULED_LOCK_WAIT_S if started_by_deployment() else 0.0


def started_by_deployment() -> bool:
    """Whether the current flow run belongs to a deployment, read from the run the flow
    already holds. (``prefect.runtime.deployment.get_id()`` reads the flow run back from
    the API whenever it has no deployment: a new client and a round trip, ~0.15 s of
    every `pwh sync`.)"""
    context = flow_run_context()
    return context is not None and context.flow_run is not None and context.flow_run.deployment_id is not None


def max_delete_share() -> float:
    """The mass-deletion guard's share (pwh/flows/engine.py); PWH_MAX_DELETE_SHARE overrides it."""
    share = MAX_DELETE_SHARE.read()
    return DEFAULT_MAX_DELETE_SHARE if share is None else share


class OpenableAdapter(SourceAdapter, Protocol):
    """An adapter not yet opened (``async with``): its source is named before its client opens."""

    async def __aenter__(self) -> SourceAdapter: ...

    async def __aexit__(self, *exc: object) -> None: ...


@dataclass(frozen=True)
class OpenedAdapter:
    """What a source's ``open_<source>(parameters, settings)`` gives its sync (pwh/flows/syncs.py)."""

    adapter: OpenableAdapter
    tables: Sequence[Table]  # every table the run may write (per-project and per-account)
    pseudonym_key: PseudonymKey | None = None  # a source that pseudonymises: the key its adapter uses
    rekey: bool = False  # that key becomes the warehouse's (a full refresh)
    # Adds the source's own counts to the run summary (and says what they mean).
    report: Callable[[dict[str, Any]], None] | None = None


# A source's open_<source>: the sync's parameters (all, defaults applied) and HTTP settings.
Opener = Callable[[dict[str, Any], HttpSettings], OpenedAdapter]


async def sync_into_warehouse(
    adapter: OpenableAdapter,
    *,
    db_path: str,
    tables: Sequence[Table],
    mode: str,
    batch_size: int,
    allow_mass_delete: bool = False,
    pseudonym_key: PseudonymKey | None = None,
    rekey: bool = False,
    select: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run one source account's sync into the warehouse file; returns the run summary
    (counts only: safe to store as a flow result). In a Prefect flow run the run id is the
    flow run's and the stages are Prefect tasks; otherwise a fresh id and the plain stages.
    ``allow_mass_delete`` lifts the engine's mass-deletion guard for this run.
    A source that pseudonymises passes the key its adapter uses: it must be the warehouse's
    (``rekey``: it becomes the warehouse's, and the run a full refresh).
    ``select``/``exclude`` choose the streams fetched (pwh/flows/streams.py); an unknown
    name fails before the warehouse is opened."""
    context = flow_run_context()
    streams = choose_streams(adapter.source, adapter.streams, select or (), exclude or ())
    stages = PLAIN_STAGES
    # Read before the warehouse is touched: a malformed value fails the run at its start.
    wait_s, delete_share = lock_wait_s(), max_delete_share()
    async with AsyncExitStack() as stack:
        if context is not None:
            from pwh.flows.records import flow_run_logs, summary_artifact
            from pwh.flows.tasks import TASK_STAGES

            run_id, stages = str(context.flow_run.id), TASK_STAGES
            stack.enter_context(flow_run_logs())  # the engine's log lines in the flow run's logs
        else:
            run_id = str(uuid.uuid4())
        # Waiting for the lock must not block the flow's event loop.
        con = await asyncio.to_thread(stack.enter_context, open_writer(db_path, wait_s=wait_s))
        # A damaged file is neither written into nor published (pwh/warehouse/integrity.py).
        await asyncio.to_thread(check_primary, con, db_path)
        migrate(con)
        # However the run ends, readers get its ledger (never a failed run's data).
        readers = stack.enter_context(ledger_for_readers(con, db_path))
        check_tables(con, tables)
        if pseudonym_key is not None and settle_key(con, pseudonym_key, source=adapter.source, tables=tables,
                                                    run_id=run_id, rekey=rekey):
            mode = "full_refresh"  # every pseudonym is recomputed with the new key
        if context is not None:
            # Left last, after publishing: the run's counts as it ended, failed or not.
            await stack.enter_async_context(summary_artifact(con, run_id))
        async with adapter as opened:
            run = await run_sync(
                opened, con, run_id=run_id, mode=mode, batch_size=batch_size,
                stages=stages, progress=new_progress(), allow_mass_delete=allow_mass_delete,
                max_delete_share=delete_share, streams=streams,
            )
        if run.status in ("success", "partial"):
            # Still the only writer: marts and comments refreshed, then the readers'
            # replica published (what analysts and dashboards open; see pwh/warehouse/replica.py).
            # Partial runs publish too: every project they committed is complete.
            try:
                refresh_analyst_layer(con)
                readers.publish(await asyncio.to_thread(publish_replica, con, db_path))
            except BaseException as exc:
                # The data is committed but readers did not get it: the ledger says failed,
                # as the exit status does.
                message = f"publishing the replica failed: {type(exc).__name__}: {exc}".splitlines()[0]
                record_failure(con, run, message)
                if not isinstance(exc, Exception):
                    raise  # an interrupt stays an interrupt
                raise PublishFailedError(message) from exc
    return run.summary()
