"""A fifth source, added as a newcomer would (issue 16): its own client, tables, transform
and server, then only the glue the registry asks for, between the markers below: a
declaration, an adapter, ``open_tasklist(parameters, settings)`` and the simulator hook
(and, in the code base, one migration line ``create_tables(TABLES)``; here a fixture).

Everything else comes from the shared machinery and is exercised here: the made sync
function and its parameters, `pwh sync tasklist` made from the declaration, stream
selection and 404/403 semantics, deletions, the run ledger, a 401 naming the setting, and a
real Prefect flow run."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import typer
from aiohttp import web
from prefect import flow
from typer.testing import CliRunner

from pwh.flows import registry, syncs
from pwh.flows.engine import ClientAdapter, Listing, Unit, listed_units
from pwh.flows.registry import Option, Source
from pwh.flows.runner import OpenedAdapter
from pwh.flows.secrets import read_secret
from pwh.flows.streams import Stream, UnitStreams
from pwh.flows.syncs import sync_function
from pwh.schemas.spec import Table, text, timestamp
from pwh.simulators.simulation import serving
from pwh.source_commands import sync_command
from pwh.sources.errors import AuthError
from pwh.sources.http import HttpClient, HttpSettings, SourceClient, StaticHeaders, decode_ok_json
from pwh.transforms.frames import TableBatch
from pwh.transforms.redact import redact_unknown_source
from pwh.warehouse.connection import connect
from pwh.warehouse.load import UnitState
from pwh.warehouse.migrations import create_tables, migrate

TOKEN = "tasklist-SECRET-7d1e"

# ---------------------------------------------------------------- the source's own code
PROJECTS = Table("tasklist", "projects", "Tasklist projects.", (
    text("account", "Account.", nullable=False), text("project_id", "Project id.", nullable=False),
    text("name", "Name."), text("updated", "Cursor."), timestamp("deleted_at", "Deleted.")),
    key=("account", "project_id"), managed=("deleted_at",))
NOTES = Table("tasklist", "notes", "Notes of a project.", (
    text("account", "Account.", nullable=False), text("project_id", "Project id.", nullable=False),
    text("note_id", "Note id.", nullable=False), text("body", "Note text.")),
    key=("account", "project_id", "note_id"))
TABLES = (PROJECTS, NOTES)


@dataclass
class Fetched:
    project: dict[str, Any]
    notes: list[dict[str, Any]]


class TasklistClient(SourceClient):
    def __init__(self, base_url: str, token: str, settings: HttpSettings) -> None:
        self.http = HttpClient(base_url, source="tasklist", settings=settings,
                               credentials=StaticHeaders({"Authorization": f"Bearer {token}"}, "TASKLIST_TOKEN"))

    async def get(self, path: str, **params: Any) -> Any:
        return await self.http.request("GET", path, decode_ok_json, params=params)


def transform(fetched: list[Fetched], account: str) -> TableBatch:
    batch = TableBatch.for_tables(TABLES)
    for item in fetched:
        pid = item.project["id"]
        batch.buffers["projects"].append({"account": account, "project_id": pid, "name": item.project["name"],
                                          "updated": item.project["updated"]}, item.project, pid, pid)
        for note in item.notes:
            batch.buffers["notes"].append({"account": account, "project_id": pid, "note_id": note["id"],
                                           "body": note["body"]}, note, pid, note["id"])
    return batch


class TasklistServer:
    def __init__(self, projects: int) -> None:
        self.projects = {f"p{i}": {"id": f"p{i}", "name": f"Project {i}", "updated": "1"} for i in range(projects)}
        self.requests: list[str] = []
        self.notes_status = 200

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.Response:
            self.requests.append(request.path_qs)
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return web.json_response({"error": "unauthorized"}, status=401)
            if request.path == "/projects":
                archived = request.query.get("archived") == "true"
                return web.json_response([p for p in self.projects.values() if archived or p["name"] != "archived"])
            pid = request.match_info["pid"]
            if pid not in self.projects:
                return web.json_response({"error": "no such project"}, status=404)
            if request.path.endswith("/notes"):
                if self.notes_status != 200:
                    return web.json_response({"error": "no"}, status=self.notes_status)
                return web.json_response([{"id": f"{pid}-n{k}", "body": f"note {k}"} for k in range(2)])
            return web.json_response(self.projects[pid])

        app = web.Application()
        app.router.add_get("/projects", handle)
        app.router.add_get("/projects/{pid}", handle)
        app.router.add_get("/projects/{pid}/notes", handle)
        return app


# ---------------------------------------------------------------- the glue (what issue 16 counts)
# (the migration line: Migration(N, "Tasklist tables", create_tables(TABLES)))
TASKLIST = Source(
    name="tasklist", title="Tasklist", description="Every project of a Tasklist account with its notes.",
    adapter="tests.test_fifth_source:open_tasklist", flow="sync_tasklist", flow_name="sync-tasklist",
    secrets=("TASKLIST_TOKEN",),
    streams=(Stream("notes", ("notes",), "Notes.", calls=r"/projects/[^/]+/notes$"),),
    simulator="tests.test_fifth_source:simulated", base_url_example="https://tasklist.example.com",
    options=(Option("archived", "Sync archived projects too.", False, kind="bool"),),
)


class TasklistAdapter(ClientAdapter[TasklistClient]):
    source = "tasklist"
    tables = TABLES
    redact = staticmethod(redact_unknown_source)  # what a quarantined record keeps
    streams = TASKLIST.streams

    def __init__(self, client: TasklistClient, account: str, archived: bool) -> None:
        self.client, self.account, self.archived = client, account, archived

    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        entries = await self.client.get("/projects", archived=str(self.archived).lower())
        return Listing(listed_units(entries, "id", lambda entry: entry.get("updated"), self.source))

    async def fetch_unit(self, unit: Unit, streams: UnitStreams) -> Fetched:
        project = await self.client.get(f"/projects/{unit.key}")
        notes = await streams.fetch("notes", lambda: self.client.get(f"/projects/{unit.key}/notes"), [])
        return Fetched(project, notes)

    def transform(self, fetched: list[Fetched]) -> TableBatch:
        return transform(fetched, self.account)


def open_tasklist(parameters: dict[str, Any], settings: HttpSettings) -> OpenedAdapter:
    client = TasklistClient(parameters["base_url"], read_secret("TASKLIST_TOKEN"), settings)
    return OpenedAdapter(TasklistAdapter(client, parameters["account"], parameters["archived"]), TABLES)


@asynccontextmanager
async def simulated(projects: int, seed: int, **_: Any) -> AsyncIterator[Any]:
    async with serving(TasklistServer(projects).app()) as base_url:
        yield base_url
# ---------------------------------------------------------------- end of the glue


@pytest.fixture
def warehouse(tmp_path: Path) -> str:
    """A warehouse with the source's tables (its one migration line: ``create_tables(TABLES)``)."""
    db = str(tmp_path / "w.duckdb")
    with connect(db) as con:
        migrate(con)
        create_tables(TABLES)(con)
    return db


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> TasklistServer:
    monkeypatch.setenv("TASKLIST_TOKEN", TOKEN)
    return TasklistServer(projects=6)


