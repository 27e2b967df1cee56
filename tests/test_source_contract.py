"""The contract every source of the registry keeps, tested alike for each (singer-sdk's
standard tap tests are the model): a full sync loads the truth; a second run changes
nothing; transient faults leave the same warehouse; a 401 names the setting to fix;
deletions are marked; an excluded stream makes no request and keeps its rows.

Each source's own simulator on 127.0.0.1 (from the registry), its plain sync function as
`pwh sync` runs it without a Prefect server, a real DuckDB file. Per-source test files
keep only that source's quirks."""

from __future__ import annotations

import re
from contextlib import asynccontextmanager
from pathlib import Path

import duckdb
import pytest
from aiohttp import web

from pwh.flows.registry import SOURCES, Source
from pwh.sources.errors import AuthError
from pwh.warehouse.catalog import tables_of
from tests.warehouse_checks import content_hashes

N_PROJECTS = 10
SEED = 5


class Requests:
    """A middleware recording every request path a simulator is asked."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    @web.middleware
    async def record(self, request: web.Request, handler):
        self.paths.append(request.path)
        return await handler(request)

    def matching(self, pattern: str) -> list[str]:
        return [path for path in self.paths if re.search(pattern, path)]


@asynccontextmanager
async def simulator(source: Source, monkeypatch, requests: Requests | None = None, **options):
    middlewares = (requests.record,) if requests is not None else ()
    async with source.simulated()(N_PROJECTS, SEED, middlewares=middlewares, **options) as simulated:
        for variable, value in simulated.credentials.items():
            monkeypatch.setenv(variable, value)
        yield simulated


async def sync(source: Source, base_url: str, db: Path, **parameters) -> dict:
    return await source.flow_function(source.flow)(base_url=base_url, db_path=str(db), concurrency=4, **parameters)


def hashes(source: Source, db: Path) -> dict[str, str]:
    return content_hashes(db, tables=tables_of(source.name))


def live_projects(source: Source, db: Path) -> int:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT count(*) FROM {source.name}.projects WHERE deleted_at IS NULL").fetchall()[0][0]
    finally:
        con.close()


def expected_projects(dataset) -> int:
    """The projects a complete sync must hold, as the simulator's dataset knows them."""
    if hasattr(dataset, "expected_rows"):
        rows = dataset.expected_rows()
        return rows["projects"] if isinstance(rows, dict) else len(rows)
    return len(dataset.project_ids())


SOURCE_PARAMS = [pytest.param(source, id=source.name) for source in SOURCES]


@pytest.mark.parametrize("source", SOURCE_PARAMS)
async def test_a_full_sync_loads_the_truth_and_a_second_run_changes_nothing(tmp_path, monkeypatch, source):
    db = tmp_path / "w.duckdb"
    async with simulator(source, monkeypatch) as simulated:
        first = await sync(source, simulated.base_url, db)
        assert first["status"] == "success" and first["units_failed"] == 0 and first["rows_rejected"] >= 0
        assert live_projects(source, db) == expected_projects(simulated.dataset) > 0
        if hasattr(simulated.dataset, "expected_rows") and isinstance(simulated.dataset.expected_rows(), dict):
            loaded = {name: rows for name, rows in first["rows_loaded"].items()}
            for table, rows in simulated.dataset.expected_rows().items():
                if table in loaded:
                    assert loaded[table] == rows, table
        before = hashes(source, db)
        second = await sync(source, simulated.base_url, db)
    assert second["status"] == "success" and second["units_new"] == second["units_changed"] == 0
    assert second["units_deleted"] == 0 and hashes(source, db) == before


@pytest.mark.parametrize("source", SOURCE_PARAMS)
async def test_transient_faults_leave_the_same_warehouse(tmp_path, monkeypatch, source):
    """A simulator fails a request only on its first attempt: the first sync meets every
    fault (a stall longer than the timeout included), a second one into another file meets
    none, and both files must be equal."""
    async with simulator(source, monkeypatch, fault_rate=0.5) as simulated:
        faulty = await sync(source, simulated.base_url, tmp_path / "faulty.duckdb", timeout_s=1.0, max_attempts=8)
        clean = await sync(source, simulated.base_url, tmp_path / "clean.duckdb")
    assert faulty["status"] == clean["status"] == "success"
    assert faulty["retries"] > 0 and clean["retries"] == 0
    assert hashes(source, tmp_path / "faulty.duckdb") == hashes(source, tmp_path / "clean.duckdb")


@pytest.mark.parametrize("source", SOURCE_PARAMS)
async def test_a_refused_credential_names_the_setting_to_fix(tmp_path, monkeypatch, source):
    async with simulator(source, monkeypatch) as simulated:
        for variable in simulated.credentials:
            monkeypatch.setenv(variable, "wrong-" + simulated.credentials[variable])
        with pytest.raises(AuthError) as refused:
            await sync(source, simulated.base_url, tmp_path / "w.duckdb")
    message = str(refused.value)
    assert "401" in message and any(variable in message for variable in source.secrets), message
    assert not any(value in message for value in simulated.credentials.values())


@pytest.mark.parametrize("source", SOURCE_PARAMS)
async def test_deleted_projects_are_marked(tmp_path, monkeypatch, source):
    db = tmp_path / "w.duckdb"
    async with simulator(source, monkeypatch) as simulated:
        await sync(source, simulated.base_url, db)
        removed = simulated.dataset.mutate(seed=3, update_share=0.0, add_share=0.0, remove_share=0.2).removed
        assert removed
        run = await sync(source, simulated.base_url, db, mode="full_refresh")
        assert run["status"] == "success" and run["units_deleted"] == len(removed)
        assert live_projects(source, db) == expected_projects(simulated.dataset)


@pytest.mark.parametrize("source", [pytest.param(s, id=s.name) for s in SOURCES if s.streams])
async def test_an_excluded_stream_makes_no_request_and_keeps_its_rows(tmp_path, monkeypatch, source):
    db = tmp_path / "w.duckdb"
    requests = Requests()
    async with simulator(source, monkeypatch, requests) as simulated:
        await sync(source, simulated.base_url, db)
        own_calls = [stream for stream in source.streams if stream.calls and requests.matching(stream.calls)]
        assert own_calls, "no stream made a call of its own: the contract would test nothing"
        for round, stream in enumerate(own_calls):
            simulated.dataset.mutate(seed=10 + round, update_share=1.0, add_share=0.0, remove_share=0.0)
            before = hashes(source, db)
            requests.paths.clear()
            run = await sync(source, simulated.base_url, db, mode="full_refresh", exclude=[stream.name])
            assert run["status"] == "success", stream.name
            assert requests.matching(stream.calls) == [], stream.name
            assert requests.paths, stream.name  # the other streams were fetched
            kept = hashes(source, db)
            for table in stream.tables:
                assert kept[table] == before[table], (stream.name, table)
