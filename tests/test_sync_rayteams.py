"""End to end: the Prefect flow against the simulator on 127.0.0.1 into a DuckDB file."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import duckdb
import pytest

from pwh.flows.prefect_flows import sync_rayteams
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import FAULT_KINDS, SimulatorOptions, running_simulator
from tests.warehouse_checks import content_hashes, table_counts

TOKEN = "tok-SECRET-7f3a9c1e5b"
CLIENT_ID = "client-SECRET-4d2e"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)


def options(**kw) -> SimulatorOptions:
    return SimulatorOptions(token=TOKEN, client_id=CLIENT_ID, **kw)


async def sync(dataset, db: Path, sim_options: SimulatorOptions | None = None, **params) -> dict:
    summary, _ = await sync_with_stats(dataset, db, sim_options, **params)
    return summary


async def sync_with_stats(dataset, db: Path, sim_options: SimulatorOptions | None = None, **params) -> tuple[dict, dict]:
    """The run summary and the simulator's own counters (faults injected by kind, ...)."""
    async with running_simulator(dataset, sim_options or options()) as base_url:
        summary = await sync_rayteams(base_url=base_url, db_path=str(db), batch_size=16, **params)
        async with aiohttp.ClientSession() as session:
            async with session.get(base_url.removesuffix("/v1.0") + "/_sim/stats") as response:
                return summary, await response.json()


@pytest.mark.parametrize("strategy", ["aggregate", "per_resource"])
async def test_full_sync_matches_simulator_truth(tmp_path, strategy):
    dataset = RayteamsDataset(DatasetConfig(seed=11, n_projects=40))
    summary = await sync(dataset, tmp_path / "w.duckdb", strategy=strategy)
    assert summary["status"] == "success"
    assert summary["units_seen"] == summary["units_new"] == 40
    assert table_counts(tmp_path / "w.duckdb") == dataset.expected_rows(strategy)
    per_project = 2 if strategy == "aggregate" else 6
    assert summary["requests"] == 1 + per_project * 40


async def test_same_sync_twice_leaves_identical_tables(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=12, n_projects=30, invalid_records=2))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db, mode="full_refresh")
    first = content_hashes(db)
    again = await sync(dataset, db, mode="full_refresh")
    assert again["units_changed"] == 30 and again["units_new"] == 0
    assert content_hashes(db) == first


@pytest.mark.parametrize("fault_rate, strategy, n_projects", [(0.25, "aggregate", 30), (0.10, "per_resource", 30)])
async def test_transient_faults_give_the_same_warehouse_as_none(tmp_path, fault_rate, strategy, n_projects):
    dataset = RayteamsDataset(DatasetConfig(seed=13, n_projects=n_projects, invalid_records=2))
    await sync(dataset, tmp_path / "clean.duckdb", strategy=strategy)
    # Every kind: 429 (with Retry-After), 500, stalls beyond the timeout, truncated and
    # non-JSON bodies, connection resets.
    faulty = options(fault_rate=fault_rate, retry_after_s=1, stall_s=1.5)
    summary, stats = await sync_with_stats(
        dataset, tmp_path / "faulty.duckdb", faulty, strategy=strategy, timeout_s=0.5, max_attempts=8)
    assert summary["status"] == "success"
    # The simulator proves each kind was injected (aiohttp re-sends a GET once by itself
    # when a pooled connection drops, so a reset need not reach our retry counter).
    assert set(stats["faults_by_kind"]) == set(FAULT_KINDS)
    assert all(count >= 1 for count in stats["faults_by_kind"].values()), stats["faults_by_kind"]
    assert summary["retries"] >= stats["faults"] - stats["faults_by_kind"]["reset"]
    assert content_hashes(tmp_path / "faulty.duckdb") == content_hashes(tmp_path / "clean.duckdb")


async def test_a_record_that_breaks_its_schema_is_quarantined_and_the_rest_loads(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=14, n_projects=25, invalid_records=1))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db)
    assert summary["rows_rejected"] == 1
    assert table_counts(db) == dataset.expected_rows("aggregate")
    [(table, project_id, sk)] = dataset.invalid_record_keys
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT table_name, record_key, reasons, raw FROM pipeline.rejected_records").fetchall()
    assert len(rows) == 1
    assert rows[0][0] == table and rows[0][1] == f"{project_id}/{sk}"
    assert rows[0][2] != "[]" and sk in rows[0][3]
    run = con.execute("SELECT status, rows_rejected FROM pipeline.runs").fetchall()
    assert run == [("success", 1)]


