"""Resumption rules (issue 3), in-process and fast: what an incremental or full-refresh
run plans after a run was killed, from the committed state and the run ledger."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl

from pwh.flows.engine import Listing, Unit, plan_units
from pwh.schemas.rayteams import OTHER_RECORDS, TABLES
from pwh.warehouse.connection import connect
from pwh.warehouse.load import UnitState, read_state, replace_units
from pwh.warehouse.migrations import migrate
from pwh.warehouse.runs import RunRecord, interrupted_full_refreshes, save_run, start_run

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def listing(**cursors: str) -> Listing:
    return Listing([Unit(key, cursor) for key, cursor in cursors.items()])


def test_incremental_fetches_new_changed_and_revived_units_only():
    state = {"a": UnitState("1", False, "r1"), "b": UnitState("1", False, "r1"),
             "c": UnitState("1", True, "r1"), "d": UnitState("1", False, "r1")}
    plan = plan_units(listing(a="1", b="2", c="1", e="1"), state, "incremental")
    assert [u.key for u in plan.new] == ["e"]
    assert sorted(u.key for u in plan.changed) == ["b", "c"]  # moved cursor; back after deletion
    assert [u.key for u in plan.unchanged] == ["a"]
    assert plan.gone == ["d"]
    # Only units the warehouse holds rows of have rows to replace (the load skips the rest's DELETEs).
    assert [u.key for u in plan.to_fetch if u.stored] == sorted(u.key for u in plan.changed)
    assert not any(u.stored for u in plan.new)


def test_full_refresh_refetches_all_but_what_the_interrupted_refresh_loaded():
    state = {"a": UnitState("1", False, "killed"), "b": UnitState("1", False, "killed"),
             "c": UnitState("1", False, "older")}
    assert len(plan_units(listing(a="1", b="2", c="1"), state, "full_refresh").to_fetch) == 3
    plan = plan_units(listing(a="1", b="2", c="1"), state, "full_refresh", {"killed"})
    assert [u.key for u in plan.unchanged] == ["a"]  # loaded by the killed refresh, unchanged since
    assert sorted(u.key for u in plan.to_fetch) == ["b", "c"]


def _run(con, run_id: str, mode: str, status: str, minute: int) -> None:
    run = RunRecord(run_id, "rayteams", "default", mode, None, T0 + timedelta(minutes=minute))
    run.status = status
    save_run(con, run)


def test_the_ledger_names_the_runs_of_an_unfinished_full_refresh(tmp_path):
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    _run(con, "f0", "full_refresh", "success", 0)
    _run(con, "i1", "incremental", "abandoned", 1)
    _run(con, "f2", "full_refresh", "failed", 2)
    _run(con, "f3", "full_refresh", "running", 3)  # killed: still 'running' in the ledger
    current = RunRecord("f4", "rayteams", "default", "full_refresh", None, T0 + timedelta(minutes=4))
    start_run(con, current)  # marks f3 abandoned
    assert interrupted_full_refreshes(con, "rayteams", "default", "f4") == {"f2", "f3"}
    # A finished run ends the chain: after it, a full refresh starts from scratch.
    _run(con, "f5", "full_refresh", "success", 5)
    assert interrupted_full_refreshes(con, "rayteams", "default", "f6") == set()
    assert interrupted_full_refreshes(con, "openproject", "default", "x") == set()
    assert read_state(con, "rayteams", "default") == {}
    con.close()


def test_a_unit_loaded_again_replaces_its_rows_and_a_new_one_only_inserts(tmp_path):
    """``stored`` decides the DELETEs: the rows of a stored unit are replaced, never doubled."""
    con = connect(tmp_path / "w.duckdb")
    migrate(con)

    def load(stored: list[str], kinds: list[str]) -> None:
        frame = pl.DataFrame({"account": ["acc"] * len(kinds), "project_id": ["p1"] * len(kinds),
                              "sk": [f"{k}:1" for k in kinds], "kind": kinds, "record": ["{}"] * len(kinds)},
                             schema=OTHER_RECORDS.polars_schema)
        replace_units(con, source="rayteams", account="acc", run_id="r", tables=TABLES, cursors={"p1": "1"},
                      frames={"other_records": frame}, rejected=[], now=T0, stored=stored)

    load([], ["a", "b"])
    load(["p1"], ["c"])
    assert con.execute("SELECT list(kind ORDER BY kind) FROM rayteams.other_records").fetchone()[0] == ["c"]