def rows(db: str, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(db, read_only=True) as con:
        return con.execute(sql).fetchall()


async def run(server: TasklistServer, sync: Any, **parameters: Any) -> dict[str, Any]:
    async with serving(server.app()) as base_url:
        return await sync(base_url=base_url, **parameters)


def test_the_declared_sync_takes_the_common_parameters_and_the_sources_option():
    parameters = inspect.signature(sync_function(TASKLIST)).parameters
    assert list(parameters)[:4] == ["base_url", "db_path", "account", "mode"]
    assert parameters["archived"].default is False and parameters["concurrency"].default == 16
    assert {"select", "exclude", "allow_mass_delete", "max_response_bytes"} <= set(parameters)


def test_a_fifth_source_syncs_incrementally_with_stream_semantics(server, warehouse):
    sync = sync_function(TASKLIST)
    first = asyncio.run(run(server, sync, db_path=warehouse))
    assert first["status"] == "success" and first["units_new"] == 6
    assert rows(warehouse, "SELECT count(*) FROM tasklist.notes") == [(12,)]
    assert rows(warehouse, "SELECT count(*) FROM pipeline.runs WHERE source = 'tasklist'") == [(1,)]

    # Nothing changed: one list request, nothing fetched.
    server.requests.clear()
    second = asyncio.run(run(server, sync, db_path=warehouse))
    assert second["units_unchanged"] == 6 and second["units_changed"] == 0 and server.requests == ["/projects?archived=false"]

    # A project gone from the list is marked deleted; its own 404 is what proves it.
    del server.projects["p5"]
    asyncio.run(run(server, sync, db_path=warehouse))
    assert rows(warehouse, "SELECT project_id FROM tasklist.projects WHERE deleted_at IS NOT NULL") == [("p5",)]

    # The stream's 403 skips it for the run: its rows are kept, the run is partial and names it.
    server.projects["p0"]["updated"] = "2"
    server.notes_status = 403
    partial = asyncio.run(run(server, sync, db_path=warehouse))
    assert partial["status"] == "partial"
    assert rows(warehouse, "SELECT count(*) FROM tasklist.notes WHERE project_id = 'p0'") == [(2,)]
    assert "stream notes not loaded (HTTP 403" in rows(
        warehouse, "SELECT error FROM pipeline.runs ORDER BY started_at DESC LIMIT 1")[0][0]

    # The stream's 404 means "no notes", never "no project".
    server.notes_status = 404
    server.projects["p1"]["updated"] = "2"
    asyncio.run(run(server, sync, db_path=warehouse))
    assert rows(warehouse, "SELECT count(*) FROM tasklist.notes WHERE project_id = 'p1'") == [(0,)]
    assert rows(warehouse, "SELECT deleted_at FROM tasklist.projects WHERE project_id = 'p1'") == [(None,)]

    # Excluded: no request to the stream and its rows kept; the next run that selects it
    # refetches the project fetched without it.
    server.notes_status = 200
    server.projects["p2"]["updated"] = "2"
    server.requests.clear()
    asyncio.run(run(server, sync, db_path=warehouse, exclude=["notes"], archived=True))
    assert "/projects/p2" in server.requests and "/projects?archived=true" in server.requests
    assert not [path for path in server.requests if path.endswith("/notes")]
    assert rows(warehouse, "SELECT count(*) FROM tasklist.notes WHERE project_id = 'p2'") == [(2,)]
    server.requests.clear()
    asyncio.run(run(server, sync, db_path=warehouse))
    assert [path for path in server.requests if path.endswith("/notes")] == ["/projects/p2/notes"]


def test_a_wrong_token_fails_naming_the_setting_and_quoting_no_secret(server, warehouse, monkeypatch):
    monkeypatch.setenv("TASKLIST_TOKEN", "wrong-SECRET-token")
    with pytest.raises(AuthError) as caught:
        asyncio.run(run(server, sync_function(TASKLIST), db_path=warehouse))
    assert "check TASKLIST_TOKEN" in str(caught.value) and "SECRET" not in str(caught.value)


@pytest.mark.usefixtures("prefect_harness")
def test_the_fifth_source_runs_as_a_prefect_flow_run(server, warehouse):
    sync_tasklist = flow(name=TASKLIST.flow_name, validate_parameters=True)(sync_function(TASKLIST))
    # Prefect validates the made signature: a text number becomes the int the engine needs.
    summary = asyncio.run(run(server, sync_tasklist, db_path=warehouse, batch_size="4"))
    assert summary["status"] == "success" and summary["units_new"] == 6
    [(run_id,)] = rows(warehouse, "SELECT run_id FROM pipeline.runs WHERE source = 'tasklist'")
    assert run_id == summary["run_id"] and sync_tasklist.parameters.properties["archived"]["default"] is False


class ServerThread:
    """The source's server in a background thread, for the synchronous CLI."""

    def __init__(self, server: TasklistServer) -> None:
        self.server, self.base_url = server, ""
        self._started, self._loop = threading.Event(), asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with serving(self.server.app()) as self.base_url:
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


def test_pwh_sync_is_made_from_the_declaration(server, warehouse, monkeypatch):
    """Registered (as its declaration in SOURCES would be), the source has its `pwh sync`
    command: the common options, its own option, the stream check, the summary."""
    monkeypatch.setitem(registry._BY_NAME, "tasklist", TASKLIST)
    monkeypatch.setattr(syncs, "SOURCES", (*registry.SOURCES, TASKLIST))
    app = typer.Typer()
    app.command("tasklist")(sync_command(TASKLIST))
    app.command("other")(lambda: None)  # two commands: typer keeps the subcommand's name
    runner = CliRunner()
    with ServerThread(server) as thread:
        wrong = runner.invoke(app, ["tasklist", "--base-url", thread.base_url, "--db", warehouse, "--exclude", "memos"])
        # (pwh's entry point prints it as one line; here it is the exception it raises)
        assert "tasklist has no stream memos; its streams are notes" in str(wrong.exception)
        done = runner.invoke(app, ["tasklist", "--base-url", thread.base_url, "--db", warehouse, "--archived",
                                   "--no-prefect", "--quiet"])
    assert done.exit_code == 0, done.output
    assert "/projects?archived=true" in server.requests
    assert rows(warehouse, "SELECT count(*) FROM tasklist.notes") == [(12,)]
