"""OpenProject's per-instance dimensions (custom field definitions, work-package statuses,
users) and the project list's filters: the sync-openproject flow against the simulator on
127.0.0.1 into a DuckDB file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pwh.flows.prefect_flows import sync_openproject
from pwh.schemas import openproject
from pwh.simulators.openproject.dataset import DatasetConfig, OpenProjectDataset
from pwh.simulators.openproject.simulator import SIMULATOR_KEY, SimulatorOptions, build_app, running_simulator
from pwh.simulators.simulation import serving
from pwh.sources.openproject.client import FiltersError, check_filters, subtree_filters
from tests.warehouse_checks import content_hashes, table_counts

KEY = "op-key-SECRET-4411"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENPROJECT_API_KEY", KEY)


async def sync(dataset, db: Path, **params) -> dict:
    async with running_simulator(dataset, SimulatorOptions(api_key=KEY, **params.pop("sim", {}))) as base_url:
        return await sync_openproject(base_url=base_url, db_path=str(db), page_size=5, batch_size=8, **params)


def query(db: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def dimension_counts(db: Path) -> dict[str, int]:
    counts = table_counts(db, openproject.DIMENSION_TABLES)
    assert counts.pop("rejected_records") == 0
    return counts


async def test_a_full_sync_loads_the_dimensions_and_custom_values_read_by_name(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=31, n_projects=14, max_work_packages=9))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db)
    assert summary["status"] == "success"
    assert dimension_counts(db) == dataset.expected_dimension_rows() == {"custom_fields": 9, "statuses": 4, "users": 8}
    assert table_counts(db, openproject.TABLES) == dataset.expected_rows()
    # every custom value has its definition's name and type, projects' and work packages' alike
    named = query(db, """SELECT owner_type, custom_field_name, field_type, count(*) FROM analytics.openproject_custom_values
                         GROUP BY ALL ORDER BY ALL""")
    assert all(name is not None for _, name, _, _ in named)
    assert ("work_package", "Reviewer", "User") in {row[:3] for row in named}
    assert ("project", "Markets", "[]CustomOption") in {row[:3] for row in named}
    assert sum(row[3] for row in named) == dataset.expected_rows()["custom_values"]
    # statuses join the work packages: every status a work package names is there
    assert query(db, """SELECT count(*) FROM openproject.work_packages w WHERE status_id IS NOT NULL AND NOT EXISTS
                        (SELECT 1 FROM openproject.statuses s WHERE s.id = w.status_id)""")[0][0] == 0
    assert query(db, "SELECT name, is_closed FROM openproject.statuses WHERE id = 12") == [("Closed", True)]
    # users: names only; no e-mail, login or avatar anywhere in the file
    assert query(db, "SELECT name, status, admin FROM openproject.users WHERE id = 3") == [("Ada Lovelace", "active", True)]
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    con.close()
    content = db.read_bytes()
    assert b"lovelace@example.org" not in content and b"@example.org" not in content
    assert b"example.org/avatars" not in content and KEY.encode() not in content


async def test_dimensions_are_replaced_each_run_and_custom_fields_upserted(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=32, n_projects=10, max_work_packages=6))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    dataset.users = [u for u in dataset.users if u["id"] != 4]  # a user deleted
    dataset.users[0] = {**dataset.users[0], "name": "Ada King", "status": "locked"}
    dataset.statuses.append({"_type": "Status", "id": 20, "name": "On hold", "isClosed": False, "isDefault": False,
                             "isReadonly": False, "defaultDoneRatio": 0, "position": 5, "color": "#999999"})
    dataset.project_custom_fields[10] = ("Budget (M€)", "Integer", None)  # renamed
    del dataset.project_custom_fields[15]  # the definition is gone from the schema
    summary = await sync(dataset, db)  # nothing per project changed: no work package fetched
    assert summary["status"] == "success" and summary["units_unchanged"] == 10
    assert query(db, "SELECT name, status FROM openproject.users WHERE id = 3") == [("Ada King", "locked")]
    assert query(db, "SELECT count(*) FROM openproject.users WHERE id = 4")[0][0] == 0
    assert query(db, "SELECT name FROM openproject.statuses WHERE id = 20") == [("On hold",)]
    # renamed at once, for values no run has fetched since; a field no schema shows stays,
    # as do the work-package fields of the schemas this run did not read
    assert {r[0] for r in query(db, "SELECT DISTINCT custom_field_name FROM analytics.openproject_custom_values "
                                    "WHERE custom_field_id = 10")} == {"Budget (M€)"}
    assert query(db, "SELECT count(*) FROM openproject.custom_fields")[0][0] == 9


@pytest.mark.parametrize("answer", ["forbidden", "missing"])
async def test_a_dimension_answering_403_or_404_keeps_its_rows_and_the_run_is_partial(tmp_path, answer):
    dataset = OpenProjectDataset(DatasetConfig(seed=33, n_projects=12, max_work_packages=6))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    before = content_hashes(db, tables=openproject.DIMENSION_TABLES)
    dataset.mutate(seed=2, update_share=0.25)
    dataset.statuses[0]["name"] = "Neu"
    summary = await sync(dataset, db, sim={answer: frozenset({"users", "custom_fields"})})
    # the projects load in full; the two streams keep their rows; statuses are replaced
    assert summary["status"] == "partial" and summary["units_changed"] == 3 and summary["failed_units"] == []
    assert table_counts(db, openproject.TABLES) == dataset.expected_rows()
    after = content_hashes(db, tables=openproject.DIMENSION_TABLES)
    assert after["users"] == before["users"] and after["custom_fields"] == before["custom_fields"]
    assert query(db, "SELECT name FROM openproject.statuses WHERE id = 1") == [("Neu",)]
    why = "HTTP 403 MissingPermission" if answer == "forbidden" else "HTTP 404"
    [(status, error)] = query(db, "SELECT status, error FROM pipeline.runs ORDER BY started_at DESC LIMIT 1")
    assert status == "partial"
    assert error == "; ".join(f"stream {name} not loaded ({why}): its rows are kept, the next run tries again"
                              for name in ("custom_fields", "users"))
    # the next run, allowed again, loads them and succeeds
    healed = await sync(dataset, db)
    assert healed["status"] == "success" and dimension_counts(db) == dataset.expected_dimension_rows()


async def test_a_dimension_failing_after_retries_does_not_block_projects(tmp_path):
    """A 500 on every users page (the simulator's project-wide failure does not reach it,
    so the app's handler is wrapped): the units load, users are kept, the run is partial."""
    dataset = OpenProjectDataset(DatasetConfig(seed=34, n_projects=6, max_work_packages=4))
    db = tmp_path / "w.duckdb"
    app = build_app(dataset, SimulatorOptions(api_key=KEY))
    sim = app[SIMULATOR_KEY]
    original = sim.answer

    async def failing(request, kind, pid, produce):
        if kind == "users":
            from aiohttp import web
            return web.Response(status=503)
        return await original(request, kind, pid, produce)

    sim.answer = failing
    async with serving(app, "127.0.0.1", 0) as base_url:
        summary = await sync_openproject(base_url=base_url, db_path=str(db), page_size=5, max_attempts=2)
    assert summary["status"] == "partial" and summary["units_new"] == 6
    assert table_counts(db, openproject.TABLES) == dataset.expected_rows()
    assert dimension_counts(db) == {**dataset.expected_dimension_rows(), "users": 0}
    [(error,)] = query(db, "SELECT error FROM pipeline.runs")
    assert error.startswith("stream users not loaded (") and error.endswith("its rows are kept, the next run tries again")


async def test_a_subtree_filter_syncs_only_it_and_marks_nothing_else_deleted(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=35, n_projects=40, max_work_packages=3))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    root = max(dataset.project_ids(), key=lambda pid: len(dataset.descendants(pid)))
    subtree = dataset.descendants(root)
    assert 0 < len(subtree) < 40
    updated = {int(pid) for pid in dataset.mutate(seed=1, update_share=0.5).updated}
    assert updated & subtree and updated - subtree
    summary = await sync(dataset, db, filters=subtree_filters(None, root))
    assert summary["status"] == "success" and summary["units_seen"] == len(subtree)
    assert summary["units_changed"] == len(updated & subtree) and summary["units_deleted"] == 0
    assert query(db, "SELECT count(*) FROM openproject.projects WHERE deleted_at IS NOT NULL")[0][0] == 0
    # only the subtree's renamed projects were fetched
    renamed = {int(r[0]) for r in query(db, "SELECT project_id FROM openproject.projects WHERE name LIKE '%(renamed)'")}
    assert renamed == updated & subtree
    # filters combine (all must hold): one project of the subtree, and one outside it: none
    inside, outside = min(subtree), min(set(dataset.project_ids()) - subtree - {root})
    for chosen, seen in ((inside, 1), (outside, 0)):
        both = subtree_filters(f'[{{"id":{{"operator":"=","values":["{chosen}"]}}}}]', root)
        summary = await sync(dataset, db, filters=both)
        assert summary["status"] == "success" and summary["units_seen"] == seen and summary["units_deleted"] == 0


async def test_a_filter_the_api_refuses_fails_the_run_naming_the_query(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=36, n_projects=3))
    with pytest.raises(Exception, match="InvalidQuery"):
        await sync(dataset, tmp_path / "w.duckdb", filters='[{"nonsense":{"operator":"=","values":["1"]}}]')


@pytest.mark.parametrize("text", ['{"ancestor": 1}', "[1]", "not json", '[{"a": 1}, 2]'])
def test_filters_that_are_not_an_array_of_objects_are_refused(text):
    with pytest.raises(FiltersError, match="JSON array of filter objects"):
        check_filters(text)


def test_filters_are_passed_on_normalised_and_blank_is_none():
    assert check_filters(' [ {"active": {"operator": "=", "values": ["t"]}} ] ') == \
        '[{"active":{"operator":"=","values":["t"]}}]'
    assert check_filters("  ") is None and check_filters(None) is None
