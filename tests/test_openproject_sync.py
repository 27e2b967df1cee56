"""End to end: the sync-openproject Prefect flow against the simulator on 127.0.0.1 into a
DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pwh.flows.prefect_flows import sync_openproject
from pwh.schemas import openproject
from pwh.simulators.openproject.dataset import DatasetConfig, OpenProjectDataset
from pwh.simulators.openproject.simulator import SimulatorOptions, running_simulator
from pwh.sources.openproject.client import UNDISCLOSED
from tests.warehouse_checks import content_hashes, table_counts

KEY = "op-key-SECRET-9e1d77"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENPROJECT_API_KEY", KEY)


def options(**kw) -> SimulatorOptions:
    return SimulatorOptions(api_key=KEY, **kw)


async def sync(dataset, db: Path, sim_options: SimulatorOptions | None = None, **params) -> dict:
    params.setdefault("page_size", 5)
    async with running_simulator(dataset, sim_options or options()) as base_url:
        return await sync_openproject(base_url=base_url, db_path=str(db), batch_size=8, **params)


def dimension_requests(dataset: OpenProjectDataset, page_size: int = 5) -> int:
    """A run's requests for the dimensions when it fetched no work package: the project
    schema, the statuses (one unpaged collection) and the pages of users."""
    return 1 + 1 + -(-len(dataset.users) // page_size)


def counts(db: Path) -> dict[str, int]:
    return table_counts(db, openproject.TABLES)


def hashes(db: Path) -> dict[str, str]:
    return content_hashes(db, tables=openproject.TABLES)


async def test_full_sync_over_several_pages_matches_the_truth_and_twice_is_the_same(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=21, n_projects=24, max_work_packages=14, invalid_records=1))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db)
    assert summary["status"] == "success" and summary["units_new"] == 24
    assert counts(db) == dataset.expected_rows()
    assert summary["rows_rejected"] == 1
    first = hashes(db)

    again = await sync(dataset, db, mode="full_refresh")
    assert again["units_changed"] == 24 and again["units_new"] == 0
    assert hashes(db) == first

    con = duckdb.connect(str(db), read_only=True)
    try:
        # the project whose memberships answer 404 is loaded with everything else
        hidden = [str(p.id) for p in dataset.projects.values() if p.memberships_hidden]
        rows = con.execute("SELECT project_id, not_visible FROM openproject.projects WHERE not_visible IS NOT NULL").fetchall()
        assert sorted(rows) == sorted((pid, '["memberships"]') for pid in hidden)
        for pid in hidden:
            sim = dataset.projects[int(pid)]
            assert con.execute("SELECT count(*) FROM openproject.work_packages WHERE project_id = ?", [pid]).fetchall()[0][0] == len(sim.work_packages)
            assert con.execute("SELECT count(*) FROM openproject.memberships WHERE project_id = ?", [pid]).fetchall()[0][0] == 0
        # abbreviated projects were completed: every project has its description and cursor
        abbreviated = [str(p.id) for p in dataset.projects.values() if p.abbreviated]
        assert abbreviated
        assert con.execute(
            "SELECT count(*) FROM openproject.projects WHERE updated_at IS NULL OR description_format IS NULL"
        ).fetchall()[0][0] == 0
        # hierarchy: undisclosed parents are flagged, disclosed ones are ids of loaded projects
        undisclosed = sum(1 for p in dataset.projects.values() if p.project["_links"]["parent"]["href"] == UNDISCLOSED)
        assert undisclosed == 2  # project indices 4 and 14
        assert con.execute("SELECT count(*) FROM openproject.projects WHERE parent_undisclosed").fetchall()[0][0] == undisclosed
        orphans = con.execute("""SELECT count(*) FROM openproject.projects c WHERE parent_id IS NOT NULL
            AND NOT EXISTS (SELECT 1 FROM openproject.projects p WHERE p.project_id = CAST(c.parent_id AS VARCHAR))""").fetchall()[0][0]
        assert orphans == 0
        # custom fields land in custom_values, for projects and work packages
        kinds = dict(con.execute("SELECT owner_type || '/' || kind, count(*) FROM openproject.custom_values GROUP BY 1").fetchall())
        assert set(kinds) == {"project/value", "project/comment", "project/link", "work_package/value", "work_package/link"}
        assert con.execute("SELECT value_text FROM openproject.custom_values WHERE field = 'customField14'").fetchall()[0][0] == "Option 1, Option 3"
    finally:
        con.close()
    # the API key is nowhere in the warehouse file
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    con.close()
    content = db.read_bytes() + (Path(str(db) + ".wal").read_bytes() if Path(str(db) + ".wal").exists() else b"")
    assert KEY.encode() not in content


async def test_transient_faults_give_the_same_warehouse_as_none(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=22, n_projects=20, max_work_packages=12))
    await sync(dataset, tmp_path / "clean.duckdb")
    faulty = options(fault_rate=0.25, retry_after_s=0, stall_s=1.5)
    summary = await sync(dataset, tmp_path / "faulty.duckdb", faulty, timeout_s=0.5, max_attempts=8)
    assert summary["status"] == "success" and summary["retries"] > 0
    assert hashes(tmp_path / "faulty.duckdb") == hashes(tmp_path / "clean.duckdb")
    assert counts(tmp_path / "faulty.duckdb") == dataset.expected_rows()


async def test_incremental_sync_by_updated_at(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=23, n_projects=30, max_work_packages=8))
    db = tmp_path / "w.duckdb"
    first = await sync(dataset, db)
    list_pages = 6  # 30 projects, 5 a page
    abbreviated = sum(1 for p in dataset.projects.values() if p.abbreviated)

    quiet = await sync(dataset, db)
    assert quiet["units_unchanged"] == 30 and quiet["units_new"] + quiet["units_changed"] == 0
    # the list, the abbreviated projects' completion, one work-package probe a project, and
    # the instance's dimensions (no work-package schema: no work package was fetched)
    assert quiet["requests"] == list_pages + abbreviated + 30 + dimension_requests(dataset) < first["requests"]

    # Work packages edited under projects whose own updatedAt stays: the probe sees them.
    change = dataset.mutate(seed=1, update_share=0.1, add_share=0.05, remove_share=0.05, work_package_share=0.1)
    assert len(change.work_packages_changed) == 3
    summary = await sync(dataset, db)
    assert summary["units_changed"] == len(change.updated) + len(change.work_packages_changed) == 6
    assert summary["units_new"] == len(change.added) and summary["units_deleted"] == len(change.removed)
    fresh = tmp_path / "fresh.duckdb"
    await sync(dataset, fresh, mode="full_refresh")
    con = duckdb.connect(str(db), read_only=True)
    deleted = {r[0] for r in con.execute("SELECT project_id FROM openproject.projects WHERE deleted_at IS NOT NULL").fetchall()}
    con.close()
    assert deleted == set(change.removed)
    # Same as a fresh sync of the new state, except that vanished projects stay, marked deleted.
    con = duckdb.connect(str(db), read_only=True)
    for table in openproject.TABLES:
        kept = con.execute(
            f"SELECT count(*) FROM {table.qualified_name} WHERE project_id NOT IN (SELECT unnest(?))",
            [sorted(deleted) or ["-"]],
        ).fetchall()[0][0]
        assert kept == counts(fresh)[table.name], table.name
    renamed = con.execute(
        "SELECT count(*) FROM openproject.projects WHERE name LIKE '%(renamed)' AND project_id IN (SELECT unnest(?))",
        [change.updated],
    ).fetchall()[0][0]
    con.close()
    assert renamed == len(change.updated)
    con = duckdb.connect(str(db), read_only=True)
    edited = {r[0] for r in con.execute("SELECT project_id FROM openproject.work_packages WHERE subject LIKE '%(edited)'").fetchall()}
    con.close()
    assert edited == set(change.work_packages_changed)

    # Without the probe, a run costs the list alone and relies on projects' updatedAt.
    bare = await sync(dataset, db, probe_work_packages=False)
    assert bare["units_changed"] == bare["units_seen"]  # cursors change shape once
    bare = await sync(dataset, db, probe_work_packages=False)
    assert bare["units_unchanged"] == bare["units_seen"]
    assert bare["requests"] == 6 + sum(1 for p in dataset.projects.values() if p.abbreviated) + dimension_requests(dataset)


async def test_a_project_failing_every_time_ends_partial_and_heals(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=24, n_projects=12, max_work_packages=6))
    db = tmp_path / "w.duckdb"
    broken = dataset.project_ids()[4]
    summary = await sync(dataset, db, options(always_fail_projects=frozenset({broken})), max_attempts=2)
    assert summary["status"] == "partial" and summary["failed_units"] == [str(broken)]
    healed = await sync(dataset, db)
    assert healed["status"] == "success" and healed["units_new"] == 1
    assert counts(db) == dataset.expected_rows()


async def test_wrong_key_fails_with_a_clear_message(tmp_path, monkeypatch):
    dataset = OpenProjectDataset(DatasetConfig(seed=25, n_projects=3))
    monkeypatch.setenv("OPENPROJECT_API_KEY", "wrong-key-123")
    with pytest.raises(Exception, match="OPENPROJECT_API_KEY") as caught:
        await sync(dataset, tmp_path / "w.duckdb")
    assert "wrong-key-123" not in str(caught.value)
