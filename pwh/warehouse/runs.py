"""The run ledger, ``pipeline.runs``."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import duckdb
import orjson

from pwh.warehouse.connection import transaction

log = logging.getLogger("pwh.runs")


# Fields of a run the ledger has no column for: skipped streams are written into ``error``.
NOT_IN_LEDGER = ("skipped_streams",)


@dataclass
class RunRecord:
    run_id: str
    source: str
    account: str
    mode: str
    strategy: str | None
    started_at: datetime
    status: str = "running"
    ended_at: datetime | None = None
    units_seen: int = 0
    units_new: int = 0
    units_changed: int = 0
    units_unchanged: int = 0
    units_deleted: int = 0
    units_failed: int = 0
    failed_units: dict[str, str] = field(default_factory=dict)
    rows_loaded: dict[str, int] = field(default_factory=dict)
    rows_rejected: int = 0
    requests: int = 0
    retries: int = 0
    error: str | None = None
    # Streams skipped for the run, with the status that forbade them (kept in ``error``).
    skipped_streams: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Counts and status only (no record content): what a flow returns and the CLI prints."""
        return {
            "run_id": self.run_id, "status": self.status, "mode": self.mode,
            "units_seen": self.units_seen, "units_new": self.units_new, "units_changed": self.units_changed,
            "units_unchanged": self.units_unchanged, "units_deleted": self.units_deleted,
            "units_failed": self.units_failed, "failed_units": sorted(self.failed_units),
            "rows_loaded": dict(self.rows_loaded), "rows_rejected": self.rows_rejected,
            "requests": self.requests, "retries": self.retries,
            "skipped_streams": dict(self.skipped_streams),
        }

    def row(self) -> dict[str, Any]:
        values = asdict(self)
        for name in NOT_IN_LEDGER:
            del values[name]
        values["failed_units"] = orjson.dumps(self.failed_units).decode()
        values["rows_loaded"] = orjson.dumps(self.rows_loaded).decode()
        return values


def start_run(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    # We hold the only write connection: a run still 'running' belongs to a dead process.
    with transaction(con):
        con.execute(
            "UPDATE pipeline.runs SET status = 'abandoned', ended_at = coalesce(ended_at, ?) WHERE status = 'running'",
            [run.started_at],
        )
    _write(con, run)


def record_account(
    con: duckdb.DuckDBPyConnection, *, source: str, account: str, region: str | None,
    base_url: str | None, run_id: str, now: datetime,
) -> None:
    """Note the account a run syncs, and where it lives (pipeline.accounts)."""
    con.execute(
        """
        INSERT INTO pipeline.accounts VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (source, account) DO UPDATE SET region = excluded.region,
            base_url = excluded.base_url, last_synced_at = excluded.last_synced_at,
            last_run_id = excluded.last_run_id
        """,
        [source, account, region, base_url, now, now, run_id],
    )


def save_run(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    _write(con, run)


def record_failure(con: duckdb.DuckDBPyConnection, run: RunRecord, error: str) -> None:
    """A run that failed after its data committed (publishing the replica): the ledger says
    ``failed`` with the cause. Best effort: on a full disk even this may not be written,
    and the caller's error must still reach the user."""
    run.status = "failed"
    run.error = error[:2000]
    run.ended_at = datetime.now(timezone.utc)
    try:
        save_run(con, run)
    except duckdb.Error as exc:
        log.error("could not record run %s as failed: %s", run.run_id, exc)


def load_run(con: duckdb.DuckDBPyConnection, run_id: str) -> RunRecord | None:
    """A run's ledger row, as written (None when the run never started)."""
    names = [f.name for f in fields(RunRecord) if f.name not in NOT_IN_LEDGER]
    row = con.execute(f"SELECT {', '.join(names)} FROM pipeline.runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        return None
    values = dict(zip(names, row, strict=True))
    for name in ("failed_units", "rows_loaded"):
        values[name] = orjson.loads(values[name]) if values[name] else {}
    return RunRecord(**values)


def _write(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    with transaction(con):
        write_run_row(con, run)


def write_run_row(con: duckdb.DuckDBPyConnection, run: RunRecord) -> None:
    """The run's ledger row, replacing any earlier one, inside the caller's transaction."""
    values = run.row()
    columns = ", ".join(values)
    placeholders = ", ".join("?" for _ in values)
    con.execute("DELETE FROM pipeline.runs WHERE run_id = ?", [run.run_id])
    con.execute(f"INSERT INTO pipeline.runs ({columns}) VALUES ({placeholders})", list(values.values()))


def interrupted_full_refreshes(con: duckdb.DuckDBPyConnection, source: str, account: str, current_run_id: str) -> set[str]:
    """The runs of a full refresh that has not finished yet: the latest runs of this source
    account, back to the first that is not a killed (abandoned), interrupted or failed full refresh. A
    new full refresh skips the units they loaded, unless those units changed since."""
    rows = con.execute(
        "SELECT run_id, mode, status FROM pipeline.runs WHERE source = ? AND account = ? AND run_id <> ? "
        "ORDER BY started_at DESC",
        [source, account, current_run_id],
    ).fetchall()
    runs = set()
    for run_id, mode, status in rows:
        if mode != "full_refresh" or status not in ("abandoned", "interrupted", "failed"):
            break
        runs.add(run_id)
    return runs
