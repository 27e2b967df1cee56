"""The engine's guards against a server that lies by omission: a short or empty project
list (or a flood of 404s) is not an account that lost its projects, and the records a
fetch strategy cannot see are not deleted records. RAYTeams simulator behind a hostile
middleware of the test's own on 127.0.0.1, the engine's plain stages, a real DuckDB file."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone

import duckdb
import orjson
import polars as pl
import pytest
from aiohttp import web
from typer.testing import CliRunner

from pwh.flows.engine import MASS_DELETE_FLOOR, MassDeleteError, check_deletions, run_sync
from pwh.flows.rayteams_sync import PARTIAL_TABLES, RayteamsAdapter
from pwh.schemas import rayteams as tables
from pwh.schemas.rows import RejectedRecord
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import API_PREFIX, SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.rayteams.client import STRATEGIES, RayteamsClient
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.warehouse.connection import connect
from pwh.warehouse.load import replace_units
from pwh.warehouse.migrations import migrate
from pwh.warehouse.replica import replica_path
from tests.warehouse_checks import content_hashes

TOKEN = "tok-SECRET-guard-91c2"
CLIENT_ID = "client-SECRET-guard-3b"


@dataclass
class Hostility:
    """What the middleware does to the simulator's answers."""

    list_keep: int | None = None  # the project list keeps only this many entries
    gone: set[str] = field(default_factory=set)  # these projects answer NO_ITEM


def hostile_app(dataset: RayteamsDataset, hostility: Hostility) -> web.Application:
    app = build_app(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID))

    @web.middleware
    async def lie(request: web.Request, handler):
        path = request.path.removeprefix(API_PREFIX)
        match = re.match(r"^/(?:project|file)/([^/]+)", path)
        if match and match.group(1) in hostility.gone:
            return web.json_response({"errorCode": "NO_ITEM"})
        response = await handler(request)
        if path == "/project" and hostility.list_keep is not None:
            body = orjson.loads(response.body)
            body["data"] = body["data"][: hostility.list_keep]
            return web.json_response(body)
        return response

    app.middlewares.append(lie)
    return app


@asynccontextmanager
async def server(dataset: RayteamsDataset, hostility: Hostility):
    async with serving(hostile_app(dataset, hostility)) as root:
        yield root + API_PREFIX


async def engine_run(url: str, con, run_id: str, *, strategy: str = "aggregate", **kw):
    client = RayteamsClient.connect(url, token=TOKEN, client_id=CLIENT_ID)
    pseudonyms = Pseudonymizer(b"k" * 32)
    async with RayteamsAdapter(client, account="acct", strategy=strategy, pseudonyms=pseudonyms) as adapter:
        return await run_sync(adapter, con, run_id=run_id, batch_size=7, **kw)


def deleted(con) -> tuple[int, int]:
    """Projects marked deleted: in the state, and in rayteams.projects."""
    state = con.execute("SELECT count(*) FROM pipeline.unit_state WHERE deleted_at IS NOT NULL").fetchall()[0][0]
    rows = con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NOT NULL").fetchall()[0][0]
    return state, rows


