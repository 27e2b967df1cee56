"""End to end: the Incoplax flow (and the engine) against the simulator on 127.0.0.1 into
DuckDB files; the CLI against ``pwh simulate incoplax`` in another process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from pwh.flows.engine import run_sync
from pwh.flows.incoplax_sync import IncoplaxAdapter
from pwh.flows.prefect_flows import sync_incoplax
from pwh.schemas import incoplax as tables
from pwh.simulators.incoplax.dataset import DatasetConfig, IncoplaxDataset
from pwh.simulators.incoplax.simulator import SIMULATOR_KEY, SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.incoplax.client import IncoplaxClient
from pwh.warehouse.connection import connect
from pwh.warehouse.migrations import migrate
from tests.warehouse_checks import content_hashes

TOKEN = "inc-SECRET-token-8e1f"

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROW_COLUMNS = ("project_id", "code", "name", "title", "comment", "created_at", "last_write_at")


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("INCOPLAX_TOKEN", TOKEN)


def rows(db: Path, *, deleted: bool | None = False) -> list[dict]:
    where = {None: "", False: "WHERE deleted_at IS NULL", True: "WHERE deleted_at IS NOT NULL"}[deleted]
    con = duckdb.connect(str(db), read_only=True)
    try:
        result = con.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM incoplax.projects {where} ORDER BY project_id")
        return [dict(zip(ROW_COLUMNS, r)) for r in result.fetchall()]
    finally:
        con.close()


def hashes(db: Path) -> dict[str, str]:
    return content_hashes(db, tables=tables.TABLES)


async def sync(dataset: IncoplaxDataset, db: Path, sim: SimulatorOptions | None = None, **params) -> dict:
    app = build_app(dataset, sim or SimulatorOptions(token=TOKEN))
    async with serving(app, any_method=True) as url:
        params.setdefault("page_size", 10)
        return await sync_incoplax(base_url=url, db_path=str(db), batch_size=16, **params)


async def test_multi_page_sync_equals_the_truth_and_twice_changes_nothing(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=21, n_projects=37))
    db = tmp_path / "w.duckdb"
    first = await sync(dataset, db)
    assert first["status"] == "success" and first["units_new"] == 37
    assert rows(db) == dataset.expected_rows()
    # 4 pages (the last short) + the empty page that proves the end, and one detail
    # request a project: the list leaves out opts.
    assert first["requests"] == 5 + 37
    before = hashes(db)
    again = await sync(dataset, db)
    assert again["units_unchanged"] == 37 and again["rows_loaded"] == {}
    assert again["requests"] == 5  # the minimal listing only
    assert hashes(db) == before
    refreshed = await sync(dataset, db, mode="full_refresh")
    assert refreshed["units_changed"] == 37
    assert hashes(db) == before


async def test_faults_give_the_same_warehouse_as_none(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=22, n_projects=40, invalid_records=1))
    await sync(dataset, tmp_path / "clean.duckdb")
    faulty = SimulatorOptions(token=TOKEN, fault_rate=0.3, stall_s=1.0)
    summary = await sync(dataset, tmp_path / "faulty.duckdb", faulty, timeout_s=0.4, max_attempts=8)
    assert summary["status"] == "success" and summary["retries"] > 0
    assert hashes(tmp_path / "faulty.duckdb") == hashes(tmp_path / "clean.duckdb")


async def test_a_server_that_caps_limit_is_loaded_completely(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=23, n_projects=33))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db, SimulatorOptions(token=TOKEN, max_limit=4), page_size=50)
    assert summary["units_new"] == 33
    assert rows(db) == dataset.expected_rows()


async def test_deleted_upstream_is_marked_deleted_not_removed_and_changes_are_picked_up(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=24, n_projects=30))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    ids = list(dataset.projects)
    app = build_app(dataset, SimulatorOptions(token=TOKEN))
    async with serving(app, any_method=True) as url:
        async with IncoplaxClient.connect(url, token=TOKEN) as client:  # upstream changes, over HTTP
            await client.delete_project(ids[3])
            await client.update_project(ids[5], {"name": "Renamed", "opts": {"comment": "changed"}})
            added = await client.create_project({"code": "9001", "name": "Added"})
        app[SIMULATOR_KEY].reset_stats()
        summary = await sync_incoplax(base_url=url, db_path=str(db), page_size=10, batch_size=16)
    assert (summary["units_new"], summary["units_changed"], summary["units_deleted"]) == (1, 1, 1)
    # 3 full pages + the empty one, two detail GETs, one GET confirming the deletion.
    assert summary["requests"] == 4 + 2 + 1
    assert rows(db) == dataset.expected_rows()
    [gone] = rows(db, deleted=True)
    assert gone["project_id"] == ids[3] and gone["name"]  # still there, with its data
    assert added["id"] in {r["project_id"] for r in rows(db)}
    con = duckdb.connect(str(db), read_only=True)
    state = con.execute("SELECT deleted_at IS NOT NULL FROM pipeline.unit_state WHERE unit_key = ?", [ids[3]]).fetchall()
    con.close()
    assert state == [(True,)]
    # A bulk round of changes, and the result equals a fresh sync apart from the deleted rows.
    change = dataset.mutate(seed=3, update_share=0.2, add_share=0.1, remove_share=0.1)
    summary = await sync(dataset, db)
    assert summary["units_deleted"] == len(change.removed)
    assert summary["units_changed"] == len(change.updated) and summary["units_new"] == len(change.added)
    assert rows(db) == dataset.expected_rows()
    assert {r["project_id"] for r in rows(db, deleted=True)} == {ids[3], *change.removed}


async def test_recent_listing_stops_at_the_cursor_and_does_not_delete(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=25, n_projects=40))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db)
    change = dataset.mutate(seed=4, update_share=0.05, add_share=0.02, remove_share=0.02)
    recent = await sync(dataset, db, listing="recent")
    assert recent["units_changed"] == len(change.updated) and recent["units_new"] == len(change.added)
    assert recent["units_deleted"] == 0  # an incomplete listing proves no deletion
    assert recent["units_seen"] <= 10 and recent["requests"] == 1 + len(change.updated) + len(change.added)
    live = {r["project_id"] for r in rows(db)}
    assert live == set(dataset.projects) | set(change.removed)
    minimal = await sync(dataset, db)
    assert minimal["units_deleted"] == len(change.removed) and minimal["units_changed"] == 0
    assert rows(db) == dataset.expected_rows()
    # A server that does not sort: the scan reads to the end and is complete after all.
    dataset.mutate(seed=5, update_share=0.05, add_share=0.0, remove_share=0.02)
    unsorted = await sync(dataset, db, SimulatorOptions(token=TOKEN, honour_order=False), listing="recent")
    assert unsorted["units_seen"] == len(dataset.projects) and unsorted["units_deleted"] == 1
    assert rows(db) == dataset.expected_rows()


async def test_list_with_every_field_needs_no_detail_requests(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=26, n_projects=25))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db, SimulatorOptions(token=TOKEN, list_opts=True))
    # Three pages and the empty one; only a project without opts is asked for again (its
    # list entry cannot show whether the list left opts out or the project has none).
    without_opts = sum(1 for p in dataset.projects.values() if "opts" not in p)
    assert 0 < without_opts < 25
    assert summary["requests"] == 4 + without_opts
    assert rows(db) == dataset.expected_rows()


async def test_unreadable_time_stamp_loads_null_with_a_field_issue(tmp_path):
    # Issue 15, item 14: such a project used to be quarantined whole and vanish from the table.
    dataset = IncoplaxDataset(DatasetConfig(seed=27, n_projects=20, invalid_records=2))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db)
    assert summary["rows_rejected"] == 0 and summary["rows_loaded"] == {"projects": 20}
    assert rows(db) == dataset.expected_rows()
    con = duckdb.connect(str(db), read_only=True)
    issues = con.execute("SELECT unit_key, table_name, field, reason, value_description FROM pipeline.field_issues "
                         "WHERE source = 'incoplax'").fetchall()
    con.close()
    assert sorted(issues) == sorted(
        (pid, "projects", "ext.ct", "expected an ISO 8601 date-time", "'27.08.2019 13:40'") for pid in dataset.invalid_ids)


async def test_basic_auth_and_a_wrong_token(tmp_path, monkeypatch):
    dataset = IncoplaxDataset(DatasetConfig(seed=28, n_projects=5))
    monkeypatch.setenv("INCOPLAX_USERNAME", "ann")
    monkeypatch.setenv("INCOPLAX_PASSWORD", "pw-SECRET-3c")
    basic = SimulatorOptions(auth="basic", username="ann", password="pw-SECRET-3c")
    summary = await sync(dataset, tmp_path / "b.duckdb", basic, auth_scheme="basic")
    assert summary["units_new"] == 5
    monkeypatch.setenv("INCOPLAX_TOKEN", "wrong-token")
    with pytest.raises(Exception, match="INCOPLAX_TOKEN") as info:
        await sync(dataset, tmp_path / "w.duckdb")
    assert "wrong-token" not in str(info.value)
    content = (tmp_path / "b.duckdb").read_bytes()
    assert b"pw-SECRET-3c" not in content and TOKEN.encode() not in content


class _DeletingBetweenPages(IncoplaxClient):
    """Deletes an already listed project upstream right after the first page is read:
    every later project shifts one place left and the first of page two is skipped."""

    dataset: IncoplaxDataset
    deleted: str | None = None

    async def list_page(self, offset, limit, **options):
        page = await super().list_page(offset, limit, **options)
        if offset == 0 and self.deleted is None:
            self.deleted = page[0]["id"]
            self.dataset.delete(self.deleted)
        return page


async def test_a_project_skipped_by_an_offset_shift_is_not_taken_for_deleted(tmp_path):
    dataset = IncoplaxDataset(DatasetConfig(seed=29, n_projects=12))
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        app = build_app(dataset, SimulatorOptions(token=TOKEN))
        async with serving(app, any_method=True) as url:
            async with IncoplaxAdapter(IncoplaxClient.connect(url, token=TOKEN, page_size=5), account="a") as adapter:
                await run_sync(adapter, con, run_id="first")
            skipped = list(dataset.projects)[5]  # first of page two, before the deletion
            client = _DeletingBetweenPages(IncoplaxClient.connect(url, token=TOKEN, page_size=5).http, page_size=5)
            client.dataset = dataset
            async with IncoplaxAdapter(client, account="a") as adapter:
                run = await run_sync(adapter, con, run_id="second")
            marked_then = deleted_projects(con)
            async with IncoplaxAdapter(IncoplaxClient.connect(url, token=TOKEN, page_size=5), account="a") as adapter:
                third = await run_sync(adapter, con, run_id="third")
            marked_now = deleted_projects(con)
    finally:
        con.close()
    # The skipped project was confirmed by a GET and kept; the deleted one had been listed
    # (on page one, unchanged) in that run, so the next run's listing marks it.
    assert run.units_deleted == 0 and run.status == "success" and marked_then == set()
    assert skipped not in marked_now and marked_now == {client.deleted}
    assert third.units_deleted == 1


def deleted_projects(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT project_id FROM incoplax.projects WHERE deleted_at IS NOT NULL").fetchall()}


# ---------------------------------------------------------------------------- the CLI
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def simulator_process():
    port = _free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("pwh")), "simulate", "incoplax", "--port", str(port),
         "--projects", "45", "--max-limit", "20", "--token", TOKEN],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/_sim/health", timeout=1).read()
            break
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cli_sync_and_lookup(tmp_path, simulator_process):
    from pwh.cli import app

    db = tmp_path / "cli.duckdb"
    runner = CliRunner()
    args = ["sync", "incoplax", "--base-url", simulator_process, "--db", str(db), "--page-size", "50", "--quiet"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "success: 45 projects listed, 45 new" in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "45 unchanged" in second.output
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM incoplax.projects").fetchall() == [(45,)]
    con.close()
    found = runner.invoke(app, ["incoplax", "lookup", "5102", "--base-url", simulator_process])
    assert found.exit_code == 0 and len(found.output.split()) == 1
    missing = runner.invoke(app, ["incoplax", "lookup", "nope", "--base-url", simulator_process])
    assert missing.exit_code == 4 and "not found" in missing.output
    assert TOKEN not in first.output + found.output + missing.output