async def test_no_patient_name_download_link_or_secret_lands_in_the_database(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=15, n_projects=30, invalid_records=3))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    con.close()
    content = db.read_bytes()
    wal = Path(str(db) + ".wal")
    if wal.exists():
        content += wal.read_bytes()
    names = dataset.patient_names()
    links = dataset.download_links()
    assert names and links
    for secret in (*names, *links, TOKEN, CLIENT_ID, os.environ["PWH_PSEUDONYM_KEY"]):
        assert secret.encode() not in content, f"{secret!r} found in the warehouse file"
    # The pseudonyms are there instead, and stable.
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM rayteams.projects WHERE subject_pseudonym IS NOT NULL").fetchall()[0][0] > 0


async def test_incremental_sync_fetches_only_changed_and_marks_deleted(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=16, n_projects=100))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    change = dataset.mutate(seed=1, update_share=0.05, add_share=0.01, remove_share=0.01)
    summary = await sync(dataset, db)
    changed = len(change.updated) + len(change.added)
    assert summary["units_new"] == len(change.added)
    assert summary["units_changed"] == len(change.updated)
    assert summary["units_deleted"] == len(change.removed)
    assert summary["requests"] == 1 + 2 * changed
    # Equal to a full sync of the new state, except that vanished projects stay, marked deleted.
    fresh = tmp_path / "fresh.duckdb"
    await sync(dataset, fresh, mode="full_refresh")
    con = duckdb.connect(str(db), read_only=True)
    deleted = {r[0] for r in con.execute("SELECT project_id FROM rayteams.projects WHERE deleted_at IS NOT NULL").fetchall()}
    con.close()
    assert deleted == set(change.removed)
    assert table_counts(fresh)["projects"] == table_counts(db)["projects"] - len(deleted)

    # No change upstream: only the list is fetched.
    quiet = await sync(dataset, db)
    assert quiet["requests"] == 1 and quiet["units_unchanged"] == quiet["units_seen"]


async def test_persistent_failure_of_one_project_ends_partial_and_is_retried(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=17, n_projects=20))
    db = tmp_path / "w.duckdb"
    broken = dataset.project_ids()[3]
    failing = options(always_fail_projects=frozenset({broken}))
    summary = await sync(dataset, db, failing, max_attempts=2)
    assert summary["status"] == "partial" and summary["failed_units"] == [broken]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM rayteams.projects").fetchall()[0][0] == 19
    status, failed = con.execute("SELECT status, failed_units FROM pipeline.runs").fetchall()[0]
    con.close()
    assert status == "partial" and broken in failed
    healed = await sync(dataset, db)
    assert healed["status"] == "success" and healed["units_new"] == 1
    assert table_counts(db) == dataset.expected_rows("aggregate")


async def test_wrong_token_fails_with_a_clear_message(tmp_path, monkeypatch):
    dataset = RayteamsDataset(DatasetConfig(seed=18, n_projects=3))
    monkeypatch.setenv("RAYTEAMS_TOKEN", "wrong")
    with pytest.raises(Exception, match="RAYTEAMS_TOKEN"):
        await sync(dataset, tmp_path / "w.duckdb")


async def test_an_answer_over_the_size_cap_fails_its_project_with_a_clear_error(tmp_path, monkeypatch):
    import orjson

    dataset = RayteamsDataset(DatasetConfig(seed=19, n_projects=6))

    def served_size(data) -> int:  # the simulator's envelope around the data
        return len(b'{"status":"success","data":' + orjson.dumps(data) + b"}")

    sizes = {pid: served_size(dataset.aggregate(pid)) for pid in dataset.project_ids()}
    *_, second, biggest = sorted(sizes, key=sizes.get)
    cap = sizes[second]
    assert sizes[biggest] > cap > served_size(dataset.project_list())
    assert all(served_size(dataset.files(pid)) <= cap for pid in sizes)
    monkeypatch.setenv("PWH_MAX_RESPONSE_BYTES", str(cap))  # the variable the error names
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db)
    assert summary["status"] == "partial" and summary["failed_units"] == [biggest]
    assert summary["retries"] == 0  # refused at once, not retried
    con = duckdb.connect(str(db), read_only=True)
    [(failed,)] = con.execute("SELECT failed_units FROM pipeline.runs").fetchall()
    con.close()
    message = orjson.loads(failed)[biggest]
    assert f"answer exceeds the {cap:,}-byte cap" in message and "PWH_MAX_RESPONSE_BYTES" in message
