"""Which keys the file enforces (``Table.enforces_key``), the migration that rebuilds an
older file's child tables without their PRIMARY KEY, and the guards that remain: every
key stays unique through full, incremental and per-resource syncs, and rows the state
does not know of still fail a load. RAYTeams simulator on 127.0.0.1, the engine's plain
stages, real DuckDB files."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import duckdb
import polars as pl
import pytest

from pwh.flows.engine import run_sync
from pwh.flows.rayteams_sync import RayteamsAdapter
from pwh.schemas import rayteams
from pwh.schemas.spec import Table
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.sources.rayteams.client import RayteamsClient
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.warehouse.catalog import all_tables
from pwh.warehouse.connection import connect
from pwh.warehouse.load import StrayRowsError, replace_units
from pwh.warehouse.marts import PROJECTS as PROJECTS_MART
from pwh.warehouse.marts import create_views
from pwh.warehouse.migrations import MIGRATIONS, migrate
from tests.warehouse_checks import content_hashes, duplicate_keys

TOKEN = "tok-SECRET-keys-5a1"
CLIENT_ID = "client-SECRET-keys-9e"


def primary_keys(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {f"{schema}.{table}" for schema, table in con.execute(
        "SELECT schema_name, table_name FROM duckdb_constraints() "
        "WHERE database_name = current_database() AND constraint_type = 'PRIMARY KEY'").fetchall()}


async def sync(dataset: RayteamsDataset, db: Path, run_id: str, migrations=MIGRATIONS, **kw) -> str:
    async with running_simulator(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as url:
        client = RayteamsClient.connect(url, token=TOKEN, client_id=CLIENT_ID)
        with connect(str(db)) as con:
            migrate(con, migrations)
            async with RayteamsAdapter(client, account="acct", strategy=kw.pop("strategy", "aggregate"),
                                       pseudonyms=Pseudonymizer(b"k" * 32)) as adapter:
                run = await run_sync(adapter, con, run_id=run_id, batch_size=7, **kw)
    return run.status


def test_a_new_file_keys_the_units_tables_and_the_pipeline_but_not_child_rows():
    con = duckdb.connect()
    migrate(con)
    keyed = primary_keys(con)
    tables = all_tables()
    assert {t.qualified_name for t in tables if t.enforces_key} <= keyed
    assert not {t.qualified_name for t in tables if not t.enforces_key} & keyed
    # Spelled out, so that a change of the rule shows here.
    assert {"rayteams.projects", "openproject.projects", "clarity.projects", "incoplax.projects",
            "openproject.users", "pipeline.unit_state", "pipeline.rejected_records"} <= keyed
    assert {"rayteams.memos", "rayteams.histories", "rayteams.files", "openproject.work_packages",
            "clarity.project_udfs"}.isdisjoint(keyed)
    # A key column stays NOT NULL without its PRIMARY KEY.
    with pytest.raises(duckdb.ConstraintException, match="NOT NULL"):
        con.execute("INSERT INTO rayteams.memos (account, project_id, sk) VALUES ('a', 'p', NULL)")


def test_duplicate_keys_are_found_in_a_table_that_does_not_enforce_them():
    con = duckdb.connect()
    migrate(con)
    row = "('acct', 'p1', 'memo:1')"
    con.execute(f"INSERT INTO rayteams.memos (account, project_id, sk) VALUES {row}, {row}, {row}")
    assert duplicate_keys(con, rayteams.TABLES) == {"rayteams.memos": 2}


async def test_an_older_file_is_rebuilt_without_child_keys_and_keeps_every_row(tmp_path, monkeypatch):
    dataset = RayteamsDataset(DatasetConfig(seed=31, n_projects=30, invalid_records=2))
    db = tmp_path / "w.duckdb"
    with monkeypatch.context() as old_code:
        # The file as pwh wrote it before migration 12: every table with its PRIMARY KEY.
        old_code.setattr(Table, "enforces_key", property(lambda self: True))
        assert await sync(dataset, db, "r1", migrations=MIGRATIONS[:11]) == "success"
        with connect(str(db)) as con:
            create_views(con)
            assert "rayteams.histories" in primary_keys(con)
            # A column a later migration added sits last in the file, not where the spec has it.
            columns = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = 'unit_state' ORDER BY column_index"
            ).fetchall()]
            assert columns[-1] == "missing_streams"
    before = content_hashes(db)
    with connect(str(db)) as con:
        mart_rows = con.execute(f"SELECT count(*) FROM {PROJECTS_MART.qualified_name}").fetchall()
        assert migrate(con) == 12
        assert {t.qualified_name for t in all_tables() if not t.enforces_key}.isdisjoint(primary_keys(con))
        assert "rayteams.projects" in primary_keys(con)
        assert con.execute(f"SELECT count(*) FROM {PROJECTS_MART.qualified_name}").fetchall() == mart_rows
        assert migrate(con) == 12  # applied once
    assert content_hashes(db) == before
    # The next syncs load into the rebuilt tables, changes included.
    dataset.mutate(seed=32, update_share=0.3, add_share=0.1, remove_share=0.05)
    assert await sync(dataset, db, "r2") == "success"
    assert await sync(dataset, db, "r3", mode="full_refresh") == "success"
    content_hashes(db)  # every key still unique


@pytest.mark.parametrize("strategy", ["aggregate", "per_resource"])
async def test_keys_stay_unique_through_changes_deletions_and_refreshes(tmp_path, strategy):
    dataset = RayteamsDataset(DatasetConfig(seed=41, n_projects=35, invalid_records=3))
    db = tmp_path / "w.duckdb"
    assert await sync(dataset, db, "r1", strategy=strategy) == "success"
    for round_ in range(3):
        dataset.mutate(seed=50 + round_, update_share=0.4, add_share=0.1, remove_share=0.05)
        assert await sync(dataset, db, f"r{round_ + 2}", strategy=strategy) == "success"
        content_hashes(db)  # asserts every table's key unique
    assert await sync(dataset, db, "r9", strategy=strategy, mode="full_refresh") == "success"
    content_hashes(db)


async def test_rows_the_state_does_not_know_of_still_fail_a_load(tmp_path):
    """The units' own table keeps its PRIMARY KEY: a project whose rows are in the file but
    not in the state (edited by hand, or a bug) fails its batch instead of doubling them."""
    dataset = RayteamsDataset(DatasetConfig(seed=61, n_projects=12))
    db = tmp_path / "w.duckdb"
    assert await sync(dataset, db, "r1") == "success"
    with connect(str(db)) as con:
        (forgotten,) = con.execute("SELECT unit_key FROM pipeline.unit_state ORDER BY unit_key LIMIT 1").fetchone()
        con.execute("DELETE FROM pipeline.unit_state WHERE unit_key = ?", [forgotten])
        memos = con.execute("SELECT count(*) FROM rayteams.memos").fetchall()
    with pytest.raises(duckdb.ConstraintException, match=f"project_id: {forgotten}.*primary key"):
        await sync(dataset, db, "r2")
    with connect(str(db)) as con:
        assert con.execute("SELECT count(*) FROM rayteams.memos").fetchall() == memos
        assert con.execute("SELECT status FROM pipeline.runs WHERE run_id = 'r2'").fetchall() == [("failed",)]


def test_a_batch_carrying_rows_of_a_unit_it_does_not_replace_lands_nothing(tmp_path):
    """The child tables' keys hold because a load deletes each unit's rows first: rows of a
    unit outside the batch (a transform's bug) would escape that delete, so they are refused."""
    con = connect(tmp_path / "w.duckdb")
    migrate(con)

    def rows(table: Table, *project_ids: str) -> pl.DataFrame:
        return pl.DataFrame([{"account": "acct", "project_id": pid, "sk": f"memo:{n}"}
                             for n, pid in enumerate(project_ids)], schema=table.polars_schema)

    load = {"source": "rayteams", "account": "acct", "run_id": "r1", "tables": rayteams.TABLES,
            "cursors": {"p1": "1"}, "rejected": [], "now": datetime.now(timezone.utc)}
    projects = pl.DataFrame([{"account": "acct", "project_id": "p1"}], schema=rayteams.PROJECTS.polars_schema)
    with pytest.raises(StrayRowsError, match=r"rayteams\.memos: the batch carried rows of 1 project\(s\) it does "
                                             r"not replace \(p2\); nothing of it was written"):
        replace_units(con, frames={"projects": projects, "memos": rows(rayteams.MEMOS, "p1", "p2")}, **load)
    assert con.execute("SELECT count(*) FROM rayteams.projects").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM pipeline.unit_state").fetchall() == [(0,)]
    replace_units(con, frames={"projects": projects, "memos": rows(rayteams.MEMOS, "p1")}, **load)
    assert con.execute("SELECT count(*) FROM rayteams.memos").fetchall() == [(1,)]
    con.close()
