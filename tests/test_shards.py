"""Sharded syncs (issue 19): shards stage their output (Parquet + a manifest written
last) and never open the warehouse; one loader loads each finished shard once, in one
transaction. A sharded sync, a retried shard, a worker killed mid-shard and a loader
killed mid-load (real subprocesses, SIGKILL) each end with a warehouse equal to a
single-process sync of the same data. The RAYTeams simulator on 127.0.0.1, real DuckDB
files, no Prefect (the work-pool path is the same functions started by run_deployment)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pwh.flows.rayteams_shards import stage_rayteams_shard, sync_rayteams_sharded
from pwh.flows.shards import Shard, shard_part, state_file, write_state
from pwh.flows.syncs import sync_rayteams
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from pwh.warehouse.connection import connect
from pwh.warehouse.migrations import migrate
from pwh.warehouse.replica import replica_path
from pwh.warehouse.shard_load import load_staged
from pwh.warehouse.staging import MANIFEST, finished_shards
from tests.live import CLIENT_ID, TOKEN, SimulatorThread, pwh, pwh_env
from tests.warehouse_checks import content_hashes, table_counts

N_PROJECTS = 60


@pytest.fixture
def sim(monkeypatch):
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    dataset = RayteamsDataset(DatasetConfig(seed=19, n_projects=N_PROJECTS, invalid_records=4))
    with SimulatorThread(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as running:
        yield running


def single(sim, db: Path) -> dict:
    return asyncio.run(sync_rayteams(sim.base_url, db_path=str(db), account="lab", batch_size=7))


def sharded(sim, db: Path, staging: Path, parts: int) -> dict:
    return asyncio.run(sync_rayteams_sharded(str(staging), parts=parts, base_url=sim.base_url, account="lab",
                                             db_path=str(db), batch_size=7))


def state(db: Path) -> dict:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {key: (cursor, deleted) for key, cursor, deleted in con.execute(
            "SELECT unit_key, cursor, deleted_at IS NOT NULL FROM pipeline.unit_state").fetchall()}
    finally:
        con.close()


def load_log(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT manifest_id, units FROM pipeline.shard_loads ORDER BY ALL").fetchall()
    finally:
        con.close()


def test_the_part_of_a_unit_is_stable_and_spreads_units():
    keys = [f"project-{i}" for i in range(3000)]
    parts = [shard_part(key, 4) for key in keys]
    assert parts == [shard_part(key, 4) for key in keys]
    # A hash fixed across processes and machines (Python's hash() of text is not).
    assert [shard_part(key, 4) for key in ("a", "b", "c", "project-1")] == [3, 1, 3, 2]
    assert all(600 < parts.count(part) < 900 for part in range(4))
    assert {shard_part(key, 1) for key in keys} == {0}


def test_a_sharded_sync_equals_a_single_process_sync_then_again_after_changes(sim, tmp_path):
    parts = 3  # one part: the worker-killed test
    one, many = tmp_path / "one.duckdb", tmp_path / "many.duckdb"
    single(sim, one)
    outcome = sharded(sim, many, tmp_path / "staging", parts)
    assert len(outcome["shards"]) == parts and not outcome["failed"]
    assert table_counts(many) == sim.dataset.expected_rows("aggregate")
    assert content_hashes(many) == content_hashes(one)
    assert state(many) == state(one)
    assert sum(units for _, units in load_log(many)) == N_PROJECTS
    assert list((tmp_path / "staging").iterdir()) == []  # loaded and published: the staged rows are gone

    # Updates, new projects and deletions (proved by each part's complete listing).
    sim.dataset.mutate(seed=5, update_share=0.2, add_share=0.1, remove_share=0.1)
    single(sim, one)
    sharded(sim, many, tmp_path / "staging", parts)
    # deleted_at is when each sync marked the project (whether it is, the state says).
    assert content_hashes(many, exclude=("deleted_at",)) == content_hashes(one, exclude=("deleted_at",))
    assert state(many) == state(one)
    assert sum(1 for _, deleted in state(many).values() if deleted) == 6
    # The readers' replica was published with the data.
    assert content_hashes(replica_path(many), exclude=("deleted_at",)) == content_hashes(one, exclude=("deleted_at",))

    # Deletions only: shards that stage no rows still mark their projects' rows deleted.
    sim.dataset.mutate(seed=6, update_share=0, add_share=0, remove_share=0.1)
    single(sim, one)
    sharded(sim, many, tmp_path / "staging", parts)
    assert content_hashes(many, exclude=("deleted_at",)) == content_hashes(one, exclude=("deleted_at",))
    assert state(many) == state(one)
    con = duckdb.connect(str(many), read_only=True)
    try:
        gone = {key for key, (_, deleted) in state(many).items() if deleted}
        marked = {key for (key,) in con.execute(
            "SELECT project_id FROM rayteams.projects WHERE deleted_at IS NOT NULL").fetchall()}
    finally:
        con.close()
    assert len(gone) > 6 and marked == gone


def stage(sim, staging: Path, shard: Shard) -> dict:
    return asyncio.run(stage_rayteams_shard(str(staging), shard.parent_run_id, shard.account, shard.part,
                                            shard.parts, base_url=sim.base_url, batch_size=7))


def new_warehouse(db: Path):
    con = connect(db)
    migrate(con)
    return con


def test_a_shard_is_loaded_once_however_often_it_or_the_loader_is_retried(sim, tmp_path):
    staging = tmp_path / "staging"
    shard = Shard("parent-1", "lab", 1, 2)
    write_state(state_file(staging, "parent-1", "rayteams", "lab"), {})
    first, second = stage(sim, staging, shard), stage(sim, staging, shard)  # a retried shard: two attempts
    assert first["status"] == second["status"] == "success"
    root = staging / "parent-1" / "shards"
    assert len(list(root.glob(f"*/*/{MANIFEST}"))) == 2 and len(finished_shards(root)) == 1
    con = new_warehouse(tmp_path / "w.duckdb")
    try:
        loads = load_staged(con, str(root)) + load_staged(con, str(root))  # the loader retried too
        assert [load.loaded for load in loads] == [True, False]
        projects = {key for (key,) in con.execute("SELECT project_id FROM rayteams.projects").fetchall()}
        assert projects and {shard_part(key, 2) for key in projects} == {1}
        assert con.execute("SELECT count(*) FROM rayteams.projects").fetchall()[0][0] == len(projects)
        assert con.execute("SELECT count(*) FROM pipeline.shard_loads").fetchall()[0][0] == 1
        # The shard's own run is in the ledger, as a single-process run would be.
        assert con.execute("SELECT status, units_new FROM pipeline.runs").fetchall() == [("success", len(projects))]
    finally:
        con.close()


SHARD_SCRIPT = """
import asyncio, sys
from pwh.flows.rayteams_shards import stage_rayteams_shard
asyncio.run(stage_rayteams_shard(sys.argv[1], "parent-k", "lab", 0, 1, base_url=sys.argv[2], batch_size=7))
"""


def test_a_worker_killed_mid_shard_leaves_an_attempt_that_is_never_loaded(sim, tmp_path):
    staging = tmp_path / "staging"
    write_state(state_file(staging, "parent-k", "rayteams", "lab"), {})
    env = pwh_env(None, PWH_CRASH_AT="transform:3")  # two batches staged, killed before the third
    killed = subprocess.run([sys.executable, "-c", SHARD_SCRIPT, str(staging), sim.base_url], env=env,
                            capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    root = staging / "parent-k" / "shards"
    attempt = next(root.glob("*/*"))
    assert len(list(attempt.glob("batch-*"))) >= 2 and not (attempt / MANIFEST).exists()
    con = new_warehouse(tmp_path / "w.duckdb")
    try:
        assert load_staged(con, str(root)) == []
        assert con.execute("SELECT count(*) FROM rayteams.projects").fetchall()[0][0] == 0
    finally:
        con.close()
    # The retried shard stages a whole attempt beside the dead one; only it is loaded.
    done = subprocess.run([sys.executable, "-c", SHARD_SCRIPT, str(staging), sim.base_url], env=pwh_env(None),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    con = new_warehouse(tmp_path / "w.duckdb")
    try:
        [load] = load_staged(con, str(root))
        assert load.units == N_PROJECTS
    finally:
        con.close()
    assert table_counts(tmp_path / "w.duckdb") == sim.dataset.expected_rows("aggregate")


def sharded_cli(sim, db: Path, staging: Path, **env: str) -> subprocess.CompletedProcess:
    process = pwh("sync", "rayteams", "--base-url", sim.base_url, "--account", "lab", "--db", str(db),
                  "--batch-size", "7", "--shards", "3", "--staging", str(staging), "--quiet", env=pwh_env(None, **env))
    out, err = process.communicate(timeout=120)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_a_loader_killed_mid_load_then_rerun_equals_a_single_process_sync(sim, tmp_path):
    one, many, staging = tmp_path / "one.duckdb", tmp_path / "many.duckdb", tmp_path / "staging"
    single(sim, one)
    killed = sharded_cli(sim, many, staging, PWH_CRASH_AT="shard-load-before-commit:2")
    assert killed.returncode == -9, killed.stderr
    # One shard committed whole; the second's transaction never did.
    [(_, units)] = load_log(many)
    assert 0 < units < N_PROJECTS and len(state(many)) == units
    rerun = sharded_cli(sim, many, staging)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.count("shard ") == 3
    assert content_hashes(many) == content_hashes(one)
    assert state(many) == state(one)
    assert sum(units for _, units in load_log(many)) == N_PROJECTS


def test_two_parents_started_for_the_same_schedule_end_as_one_sync(sim, tmp_path):
    one, many, staging = tmp_path / "one.duckdb", tmp_path / "many.duckdb", tmp_path / "staging"
    single(sim, one)
    # The second parent waits for the first one's writer lock, then finds nothing changed.
    parents = [pwh("sync", "rayteams", "--base-url", sim.base_url, "--account", "lab", "--db", str(many),
                   "--batch-size", "7", "--shards", "2", "--staging", str(staging), "--quiet",
                   env=pwh_env(None, PWH_LOCK_WAIT_S="60")) for _ in range(2)]
    for parent in parents:
        out, err = parent.communicate(timeout=120)
        assert parent.returncode == 0, err
    assert content_hashes(many) == content_hashes(one)
    assert state(many) == state(one)
    assert len(load_log(many)) == 4 and sum(units for _, units in load_log(many)) == N_PROJECTS