# ------------------------------------------------------------------ 7: mass deletion
@pytest.mark.parametrize("shape", ["short list", "empty list", "404 on every fetch"])
async def test_a_run_that_would_delete_most_projects_marks_none_and_fails(tmp_path, shape):
    dataset = RayteamsDataset(DatasetConfig(seed=11, n_projects=20))
    hostility = Hostility()
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        async with server(dataset, hostility) as url:
            await engine_run(url, con, "first")
            ids = [p["_id"] for p in dataset.project_list()]
            changed = dataset.mutate(seed=3, update_share=0.3, add_share=0, remove_share=0).updated
            mode = "incremental"
            if shape == "short list":
                hostility.list_keep = 8
            elif shape == "empty list":
                hostility.list_keep = 0
            else:  # the list is whole, but most projects answer NO_ITEM when fetched
                hostility.gone = set(ids[:12])
                mode = "full_refresh"
            with pytest.raises(MassDeleteError, match="--allow-mass-delete"):
                await engine_run(url, con, "hostile", mode=mode)
            assert deleted(con) == (0, 0)
            status, error = con.execute("SELECT status, error FROM pipeline.runs WHERE run_id = 'hostile'").fetchall()[0]
            assert status == "failed" and "MassDeleteError" in error and "\n" not in error
            # What the run fetched did load (good data); only the deletions were refused.
            loaded = {r[0] for r in con.execute("SELECT unit_key FROM pipeline.unit_state WHERE run_id = 'hostile'").fetchall()}
            expected = {"short list": set(changed) & set(ids[:8]), "empty list": set(),
                        "404 on every fetch": set(ids[12:])}[shape]
            assert loaded == expected and (expected or shape == "empty list")
            # Confirmed, the same run marks them.
            confirmed = await engine_run(url, con, "confirmed", mode=mode, allow_mass_delete=True)
    finally:
        con.close()
    assert confirmed.status == "success" and confirmed.units_deleted == {"short list": 12, "empty list": 20,
                                                                          "404 on every fetch": 12}[shape]


async def test_a_few_deletions_pass_the_guard(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=12, n_projects=20))
    hostility = Hostility()
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        async with server(dataset, hostility) as url:
            await engine_run(url, con, "first")
            hostility.list_keep = 15  # 5 of 20: a quarter, as many as the guard lets through
            run = await engine_run(url, con, "second")
    finally:
        con.close()
    assert run.status == "success" and run.units_deleted == 5


def test_the_guard_lets_a_tiny_account_lose_a_project_or_two():
    for live, deleting in [(1, 1), (2, 2), (3, 2), (8, 2), (400, 100)]:
        check_deletions("s", "a", live, deleting, 0.25)
    for live, deleting in [(3, 3), (9, 3), (400, 101), (400, 400)]:
        with pytest.raises(MassDeleteError):
            check_deletions("s", "a", live, deleting, 0.25)
    assert MASS_DELETE_FLOOR == 2


@contextmanager
def threaded_server(app: web.Application) -> Iterator[str]:
    """Serve ``app`` from a thread of its own (the CLI runs its own event loop)."""
    loop = asyncio.new_event_loop()
    ready: dict[str, str] = {}
    started, stop = threading.Event(), asyncio.Event()

    async def main() -> None:
        async with serving(app) as root:
            ready["url"] = root
            started.set()
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield ready["url"] + API_PREFIX
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)


