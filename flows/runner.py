"""What every source's flow does around the engine: open the warehouse (one writer),
migrate, check the tables, run the sync with Prefect-task stages, close, summarise."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from prefect.runtime import flow_run

from flows.engine import SourceAdapter, run_sync
from flows.progress import new_progress
from flows.tasks import TASK_STAGES
from schemas.spec import Table
from warehouse.connection import connect
from warehouse.migrations import check_tables, migrate


async def sync_into_warehouse(
    adapter: AbstractAsyncContextManager[SourceAdapter],
    *,
    db_path: str,
    tables: Sequence[Table],
    mode: str,
    batch_size: int,
) -> dict[str, Any]:
    """Run one source account's sync into the warehouse file; returns the run summary
    (counts only: safe to store as a flow result)."""
    run_id = str(flow_run.get_id() or uuid.uuid4())
    con = connect(db_path)
    try:
        migrate(con)
        check_tables(con, tables)
        async with adapter as opened:
            run = await run_sync(
                opened, con, run_id=run_id, mode=mode, batch_size=batch_size,
                stages=TASK_STAGES, progress=new_progress(),
            )
    finally:
        con.close()
    return run.summary()
