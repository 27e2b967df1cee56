"""What a sync leaves in Prefect's records of its flow run, beside the run's state: the
``pwh`` loggers' lines in the flow run's logs, and a summary artifact with the run's counts.

Both carry only what the run ledger's summary carries (counts, status, duration, our own
log lines): never records, credentials or patient data. Failed projects' errors and the
run's error text stay in the warehouse (``pipeline.runs``); the flow run's state already
says why it failed. Neither may fail a sync: a record that cannot be written is a warning.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import duckdb
from prefect.context import FlowRunContext

from pwh.warehouse.runs import RunRecord, load_run

log = logging.getLogger("pwh.sync")

_LOGGER = "pwh"
_lock = threading.Lock()
_holders = 0
_saved: tuple[int, bool] = (logging.NOTSET, True)
_handlers: list[logging.Handler] = []


class _PassOn(logging.Handler):
    """Hands records on to the root logger's handlers, at the level the process let
    through before: the console and any other handler see exactly what they saw."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


@contextmanager
def flow_run_logs() -> Iterator[None]:
    """While held, the ``pwh`` loggers' records from INFO up also go to the current flow
    run's logs (Prefect's API handler finds the run in the record's context, so concurrent
    account runs each get their own lines). Nested and concurrent holders share one setup."""
    global _holders, _saved
    if FlowRunContext.get() is None:  # no flow run to log to
        yield
        return
    from prefect.logging.handlers import APILogHandler

    logger = logging.getLogger(_LOGGER)
    with _lock:
        if _holders == 0:
            _saved = (logger.level, logger.propagate)
            before = logger.getEffectiveLevel()
            api = APILogHandler(level=logging.INFO)
            passed_on = _PassOn(level=before)
            _handlers[:] = [api, passed_on]
            for handler in _handlers:
                logger.addHandler(handler)
            logger.setLevel(min(before, logging.INFO))
            logger.propagate = False
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                for handler in _handlers:
                    logger.removeHandler(handler)
                logger.setLevel(_saved[0])
                logger.propagate = _saved[1]


def artifact_key(source: str, account: str) -> str:
    """One artifact key per source account (Prefect keeps each key's history): lowercase
    letters, digits and dashes, as Prefect requires."""
    return re.sub(r"[^a-z0-9]+", "-", f"sync-{source}-{account}".lower()).strip("-")


def summary_markdown(run: RunRecord) -> str:
    summary = run.summary()
    duration_s = ((run.ended_at or run.started_at) - run.started_at).total_seconds()
    rows = [
        ("status", summary["status"]), ("mode", summary["mode"]), ("duration", f"{duration_s:,.1f} s"),
        ("projects listed", f"{summary['units_seen']:,}"), ("new", f"{summary['units_new']:,}"),
        ("changed", f"{summary['units_changed']:,}"), ("unchanged", f"{summary['units_unchanged']:,}"),
        ("deleted", f"{summary['units_deleted']:,}"), ("failed", f"{summary['units_failed']:,}"),
        ("rows rejected", f"{summary['rows_rejected']:,}"), ("requests", f"{summary['requests']:,}"),
        ("retries", f"{summary['retries']:,}"),
    ] + [(f"rows loaded: `{table}`", f"{count:,}") for table, count in sorted(summary["rows_loaded"].items())]
    lines = [f"### Sync {run.source}/{run.account}: {run.status}", "", "| | |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


async def record_summary(con: duckdb.DuckDBPyConnection, run_id: str) -> None:
    """The run's counts, read back from its ledger row (so a failed run has them too), as a
    markdown artifact of the current flow run (none outside one)."""
    if FlowRunContext.get() is None:
        return
    from prefect.artifacts import acreate_markdown_artifact

    try:
        run = load_run(con, run_id)
        if run is None:  # failed before it started (e.g. the warehouse was busy)
            return
        await acreate_markdown_artifact(
            summary_markdown(run), key=artifact_key(run.source, run.account),
            description=f"Counts of the {run.source}/{run.account} sync run (pipeline.runs holds the details).",
        )
    except Exception as exc:  # the sync's outcome stands: a missing record must not change it
        log.warning("could not record the run summary in Prefect: %s", type(exc).__name__)


@asynccontextmanager
async def summary_artifact(con: duckdb.DuckDBPyConnection, run_id: str) -> AsyncIterator[None]:
    """Around a run: on leaving, normally or by an error, its summary artifact. (Not on
    an interrupt or cancellation: those must stop at once.)"""
    try:
        yield
    except Exception:
        await record_summary(con, run_id)
        raise
    await record_summary(con, run_id)