@pytest.mark.usefixtures("prefect_harness")
def test_cli_refuses_an_empty_list_keeps_the_replica_and_says_how_to_confirm(tmp_path, monkeypatch):
    from pwh.cli import app

    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    dataset = RayteamsDataset(DatasetConfig(seed=13, n_projects=12))
    hostility = Hostility()
    db = tmp_path / "w.duckdb"
    runner = CliRunner()
    with threaded_server(hostile_app(dataset, hostility)) as url:
        # In this process alone: CliRunner's captured streams close after each invoke, and a
        # Prefect flow run would log to the first one's (the guard is the same either way).
        args = ["sync", "rayteams", "--base-url", url, "--db", str(db), "--quiet", "--no-prefect"]
        first = runner.invoke(app, args)
        assert first.exit_code == 0, first.output
        replica = content_hashes(replica_path(db))
        hostility.list_keep = 0
        refused = runner.invoke(app, args)
        assert refused.exit_code == 1
        lines = [line for line in refused.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "--allow-mass-delete" in lines[0] and "12 of 12" in lines[0], refused.output
        # The replica's data is as it was; only its ledger shows the refusal (issue 18).
        assert content_hashes(replica_path(db)) == replica
        con = duckdb.connect(str(replica_path(db)), read_only=True)
        try:
            [(status, error)] = con.execute(
                "SELECT status, error FROM pipeline.runs ORDER BY started_at DESC LIMIT 1").fetchall()
        finally:
            con.close()
        assert status == "failed" and error.startswith("MassDeleteError") and "12 of 12" in error
        confirmed = runner.invoke(app, [*args, "--allow-mass-delete"])
    assert confirmed.exit_code == 0 and "12 deleted" in confirmed.output, confirmed.output
    con = duckdb.connect(str(replica_path(db)), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NULL").fetchall() == [(0,)]
    finally:
        con.close()


# ------------------------------------------------------------------ 12: strategies
def other_records(con) -> list[tuple]:
    return con.execute("SELECT project_id, sk, record FROM rayteams.other_records ORDER BY 1, 2").fetchall()


async def test_a_per_resource_full_refresh_keeps_the_records_only_aggregate_sees(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=14, n_projects=30, undocumented_kind_share=0.5))
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        async with server(dataset, Hostility()) as url:
            await engine_run(url, con, "aggregate", strategy="aggregate")
            before = other_records(con)
            assert before, "the dataset must hold records of undocumented kinds"
            run = await engine_run(url, con, "per-resource", strategy="per_resource", mode="full_refresh")
            after_per_resource = other_records(con)
            back = await engine_run(url, con, "aggregate-again", strategy="aggregate", mode="full_refresh")
            after_aggregate = other_records(con)
    finally:
        con.close()
    assert run.status == "success" and run.units_changed == 30
    assert after_per_resource == before
    assert back.status == "success" and after_aggregate == before


def test_every_strategy_declares_the_tables_it_sees_in_part():
    # Aggregate sees every record (the reverse direction has no table to protect).
    assert set(PARTIAL_TABLES) == set(STRATEGIES) and PARTIAL_TABLES["aggregate"] == frozenset()


async def test_rows_a_partial_strategy_does_see_replace_theirs_by_key(tmp_path):
    """The replace of a partial table is an upsert: keyed rows the batch carries replace
    the stored ones, others stay; a quarantined record kept is renumbered after."""
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        def load(run_id: str, records: list[tuple[str, str]], rejected: list[str], partial: frozenset[str]) -> None:
            frame = pl.DataFrame({"account": ["a"] * len(records), "project_id": ["p"] * len(records),
                                  "sk": [sk for sk, _ in records], "kind": ["x"] * len(records),
                                  "record": [body for _, body in records]},
                                 schema=tables.OTHER_RECORDS.polars_schema)
            replace_units(con, source="rayteams", account="a", run_id=run_id, tables=tables.TABLES,
                          cursors={"p": "1"}, stored=["p"], frames={"other_records": frame},
                          rejected=[RejectedRecord("other_records", "p", key, ("bad",), "{}") for key in rejected],
                          now=datetime.now(timezone.utc),
                          partial_tables=partial)

        load("r1", [("x#1", '{"v":1}'), ("x#2", '{"v":1}')], ["p/x#9"], frozenset())
        load("r2", [("x#2", '{"v":2}')], ["p/x#8"], frozenset({"other_records"}))
        rows = con.execute("SELECT sk, record FROM rayteams.other_records ORDER BY sk").fetchall()
        quarantined = con.execute("SELECT seq, record_key FROM pipeline.rejected_records ORDER BY seq").fetchall()
        load("r3", [("x#3", '{"v":3}')], [], frozenset())
        whole = con.execute("SELECT sk FROM rayteams.other_records").fetchall()
    finally:
        con.close()
    assert rows == [("x#1", '{"v":1}'), ("x#2", '{"v":2}')]
    assert quarantined == [(0, "p/x#9"), (1, "p/x#8")]
    assert whole == [("x#3",)]


def test_every_sync_flow_and_schedule_takes_allow_mass_delete():
    from pwh.flows.schedules import SCHEDULABLE_FLOWS, check_parameters, parse_schedules

    config = {"schedules": {source: {"source": source, "allow_mass_delete": True} for source in SCHEDULABLE_FLOWS}}
    schedules = parse_schedules(config)
    for schedule in schedules:
        check_parameters(schedule)  # refuses a parameter its flow does not take
    assert {s.source for s in schedules} == set(SCHEDULABLE_FLOWS)
