"""``PWH_DUCKDB_MEMORY`` bounds DuckDB's memory on a sync's warehouse connection; a write that
needs more fails in one line naming the variable, and nothing of it lands."""

from __future__ import annotations

from typing import Any

import duckdb
import pytest

from pwh.failures import describe_failure
from pwh.settings import duckdb_memory
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from pwh.warehouse.connection import WarehouseMemoryError, connect, transaction
from tests.live import CLIENT_ID, TOKEN, SimulatorThread, pwh, pwh_env

PROJECTS = 30


class DatasetWithALongMemo(RayteamsDataset):
    """One project carries a memo of 12 MB. Beyond its limit DuckDB writes rows out to disk,
    so many small rows fit in 8 MB (the smallest limit pwh takes); one value that size does not."""

    def aggregate(self, project_id: str) -> list[dict[str, Any]] | None:
        records = super().aggregate(project_id)
        if records is not None and project_id == self.project_ids()[0]:
            records.append({"_id": project_id, "sk": "memo:1700000000000", "content": "x" * 12_000_000,
                            "created": 1_700_000_000_000})
        return records


@pytest.fixture(scope="module")
def sim():
    dataset = DatasetWithALongMemo(DatasetConfig(seed=57, n_projects=PROJECTS))
    with SimulatorThread(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as running:
        yield running


def sync(sim: SimulatorThread, db, **env: str) -> tuple[int, str, str]:
    process = pwh("sync", "rayteams", "--base-url", sim.base_url, "--db", str(db), "--quiet",
                  env=pwh_env(None, **env))
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def limit_of(con: duckdb.DuckDBPyConnection) -> str:
    return con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


def test_a_writer_takes_the_limit_and_a_reader_keeps_duckdbs_default(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    default = limit_of(duckdb.connect())
    monkeypatch.delenv("PWH_DUCKDB_MEMORY", raising=False)
    writer = connect(db)
    assert limit_of(writer) == "128.0 MiB"  # pwh's default
    writer.close()
    monkeypatch.setenv("PWH_DUCKDB_MEMORY", "300MB")
    writer = connect(db)
    assert limit_of(writer) == "286.1 MiB"  # 300,000,000 bytes, as DuckDB prints it
    writer.close()
    reader = connect(db, read_only=True)
    assert limit_of(reader) == default
    reader.close()


def test_without_the_variable_a_large_warehouse_gets_a_quarter_of_its_size(tmp_path, monkeypatch):
    monkeypatch.delenv("PWH_DUCKDB_MEMORY", raising=False)
    db = tmp_path / "w.duckdb"
    assert duckdb_memory(db) == 128 * 1024**2  # not made yet
    with db.open("wb") as file:
        file.truncate(2 * 1024**3)  # sparse: its size, not its blocks
    assert duckdb_memory(db) == 512 * 1024**2
    monkeypatch.setenv("PWH_DUCKDB_MEMORY", "100MB")
    assert duckdb_memory(db) == 100_000_000


def test_a_load_beyond_the_limit_fails_in_one_line_and_the_next_run_loads_everything(sim, tmp_path):
    db = tmp_path / "w.duckdb"
    code, _, err = sync(sim, db, PWH_DUCKDB_MEMORY="8MB")
    assert code == 1
    assert err.startswith("pwh: error: WarehouseMemoryError: DuckDB ran out of memory writing the warehouse "
                          "(its limit: PWH_DUCKDB_MEMORY=8MB); nothing of that transaction was written: "
                          "raise PWH_DUCKDB_MEMORY")
    assert err.count("\n") == 1 and "Traceback" not in err
    con = duckdb.connect(str(db), read_only=True)
    try:
        status, error = con.execute("SELECT status, error FROM pipeline.runs").fetchall()[0]
        projects = con.execute("SELECT count(*) FROM rayteams.projects").fetchall()[0][0]
    finally:
        con.close()
    assert status == "failed" and error.startswith("WarehouseMemoryError: DuckDB ran out of memory")
    assert projects == 0  # the one batch's transaction rolled back whole

    code, out, err = sync(sim, db)  # pwh's default limit
    assert code == 0, err
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM rayteams.projects").fetchall() == [(PROJECTS,)]
    finally:
        con.close()


def test_a_commit_that_runs_out_of_memory_is_one_line_and_lands_nothing(tmp_path, monkeypatch):
    # Once the primary-key index outgrows the limit, DuckDB fails at COMMIT, in a
    # TransactionException ("Failed to commit: failed to pin block …"), not at the INSERT.
    monkeypatch.setenv("PWH_DUCKDB_MEMORY", "16MB")
    con = connect(tmp_path / "w.duckdb")
    con.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY)")
    batch, committed = 20_000, 0
    with pytest.raises(WarehouseMemoryError) as raised:
        for start in range(0, 200 * batch, batch):
            with transaction(con):
                con.execute(f"INSERT INTO t SELECT md5(range::VARCHAR) FROM range({start}, {start + batch})")
            committed += batch
    assert str(raised.value).startswith(
        "DuckDB ran out of memory committing to the warehouse (its limit: PWH_DUCKDB_MEMORY=16MB); nothing of that "
        "transaction was written: raise PWH_DUCKDB_MEMORY")
    assert committed > 0 and con.execute("SELECT count(*) FROM t").fetchall() == [(committed,)]
    con.close()


def test_running_out_of_memory_outside_a_write_is_one_line_naming_the_limit(monkeypatch, tmp_path):
    monkeypatch.setenv("PWH_LOG_FILE", str(tmp_path / "pwh.log"))  # where the unexpected one's traceback goes
    line = describe_failure(duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate data of size 32 KiB"))
    assert line == ("WarehouseMemoryError: DuckDB ran out of memory reading or checking the warehouse (a sync's "
                    "limit: pwh's default, 128MiB or a quarter of the file; a reader's: DuckDB's, 80% of the memory): "
                    "raise PWH_DUCKDB_MEMORY "
                    "(e.g. 2GB), or free memory on this machine")
    monkeypatch.setenv("PWH_DUCKDB_MEMORY", " 2GB ")
    assert describe_failure(duckdb.TransactionException("Failed to commit: could not allocate block of size 256 KiB")) \
        .startswith("WarehouseMemoryError: DuckDB ran out of memory reading or checking the warehouse (a sync's "
                    "limit: PWH_DUCKDB_MEMORY=2GB; a reader's: DuckDB's, 80% of the memory): raise PWH_DUCKDB_MEMORY")
    # Another transaction error is not a memory one.
    assert describe_failure(duckdb.TransactionException("Current transaction is aborted")).startswith(
        "unexpected TransactionException")
