"""The engine's sink when it writes straight into the warehouse (pwh/flows/engine.py
``Sink``): each call is the warehouse function of the same name on one open connection."""

from __future__ import annotations

from typing import Any

import duckdb

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

    def replace_units(self, **batch: Any) -> dict[str, int]:
        return load.replace_units(self.con, **batch)

    def mark_deleted(self, **gone: Any) -> int:
        return load.mark_deleted(self.con, **gone)
