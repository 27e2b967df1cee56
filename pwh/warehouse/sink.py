"""The engine's sink when it writes straight into the warehouse (pwh/flows/engine.py
``Sink``): each call is the warehouse function of the same name on one open connection."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime

import duckdb
import polars as pl

from pwh.schemas.rows import RejectedRecord, RowIssue
from pwh.schemas.spec import Table
from pwh.warehouse import load, runs
from pwh.warehouse.runs import RunRecord


class WarehouseSink:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def read_state(self, source: str, account: str) -> dict[str, load.UnitState]:
        return load.read_state(self.con, source, account)

    def resumed_runs(self, source: str, account: str, run_id: str) -> set[str]:
        return runs.interrupted_full_refreshes(self.con, source, account, run_id)

    def start_run(self, run: RunRecord, *, region: str | None, base_url: str | None) -> None:
        runs.start_run(self.con, run)
        runs.record_account(self.con, source=run.source, account=run.account, region=region, base_url=base_url,
                            run_id=run.run_id, now=run.started_at)

    def save_run(self, run: RunRecord) -> None:
        runs.save_run(self.con, run)

    def replace_units(
        self, *, source: str, account: str, run_id: str, tables: Sequence[Table],
        cursors: Mapping[str, str | None], frames: Mapping[str, pl.DataFrame], rejected: Iterable[RejectedRecord],
        now: datetime, stored: Collection[str] | None = None, partial_tables: Collection[str] = (),
        issues: Iterable[RowIssue] = (), kept_tables: Mapping[str, Collection[str]] | None = None,
        missing_streams: Mapping[str, Collection[str]] | None = None,
    ) -> dict[str, int]:
        return load.replace_units(
            self.con, source=source, account=account, run_id=run_id, tables=tables, cursors=cursors, frames=frames,
            rejected=rejected, now=now, stored=stored, partial_tables=partial_tables, issues=issues,
            kept_tables=kept_tables, missing_streams=missing_streams)

    def mark_deleted(
        self, *, source: str, account: str, unit_keys: Iterable[str], tables: Sequence[Table], now: datetime
    ) -> int:
        return load.mark_deleted(self.con, source=source, account=account, unit_keys=unit_keys, tables=tables, now=now)
