"""End to end: the Clarity Prefect flow against the simulator on 127.0.0.1 into a DuckDB file."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path

import duckdb
import pytest

from pwh.flows.clarity_sync import ClarityAdapter, ListingMark
from pwh.flows.engine import run_sync
from pwh.flows.prefect_flows import sync_clarity
from pwh.schemas import clarity
from pwh.simulators.clarity.dataset import ClarityDataset, DatasetConfig
from pwh.simulators.clarity.simulator import SimulatorOptions, running_simulator
from pwh.sources.clarity.client import ClarityClient
from pwh.sources.http import HttpSettings
from pwh.warehouse.connection import connect
from pwh.warehouse.migrations import migrate
from tests.warehouse_checks import content_hashes, table_counts

USER, PASSWORD = "lims-user", "pw-SECRET-4a7c21"
# Links as a server behind a proxy writes them: the warehouse stays the same whichever
# loopback port a test's simulator gets.
PUBLIC = "https://lims.sim.invalid/api/v2"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("CLARITY_USERNAME", USER)
    monkeypatch.setenv("CLARITY_PASSWORD", PASSWORD)


class Clock:
    """The simulated server's clock: tests move it, so watermarks are deterministic."""

    def __init__(self) -> None:
        self.now = datetime(2026, 6, 1, 12, 0, 0, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def options(**kw) -> SimulatorOptions:
    return SimulatorOptions(username=USER, password=PASSWORD, public_url=PUBLIC, **kw)


def researcher_requests(dataset: ClarityDataset, page_size: int = 10) -> int:
    """A run's requests for the researchers: their list's pages, one detail each, the lab list."""
    return -(-len(dataset.researchers) // page_size) + len(dataset.researchers) + -(-len(dataset.labs) // page_size)


def file_detail_requests(dataset: ClarityDataset, fetched: list[str]) -> int:
    """A run's batch retrieves of file details: one when a fetched project has files."""
    return int(any(dataset.project(dataset.index_of(limsid))["files"] for limsid in fetched
                   if dataset.index_of(limsid) is not None))


async def sync(dataset, db: Path, sim_options: SimulatorOptions | None = None, **params) -> dict:
    async with running_simulator(dataset, sim_options or options(page_size=10)) as base_url:
        return await sync_clarity(base_url=base_url, db_path=str(db), batch_size=16, **params)


def counts(db: Path) -> dict[str, int]:
    return table_counts(db, clarity.TABLES)


def hashes(db: Path) -> dict[str, str]:
    return content_hashes(db, tables=clarity.TABLES)


def live_counts(db: Path) -> dict[str, int]:
    """Rows of the projects not marked deleted."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table in clarity.TABLES:
            out[table.name] = con.execute(
                f"SELECT count(*) FROM {table.qualified_name} t WHERE project_limsid IN "
                "(SELECT project_limsid FROM clarity.projects WHERE deleted_at IS NULL)"
            ).fetchall()[0][0]
        out["rejected_records"] = con.execute("SELECT count(*) FROM pipeline.rejected_records").fetchall()[0][0]
        return out
    finally:
        con.close()


async def test_multi_page_sync_matches_truth_and_udf_values_are_queryable(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=21, n_projects=45))
    db = tmp_path / "w.duckdb"
    summary = await sync(dataset, db)
    assert summary["status"] == "success"
    assert summary["units_seen"] == summary["units_new"] == 45
    # five list pages of ten, one detail each, and the researchers once a run
    assert summary["requests"] == 5 + 45 + researcher_requests(dataset) + file_detail_requests(
        dataset, dataset.project_ids())
    assert counts(db) == dataset.expected_rows()
    assert summary["udf_parse_errors"] == dataset.udf_parse_errors() > 0
    con = duckdb.connect(str(db), read_only=True)
    try:
        total = con.execute(
            "SELECT sum(value_number) FROM clarity.project_udfs WHERE name = 'Samples Quota'"
        ).fetchall()[0][0]
        assert total == pytest.approx(dataset.numeric_udf_sum("Samples Quota"))
        unparsed = con.execute("SELECT count(*) FROM clarity.project_udfs WHERE parse_error IS NOT NULL").fetchall()[0][0]
        assert unparsed == dataset.udf_parse_errors()
        # Every one of the six types and the UDT is there, typed where the type says so.
        types = dict(con.execute(
            "SELECT declared_type, count(*) FILTER (WHERE value_number IS NOT NULL OR value_bool IS NOT NULL "
            "OR value_date IS NOT NULL) FROM clarity.project_udfs GROUP BY ALL").fetchall())
        assert set(types) == set(clarity.UDF_TYPES)
        assert types["Numeric"] > 0 and types["Boolean"] > 0 and types["Date"] > 0 and types["String"] == 0
        assert con.execute("SELECT count(*) FROM clarity.project_udfs WHERE scope = 'udt'").fetchall()[0][0] > 0
        odd = con.execute("SELECT name FROM clarity.projects WHERE name LIKE 'Caf%'").fetchall()
        assert odd and "& <Lab>" in odd[0][0]
        run = con.execute("SELECT source, status FROM pipeline.runs").fetchall()
        assert run == [("clarity", "success")]
    finally:
        con.close()


async def test_same_sync_twice_leaves_identical_tables(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=22, n_projects=30))
    db = tmp_path / "w.duckdb"
    await sync(dataset, db, mode="full_refresh")
    first = hashes(db)
    again = await sync(dataset, db, mode="full_refresh")
    assert again["units_changed"] == 30 and again["units_new"] == 0
    assert hashes(db) == first


async def test_transient_faults_give_the_same_warehouse_as_none(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=23, n_projects=30))
    await sync(dataset, tmp_path / "clean.duckdb")
    faulty = options(page_size=10, fault_rate=0.3, stall_s=1.0)
    summary = await sync(dataset, tmp_path / "faulty.duckdb", faulty, timeout_s=0.5, max_attempts=8)
    assert summary["status"] == "success" and summary["retries"] > 0
    assert hashes(tmp_path / "faulty.duckdb") == hashes(tmp_path / "clean.duckdb")
    assert counts(tmp_path / "faulty.duckdb") == dataset.expected_rows()


async def test_incremental_sync_asks_for_changes_since_the_watermark(tmp_path):
    clock = Clock()
    dataset = ClarityDataset(DatasetConfig(seed=24, n_projects=40), clock=clock)
    db = tmp_path / "w.duckdb"
    first = await sync(dataset, db)
    assert first["units_new"] == 40

    clock.advance(3600)
    change = dataset.mutate(seed=1, update_share=0.1, add_share=0.05, remove_share=0.05)
    clock.advance(600)  # the next listing is past the overlap of the change
    second = await sync(dataset, db)
    # Only what changed since the first listing (minus the overlap) is listed and fetched.
    assert second["units_seen"] == len(change.updated) + len(change.added) > 0
    assert second["units_new"] == len(change.added) and second["units_changed"] == len(change.updated)
    assert second["units_deleted"] == 0  # a last-modified list cannot show a deletion
    assert second["requests"] == 1 + second["units_seen"] + researcher_requests(dataset) + file_detail_requests(
        dataset, change.updated + change.added)

    clock.advance(60)
    quiet = await sync(dataset, db)
    assert quiet["units_seen"] == 0 and quiet["requests"] == 1 + researcher_requests(dataset)

    full = await sync(dataset, db, mode="full_refresh")
    assert full["units_deleted"] == len(change.removed)
    con = duckdb.connect(str(db), read_only=True)
    deleted = {r[0] for r in con.execute(
        "SELECT project_limsid FROM clarity.projects WHERE deleted_at IS NOT NULL").fetchall()}
    con.close()
    assert deleted == set(change.removed)
    # The incrementally kept warehouse holds exactly the new state (plus the deleted, marked).
    assert live_counts(db) == dataset.expected_rows()


async def plain_run(con, url: str, settings: HttpSettings | None = None, **kw):
    """One sync through the plain engine (no Prefect): the adapter's logic on a real server and file."""
    client = ClarityClient.connect(url, username=USER, password=PASSWORD, settings=settings)
    adapter = ClarityAdapter(client, account="a", **kw)
    async with adapter:
        return await run_sync(adapter, con, run_id=str(uuid.uuid4()), batch_size=8)


async def test_overlap_refetches_recent_changes_and_since_overrides_the_watermark(tmp_path):
    """The adapter's watermark through the plain engine (no Prefect), on a real server and file."""
    clock = Clock()
    dataset = ClarityDataset(DatasetConfig(seed=25, n_projects=20), clock=clock)
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    run = partial(plain_run, con)
    try:
        async with running_simulator(dataset, options(page_size=6)) as url:
            assert (await run(url)).units_new == 20
            clock.advance(30)
            change = dataset.mutate(seed=2, update_share=0.2)
            clock.advance(30)
            # The change is 30 s after the first listing: inside the 5-minute overlap.
            assert (await run(url)).units_changed == len(change.updated) > 0
            clock.advance(60)
            # Still inside the overlap of the second listing: fetched again (harmless).
            assert (await run(url)).units_changed == len(change.updated)
            assert (await run(url, overlap=timedelta(0))).units_seen == 0
            # An explicit since lists everything modified after it, whatever the state says.
            replay = await run(url, since=datetime(2000, 1, 1, tzinfo=timezone.utc))
            assert replay.units_seen == replay.units_changed == 20
            assert (await run(url, mode="full_refresh")).units_changed == 20
    finally:
        con.close()


async def test_a_project_that_failed_in_an_incremental_run_is_listed_again(tmp_path):
    clock = Clock()
    dataset = ClarityDataset(DatasetConfig(seed=29, n_projects=20), clock=clock)
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    run = partial(plain_run, con)
    try:
        async with running_simulator(dataset, options(page_size=6)) as url:
            assert (await run(url)).units_new == 20
            clock.advance(3600)
            change = dataset.mutate(seed=3, update_share=0.25)
            clock.advance(600)
            broken = change.updated[0]
            failing = options(page_size=6, always_fail_projects=frozenset({broken}))
            async with running_simulator(dataset, failing) as bad_url:
                partial_run = await run(bad_url, settings=HttpSettings(max_attempts=2, backoff_initial_s=0.01))
            assert partial_run.status == "partial" and list(partial_run.failed_units) == [broken]
            assert partial_run.units_seen == len(change.updated)
            clock.advance(60)
            # The failed project's listing was not loaded whole: its window is asked for again.
            healed = await run(url)
            assert healed.status == "success" and healed.units_seen == len(change.updated)
            state = dict(con.execute(
                "SELECT unit_key, cursor FROM pipeline.unit_state WHERE unit_key = ?", [broken]).fetchall())
            assert ListingMark.parse(state[broken]).as_of == clock.now
            clock.advance(60)
            # Now the window moves on: nothing changed since.
            assert (await run(url)).units_seen == 0
    finally:
        con.close()


async def test_filters_limit_what_is_synced(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=26, n_projects=30))
    projects = [dataset.project(i) for i in dataset.live_indices()]
    names = [projects[2]["name"], projects[3]["name"], projects[5]["name"]]
    assert projects[2]["open_date"] is None  # so the open-date filter leaves it out
    summary = await sync(dataset, tmp_path / "w.duckdb", names=names, open_date="2010-01-01")
    assert summary["units_seen"] == 2
    names = names[1:]
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    got = {r[0] for r in con.execute("SELECT name FROM clarity.projects").fetchall()}
    con.close()
    assert got == set(names)


async def test_persistent_failure_of_one_project_ends_partial(tmp_path):
    dataset = ClarityDataset(DatasetConfig(seed=27, n_projects=12))
    broken = dataset.project_ids()[3]
    summary = await sync(dataset, tmp_path / "w.duckdb", options(page_size=5, always_fail_projects=frozenset({broken})),
                         max_attempts=2)
    assert summary["status"] == "partial" and summary["failed_units"] == [broken]
    assert counts(tmp_path / "w.duckdb")["projects"] == 11


async def test_wrong_password_fails_with_a_clear_message_and_no_secret(tmp_path, monkeypatch):
    dataset = ClarityDataset(DatasetConfig(seed=28, n_projects=3))
    monkeypatch.setenv("CLARITY_PASSWORD", "wrong-SECRET-x1")
    with pytest.raises(Exception, match="CLARITY_USERNAME and CLARITY_PASSWORD") as info:
        await sync(dataset, tmp_path / "w.duckdb")
    assert "wrong-SECRET-x1" not in str(info.value)
