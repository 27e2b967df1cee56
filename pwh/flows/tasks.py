"""Prefect tasks at the grain the stack notes recommend: a stage or a batch of projects,
never an HTTP request (a task costs milliseconds; a request ~0.1 ms). Awaited in the
flow's own event loop (``.submit()`` would move them to another loop and break the shared
aiohttp session). Nothing is cached or persisted: inputs hold patient data."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import duckdb
from prefect import task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from pwh.flows import engine
from pwh.flows.streams import StreamGate
from pwh.warehouse.load import UnitState

_options: dict[str, Any] = dict(cache_policy=NONE, persist_result=False, log_prints=False)

# task(**options)(fn): Prefect's overloads type task(fn, **options) as no valid call.
_list_units = task(name="list-projects", **_options)(engine.list_units)
_sync_batch = task(name="fetch-transform-load-batch", **_options)(engine.sync_batch)


# Prefect walks every object inside every task argument, twice, looking for upstream
# futures; a batch's units carry their listed records and the known state has an entry per
# project. quote() skips the walk (nothing here is a future): measured by the benchmark,
# it was most of Prefect's per-run overhead (docs/performance.md). Prefect unwraps a
# quote() before the call, but its type is not the quoted value's: hence the ignores.
async def list_units_task(adapter: engine.SourceAdapter, known: Mapping[str, UnitState]) -> engine.Listing:
    return await _list_units(adapter, quote(known))  # type: ignore[call-overload]


async def sync_batch_task(
    adapter: engine.SourceAdapter, con: duckdb.DuckDBPyConnection, units: list[engine.Unit], run_id: str,
    writer: asyncio.Lock, gate: StreamGate,
) -> engine.BatchOutcome:
    return await _sync_batch(adapter, con, quote(units), run_id, writer, gate)  # type: ignore[call-overload]


TASK_STAGES = engine.Stages(list_units=list_units_task, sync_batch=sync_batch_task)
