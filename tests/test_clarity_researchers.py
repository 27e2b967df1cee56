"""Clarity's researchers (names and lab): a per-instance dimension, read once a run, by
the Clarity Prefect flow against the simulator on 127.0.0.1 into a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pwh.flows.prefect_flows import sync_clarity
from pwh.schemas import clarity
from pwh.simulators.clarity.dataset import ClarityDataset, DatasetConfig
from pwh.simulators.clarity.simulator import SIMULATOR_KEY, SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from tests.warehouse_checks import content_hashes, table_counts

USER, PASSWORD = "lims-user", "pw-SECRET-77e1"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("CLARITY_USERNAME", USER)
    monkeypatch.setenv("CLARITY_PASSWORD", PASSWORD)


async def sync(dataset, db: Path, **sim) -> tuple[dict, dict]:
    """A run, and the simulator's request counts by kind."""
    app = build_app(dataset, SimulatorOptions(username=USER, password=PASSWORD, page_size=7, **sim))
    async with serving(app, "127.0.0.1", 0) as root:
        summary = await sync_clarity(base_url=f"{root}/api/v2", db_path=str(db), batch_size=16, mode="full_refresh")
    return summary, app[SIMULATOR_KEY].snapshot()


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


async def test_researchers_load_once_a_run_with_their_lab_and_nothing_personal(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=41, n_projects=60))
    db = tmp_path / "w.duckdb"
    summary, stats = await sync(dataset, db)
    assert summary["status"] == "success" and summary["units_new"] == 60
    # one detail request per researcher, not one per project (60 projects name them)
    assert stats["researcher"] == len(dataset.researchers) == 50
    assert stats["researchers"] == 8 and stats["labs"] == 1  # 50 and 4 links, 7 a page
    counts = table_counts(db, clarity.DIMENSION_TABLES)
    assert counts["researchers"] == 50 and counts["rejected_records"] == 0
    # every project's researcher is there; labs by name; every fifth researcher has none
    assert query(db, """SELECT count(*) FROM clarity.projects p WHERE NOT EXISTS
                        (SELECT 1 FROM clarity.researchers r WHERE r.researcher_id = p.researcher_id)""") == [(0,)]
    assert query(db, "SELECT first_name, last_name, initials, lab_id, lab_name FROM clarity.researchers "
                     "WHERE researcher_id = '11'") == [("Rosalind", "McClintock", "RM", "4", "Clinical Sequencing & Co")]
    assert query(db, "SELECT count(*) FROM clarity.researchers WHERE lab_id IS NULL AND lab_name IS NULL") == [(10,)]
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    con.close()
    content = db.read_bytes()
    assert b"lab.example.org" not in content and b"+44 20" not in content and b"rosalind11" not in content
    assert PASSWORD.encode() not in content


async def test_researchers_are_replaced_and_a_403_keeps_them_and_ends_partial(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=42, n_projects=12))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    del dataset.researchers[50]
    dataset.researchers[1] = {**dataset.researchers[1], "last_name": "Lovelace", "lab": 2}
    dataset.labs[2] = "Proteomics Facility"
    summary, _ = await sync(dataset, db)
    assert summary["status"] == "success"
    assert query(db, "SELECT last_name, lab_name FROM clarity.researchers WHERE researcher_id = '1'") == [
        ("Lovelace", "Proteomics Facility")]
    assert query(db, "SELECT count(*) FROM clarity.researchers") == [(49,)]
    before = content_hashes(db, tables=(clarity.RESEARCHERS,))["researchers"]

    dataset.mutate(seed=5, update_share=0.5)
    summary, _ = await sync(dataset, db, researchers_status=403)
    assert summary["status"] == "partial" and summary["failed_units"] == [] and summary["units_changed"] == 12
    assert table_counts(db, clarity.TABLES) == dataset.expected_rows()
    assert content_hashes(db, tables=(clarity.RESEARCHERS,))["researchers"] == before
    [(error,)] = query(db, "SELECT error FROM pipeline.runs ORDER BY started_at DESC LIMIT 1")
    assert error == ("stream researchers not loaded (HTTP 403 Clarity exception 403 (FORBIDDEN)): its rows are kept, "
                     "the next run tries again")


async def test_file_details_load_once_a_run_without_credentials_or_the_uploaders_path(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=43, n_projects=30))
    db = tmp_path / "w.duckdb"
    summary, stats = await sync(dataset, db)
    assert summary["status"] == "success"
    expected = sorted(f for limsid in dataset.project_ids() for f in dataset.project(dataset.index_of(limsid))["files"])
    assert len(expected) > 10 and stats["file_details"] == 1  # one batch for every file of the run
    rows = query(db, "SELECT file_limsid, project_limsid, original_name, content_location, is_published "
                     "FROM clarity.files ORDER BY file_limsid")
    assert [r[0] for r in rows] == expected
    for limsid, project, name, location, published in rows:
        details = dataset.file_details(limsid)
        assert project == details["project"] and name == details["original_name"]
        assert published == details["published"]
        assert location == details["content_location"].replace("glsftp@", "")
    # every file of clarity.project_files has its details
    assert query(db, """SELECT count(*) FROM clarity.project_files p
                        LEFT JOIN clarity.files f USING (account, file_limsid) WHERE f.file_limsid IS NULL""") == [(0,)]
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    con.close()
    content = db.read_bytes()
    assert b"glsftp@" not in content and b"jdoe" not in content and b"Desktop" not in content
