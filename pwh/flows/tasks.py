"""Prefect tasks at the grain the stack notes recommend: a stage or a batch of projects,
never an HTTP request (a task costs milliseconds; a request ~0.1 ms). Awaited in the
flow's own event loop (``.submit()`` would move them to another loop and break the shared
aiohttp session). Nothing is cached or persisted: inputs hold patient data."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE
from prefect.utilities.annotations import quote

from pwh.flows import engine

_options = dict(cache_policy=NONE, persist_result=False, log_prints=False)

_list_units = task(engine.list_units, name="list-projects", **_options)
_sync_batch = task(engine.sync_batch, name="fetch-transform-load-batch", **_options)


# Prefect walks every object inside every task argument, twice, looking for upstream
# futures; a batch's units carry their listed records and the known state has an entry per
# project. quote() skips the walk (nothing here is a future): measured by the benchmark,
# it was most of Prefect's per-run overhead (docs/performance.md).
async def list_units_task(adapter, known):
    return await _list_units(adapter, quote(known))


async def sync_batch_task(adapter, con, units, run_id, writer, gate):
    return await _sync_batch(adapter, con, quote(units), run_id, writer, gate)


TASK_STAGES = engine.Stages(list_units=list_units_task, sync_batch=sync_batch_task)
