"""A sub-resource's answer is a stream's, never the project's fate (issue 16).

Only a project's own existence call (RAYTeams ``GET /project/{_id}``) can make it vanish.
A stream's 404 or ``NO_ITEM`` means "no records of that kind"; its 403 means the stream is
forbidden: skipped for the run, its rows kept, the run ``partial`` naming it, and the next
run fetches it again. An excluded stream makes no request and keeps its rows. When the
aggregate answer carries no group record, the groups stream is fetched on its own.

The RAYTeams simulator on 127.0.0.1 behind a middleware of the test's own, the engine's
plain stages, a real DuckDB file."""

from __future__ import annotations

import re
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import duckdb
import orjson
import pytest
from aiohttp import web

from pwh.flows.engine import run_sync
from pwh.flows.rayteams_sync import RayteamsAdapter
from pwh.flows.registry import OPENPROJECT, RAYTEAMS
from pwh.flows.streams import UnknownStreamError, choose_streams
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import API_PREFIX, SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.rayteams.client import RayteamsClient
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.warehouse.connection import connect
from pwh.warehouse.migrations import migrate

TOKEN = "tok-SECRET-streams-5d1e"
CLIENT_ID = "client-SECRET-streams-77"
N_PROJECTS = 12
STREAMS = RAYTEAMS.streams
ALL_STREAMS = frozenset(RAYTEAMS.stream_names)


@dataclass
class Faults:
    """What the middleware does, by the kind of call; and what it was asked."""

    answers: dict[str, str] = field(default_factory=dict)  # call kind → "404" | "403" | "NO_ITEM"
    no_groups_in_aggregate: bool = False
    asked: Counter = field(default_factory=Counter)  # call kind → requests


def call_kind(path: str) -> str:
    """files, aggregate, list, or the sub-resource's name (memo, groups, ...)."""
    if path == "/project":
        return "list"
    if re.fullmatch(r"/file/[^/]+(/.*)?", path):
        return "files"
    match = re.fullmatch(r"/project/[^/]+/([a-z]+)", path)
    return match.group(1) if match else "aggregate"


def faulty_app(dataset: RayteamsDataset, faults: Faults) -> web.Application:
    app = build_app(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID))

    @web.middleware
    async def fault(request: web.Request, handler):
        kind = call_kind(request.path.removeprefix(API_PREFIX))
        faults.asked[kind] += 1
        answer = faults.answers.get(kind)
        if answer == "NO_ITEM":
            return web.json_response({"errorCode": "NO_ITEM", "message": "no such item"})
        if answer in ("403", "404"):
            return web.json_response({"errorCode": "MissingPermission" if answer == "403" else "NotFound"},
                                     status=int(answer))
        response = await handler(request)
        if kind == "aggregate" and faults.no_groups_in_aggregate:
            body = orjson.loads(response.body)
            body["data"] = [r for r in body["data"] if not str(r.get("sk", "")).startswith("project:institute")]
            return web.json_response(body)
        return response

    app.middlewares.append(fault)
    return app


@asynccontextmanager
async def warehouse(tmp_path, faults: Faults, dataset: RayteamsDataset | None = None):
    dataset = dataset or RayteamsDataset(DatasetConfig(seed=21, n_projects=N_PROJECTS))
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        async with serving(faulty_app(dataset, faults)) as root:
            yield con, root + API_PREFIX, dataset
    finally:
        con.close()


async def sync(url: str, con, run_id: str, *, strategy: str = "aggregate", **kw):
    client = RayteamsClient.connect(url, token=TOKEN, client_id=CLIENT_ID)
    async with RayteamsAdapter(client, account="acct", strategy=strategy,
                               pseudonyms=Pseudonymizer(b"k" * 32)) as adapter:
        return await run_sync(adapter, con, run_id=run_id, batch_size=5, **kw)


def count(con, table: str, where: str = "TRUE") -> int:
    return con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchall()[0][0]


