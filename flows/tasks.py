"""Prefect tasks at the grain the stack notes recommend: a stage or a batch of projects,
never an HTTP request (a task costs milliseconds; a request ~0.1 ms). Awaited in the
flow's own event loop (``.submit()`` would move them to another loop and break the shared
aiohttp session). Nothing is cached or persisted: inputs hold patient data."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from flows import engine

_options = dict(cache_policy=NONE, persist_result=False, log_prints=False)

TASK_STAGES = engine.Stages(
    list_units=task(engine.list_units, name="list-projects", **_options),
    sync_batch=task(engine.sync_batch, name="fetch-transform-load-batch", **_options),
)