def live_projects(con) -> int:
    return count(con, "pipeline.unit_state", "deleted_at IS NULL")


def rows(con, table: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


# ------------------------------------------------------------------ 404 / NO_ITEM: no records
@pytest.mark.parametrize("strategy", ["aggregate", "per_resource"])
@pytest.mark.parametrize("answer", ["404", "NO_ITEM"])
async def test_a_file_call_answering_not_found_means_no_files_not_a_deleted_project(tmp_path, strategy, answer):
    async with warehouse(tmp_path, Faults()) as (con, url, _):
        first = await sync(url, con, "first", strategy=strategy)
        assert first.status == "success" and count(con, "rayteams.files") > 0
        faults_now = Faults(answers={"files": answer})
    async with warehouse(tmp_path, faults_now) as (con, url, _):
        run = await sync(url, con, "refresh", strategy=strategy, mode="full_refresh")
        assert run.status == "success" and run.units_deleted == 0 and run.units_failed == 0
        assert live_projects(con) == N_PROJECTS and count(con, "rayteams.projects", "deleted_at IS NULL") == N_PROJECTS
        assert count(con, "rayteams.files") == 0  # every project now says: no files


@pytest.mark.parametrize("answer", ["404", "NO_ITEM"])
async def test_sub_resources_answering_not_found_load_empty_kinds_in_per_resource(tmp_path, answer):
    faults = Faults(answers={"memo": answer, "orders": answer})
    async with warehouse(tmp_path, faults) as (con, url, _):
        run = await sync(url, con, "first", strategy="per_resource")
        assert run.status == "success" and run.units_deleted == 0 and run.units_new == N_PROJECTS
        assert count(con, "rayteams.memos") == 0 and count(con, "rayteams.orders") == 0
        assert count(con, "rayteams.projects") == N_PROJECTS and count(con, "rayteams.histories") > 0


async def test_the_projects_own_no_item_still_means_it_is_gone(tmp_path):
    """The existence call keeps its meaning: a project whose aggregate answers NO_ITEM vanishes."""
    async with warehouse(tmp_path, Faults()) as (con, url, _):
        await sync(url, con, "first")
        faults_now = Faults(answers={"aggregate": "NO_ITEM"})
    async with warehouse(tmp_path, faults_now) as (con, url, _):
        run = await sync(url, con, "gone", mode="full_refresh", allow_mass_delete=True)
        assert run.units_deleted == N_PROJECTS and live_projects(con) == 0


# ------------------------------------------------------------------ 403: forbidden stream
@pytest.mark.parametrize("strategy", ["aggregate", "per_resource"])
async def test_a_forbidden_stream_is_skipped_its_rows_kept_and_the_run_is_partial_naming_it(tmp_path, strategy):
    async with warehouse(tmp_path, Faults()) as (con, url, dataset):
        await sync(url, con, "first", strategy=strategy)
        files_before = rows(con, "rayteams.files")
        assert files_before
        dataset.mutate(seed=5, update_share=0.5, add_share=0.0, remove_share=0.0)
        faults_now = Faults(answers={"files": "403"})
    async with warehouse(tmp_path, faults_now, dataset) as (con, url, _):
        run = await sync(url, con, "forbidden", strategy=strategy, mode="full_refresh")
        assert run.status == "partial" and run.units_failed == 0 and run.units_deleted == 0
        assert run.skipped_streams == {"files": "HTTP 403 MissingPermission"}
        assert "stream files" in run.error and "HTTP 403" in run.error and "\n" not in run.error
        stored = con.execute("SELECT status, error FROM pipeline.runs WHERE run_id = 'forbidden'").fetchall()[0]
        assert stored == ("partial", run.error)
        assert rows(con, "rayteams.files") == files_before  # kept as they were
        assert count(con, "rayteams.projects", "deleted_at IS NULL") == N_PROJECTS
        # Skipped for the rest of the run: far fewer file calls than projects.
        assert faults_now.asked["files"] < N_PROJECTS
        assert count(con, "pipeline.unit_state", "missing_streams = 'files'") == N_PROJECTS
    healed = Faults()
    async with warehouse(tmp_path, healed, dataset) as (con, url, _):
        run = await sync(url, con, "next")  # incremental: the projects are refetched for their files
        assert run.status == "success" and run.units_changed == N_PROJECTS
        assert healed.asked["files"] == N_PROJECTS
        assert count(con, "pipeline.unit_state", "missing_streams IS NOT NULL") == 0


async def test_a_token_without_the_file_scope_still_loads_every_project(tmp_path):
    """First sync ever, 403 on /file: every project loads (partial), none fails."""
    async with warehouse(tmp_path, Faults(answers={"files": "403"})) as (con, url, _):
        run = await sync(url, con, "first")
        assert run.status == "partial" and run.units_new == N_PROJECTS and run.units_failed == 0
        assert count(con, "rayteams.projects") == N_PROJECTS and count(con, "rayteams.memos") > 0


# ------------------------------------------------------------------ groups outside the aggregate
async def test_an_aggregate_without_groups_gets_the_groups_stream_on_its_own(tmp_path):
    async with warehouse(tmp_path, Faults()) as (con, url, dataset):
        await sync(url, con, "whole")
        expected = rows(con, "rayteams.groups")
        assert expected
    scoped = Faults(no_groups_in_aggregate=True)
    (tmp_path / "w.duckdb").unlink()
    async with warehouse(tmp_path, scoped, dataset) as (con, url, _):
        run = await sync(url, con, "scoped")
        assert run.status == "success" and scoped.asked["groups"] == N_PROJECTS
        assert rows(con, "rayteams.groups") == expected


async def test_an_aggregate_with_groups_makes_no_groups_call(tmp_path):
    faults = Faults()
    async with warehouse(tmp_path, faults) as (con, url, _):
        await sync(url, con, "whole")
    assert faults.asked["groups"] == 0 and faults.asked["aggregate"] == N_PROJECTS


# ------------------------------------------------------------------ selection
@pytest.mark.parametrize("strategy", ["aggregate", "per_resource"])
async def test_an_excluded_stream_makes_no_request_and_keeps_its_rows(tmp_path, strategy):
    async with warehouse(tmp_path, Faults()) as (con, url, dataset):
        await sync(url, con, "first", strategy=strategy)
        files_before, memos_before = rows(con, "rayteams.files"), rows(con, "rayteams.memos")
        dataset.mutate(seed=8, update_share=1.0, add_share=0.0, remove_share=0.0)
    faults = Faults()
    async with warehouse(tmp_path, faults, dataset) as (con, url, _):
        run = await sync(url, con, "without", strategy=strategy, streams=ALL_STREAMS - {"files", "memos"})
        assert run.status == "success" and run.units_changed == N_PROJECTS
        assert faults.asked["files"] == 0 and faults.asked["memo"] == 0
        assert rows(con, "rayteams.files") == files_before and rows(con, "rayteams.memos") == memos_before
        assert count(con, "pipeline.unit_state", "missing_streams = 'files,memos'") == N_PROJECTS
        # The same selection again: nothing to do (the missing streams are still not wanted).
        again = await sync(url, con, "again", strategy=strategy, streams=ALL_STREAMS - {"files", "memos"})
        assert again.units_changed == 0 and again.units_unchanged == N_PROJECTS
        # Selected again later: every project is fetched for them, and they are current.
        back = await sync(url, con, "back", strategy=strategy)
        assert back.units_changed == N_PROJECTS and faults.asked["files"] == N_PROJECTS
        assert rows(con, "rayteams.files") != files_before
        assert count(con, "pipeline.unit_state", "missing_streams IS NOT NULL") == 0


def test_stream_names_are_checked_and_lists_are_accepted():
    assert choose_streams("rayteams", STREAMS) == ALL_STREAMS
    assert choose_streams("rayteams", STREAMS, exclude=["files,orders"]) == ALL_STREAMS - {"files", "orders"}
    assert choose_streams("rayteams", STREAMS, select=["memos", "files"], exclude=["files"]) == {"memos"}
    with pytest.raises(UnknownStreamError, match=r"rayteams has no stream file; its streams are memos, .*files"):
        choose_streams("rayteams", STREAMS, exclude=["file"])
    with pytest.raises(UnknownStreamError, match="no stream"):
        choose_streams("rayteams", STREAMS, select=["projects"])


def test_a_warehouse_made_before_streams_gains_the_column(tmp_path):
    """Migration 8 on a file whose unit_state predates it: the column is added, rows kept."""
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA pipeline")
    con.execute("CREATE TABLE pipeline.schema_version (version INTEGER, description VARCHAR, applied_at TIMESTAMPTZ)")
    con.execute("CREATE TABLE pipeline.unit_state (source VARCHAR, account VARCHAR, unit_key VARCHAR, cursor VARCHAR, "
                "first_seen_at TIMESTAMPTZ, synced_at TIMESTAMPTZ, run_id VARCHAR, deleted_at TIMESTAMPTZ)")
    con.execute("INSERT INTO pipeline.unit_state VALUES ('rayteams', 'a', 'p1', '1', now(), now(), 'r', NULL)")
    con.executemany("INSERT INTO pipeline.schema_version VALUES (?, 'old', now())", [[v] for v in range(1, 8)])
    con.close()
    con = connect(db)
    try:
        migrate(con)
        assert con.execute("SELECT unit_key, missing_streams FROM pipeline.unit_state").fetchall() == [("p1", None)]
    finally:
        con.close()


# ------------------------------------------------------------------ OpenProject: a project's collections
@web.middleware
async def versions_forbidden(request: web.Request, handler):
    if re.search(r"/api/v3/projects/[^/]+/versions$", request.path):
        return web.json_response({"_type": "Error", "errorIdentifier": "urn:openproject-org:api:v3:errors:"
                                  "MissingPermission", "message": "You are not authorized."}, status=403)
    return await handler(request)


async def test_openproject_a_forbidden_collection_is_skipped_and_its_rows_kept(tmp_path, monkeypatch):
    source = OPENPROJECT
    db = tmp_path / "w.duckdb"
    async with source.simulated()(8, 3) as simulated:
        monkeypatch.setenv("OPENPROJECT_API_KEY", simulated.credentials["OPENPROJECT_API_KEY"])
        first = await source.flow_function(source.flow)(base_url=simulated.base_url, db_path=str(db))
        assert first["status"] == "success"
    con = duckdb.connect(str(db), read_only=True)
    versions_before = con.execute("SELECT * FROM openproject.versions ORDER BY ALL").fetchall()
    con.close()
    assert versions_before
    async with source.simulated()(8, 3, middlewares=(versions_forbidden,)) as simulated:
        monkeypatch.setenv("OPENPROJECT_API_KEY", simulated.credentials["OPENPROJECT_API_KEY"])
        run = await source.flow_function(source.flow)(base_url=simulated.base_url, db_path=str(db), mode="full_refresh")
    assert run["status"] == "partial" and run["units_failed"] == 0 and run["units_deleted"] == 0
    assert run["skipped_streams"] == {"versions": "HTTP 403 MissingPermission"}
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT * FROM openproject.versions ORDER BY ALL").fetchall() == versions_before
        assert con.execute("SELECT count(*) FROM openproject.projects WHERE deleted_at IS NULL").fetchall()[0][0] == 8
        assert con.execute("SELECT count(*) FROM pipeline.unit_state WHERE missing_streams = 'versions'"
                           ).fetchall()[0][0] == 8
    finally:
        con.close()
