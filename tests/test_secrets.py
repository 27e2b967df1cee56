"""Secrets and patient identifiers leave no trace: full syncs (a clean one, a partial one
with faults, a refused token, a server that fails and echoes credentials back) with
distinctive secret values, then a grep of everything the runs left behind: the warehouse
file and its WAL, every log record (ours, aiohttp's, Prefect's) and stdout/stderr, the
exception texts, and what Prefect stored (flow-run parameters, task runs, state
messages, logs, and the Prefect database file itself). Also `pwh sync` as a subprocess."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import pytest
from aiohttp import web

from pwh.flows.prefect_flows import sync_rayteams
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.simulators.simulation import serving

TOKEN = "tok-LEAKCHECK-9b8e7d6c5a4f3e2d"
CLIENT_ID = "cid-LEAKCHECK-1a2b3c4d"
WRONG_TOKEN = "tok-WRONGLEAK-55aa66bb77cc"
KEY = "pseudonym-key-LEAKCHECK-0f1e2d3c4b5a"

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def secrets_in_env(monkeypatch):
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PWH_PSEUDONYM_KEY", KEY)


class Everything(logging.Handler):
    """Keeps every record, formatted with its exception and stack."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(record.args))


@pytest.fixture
def all_logs():
    """A handler on the root logger and on every logger that does not propagate (Prefect's
    own), everything at DEBUG."""
    import aiohttp  # noqa: F401  (its loggers exist once imported)
    import prefect  # noqa: F401

    handler = Everything()
    loggers = [logging.getLogger()] + [
        logger for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger) and not logger.propagate
    ]
    watched = {"", "prefect", "aiohttp", "pwh", "prefect.flow_runs", "prefect.task_runs"}
    levels = {name: logging.getLogger(name).level for name in watched}
    for name in watched:
        logging.getLogger(name).setLevel(logging.DEBUG)
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def secrets_of(dataset: RayteamsDataset) -> list[str]:
    names, links = dataset.patient_names(), dataset.download_links()
    assert names and links
    return [TOKEN, CLIENT_ID, WRONG_TOKEN, KEY, *names, *links]


def assert_clean(what: str, text: str | bytes, secrets: list[str]) -> None:
    data = text if isinstance(text, bytes) else text.encode("utf-8", "replace")
    found = [s for s in secrets if s.encode() in data]
    assert not found, f"{len(found)} secret value(s) found in {what}, e.g. a {describe(found[0])}"


def describe(secret: str) -> str:
    """Say which kind of secret leaked without printing it."""
    if secret in (TOKEN, WRONG_TOKEN):
        return "token"
    if secret == CLIENT_ID:
        return "client id"
    if secret == KEY:
        return "pseudonym key"
    return "download link" if secret.startswith("http") else "patient name"


def warehouse_bytes(db: Path) -> bytes:
    """The warehouse after CHECKPOINT, its WAL, and every other file the runs left beside
    it (the readers' replica, the lock, the key folder)."""
    con = duckdb.connect(str(db))
    con.execute("CHECKPOINT")
    con.close()
    files = sorted(p for p in db.parent.rglob("*") if p.is_file())
    assert db in files and len(files) > 1
    return b"".join(p.read_bytes() for p in files)


def exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + repr(getattr(exc, "__dict__", {}))


def echoing_app(status: int) -> web.Application:
    """A broken server that echoes the credentials it was sent into its error answers."""

    async def handle(request: web.Request) -> web.Response:
        echoed = f"{request.headers.get('Authorization')} {request.headers.get('x-rayteams-client-id')}"
        return web.json_response({"message": f"rejected {echoed}", "headers": dict(request.headers)}, status=status)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def prefect_records() -> tuple[str, int, int]:
    """Everything the Prefect API holds about the session's runs, as JSON text, with the
    number of flow runs and task runs seen."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    await APILogHandler.aflush()
    async with get_client() as client:
        flow_runs = await client.read_flow_runs(limit=200)
        task_runs = await client.read_task_runs(limit=200)
        logs = await client.read_logs(limit=200)
        more = [await client.read_flow_run(run.id) for run in flow_runs]
    parts = [r.model_dump_json() for r in (*flow_runs, *task_runs, *logs, *more)]
    return "\n".join(parts), len(flow_runs), len(task_runs)


def prefect_database_bytes() -> bytes:
    """The harness's own SQLite file (and its WAL): parameters, states, logs, events."""
    from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

    url = PREFECT_SERVER_DATABASE_CONNECTION_URL.value()
    path = Path(urlparse(str(url).replace("sqlite+aiosqlite:", "sqlite:")).path)
    assert path.exists(), "the harness database is not where the settings say"
    data = b""
    for suffix in ("", "-wal", "-journal"):
        file = Path(f"{path}{suffix}")
        if file.exists():
            data += file.read_bytes()
    return data


async def test_no_secret_in_tables_logs_exceptions_or_prefect(tmp_path, all_logs, capfd):
    dataset = RayteamsDataset(DatasetConfig(seed=31, n_projects=20, invalid_records=3))
    secrets = secrets_of(dataset)
    broken = dataset.project_ids()[2]
    db = tmp_path / "w.duckdb"
    sim = SimulatorOptions(token=TOKEN, client_id=CLIENT_ID, fault_rate=0.1, stall_s=0.6,
                           always_fail_projects=frozenset({broken}))
    exceptions: list[BaseException] = []
    async with running_simulator(dataset, sim) as base_url:
        summary = await sync_rayteams(base_url=base_url, db_path=str(db), batch_size=8,
                                      timeout_s=0.3, max_attempts=3)
        assert summary["status"] == "partial" and summary["failed_units"] == [broken]
        assert summary["rows_rejected"] >= 3 and summary["retries"] > 0

        # A refused token: the run fails, saying which variable to fix.
        os.environ["RAYTEAMS_TOKEN"] = WRONG_TOKEN
        with pytest.raises(Exception, match="RAYTEAMS_TOKEN") as refused:
            await sync_rayteams(base_url=base_url, db_path=str(db))
        exceptions.append(refused.value)
        os.environ["RAYTEAMS_TOKEN"] = TOKEN

    # A server that fails and echoes the credentials: 500 (retried, then given up) and 403.
    for status in (500, 403):
        async with serving(echoing_app(status)) as root:
            with pytest.raises(Exception) as failed:
                await sync_rayteams(base_url=root, db_path=str(db), max_attempts=2)
            exceptions.append(failed.value)
    assert "RetriesExhaustedError" in exception_text(exceptions[1])

    out, err = capfd.readouterr()
    assert_clean("the warehouse file", warehouse_bytes(db), secrets)
    assert len(all_logs.lines) > 50  # the capture saw the runs (Prefect's and ours)
    assert any("RAYTEAMS_TOKEN" in line for line in all_logs.lines)
    assert_clean("a log record", "\n".join(all_logs.lines), secrets)
    assert_clean("stdout/stderr", out + err, secrets)
    for exc in exceptions:
        assert_clean("an exception", exception_text(exc), secrets)
    stored, n_flow_runs, n_task_runs = await prefect_records()
    assert n_flow_runs >= 4 and n_task_runs >= 4
    assert_clean("Prefect's flow runs, task runs and logs", stored, secrets)
    await asyncio.sleep(1.0)  # let the server write the last events
    assert_clean("Prefect's database", prefect_database_bytes(), secrets)


async def test_pwh_sync_subprocess_prints_no_secret(tmp_path):
    from prefect.settings import PREFECT_API_URL

    dataset = RayteamsDataset(DatasetConfig(seed=32, n_projects=12, invalid_records=2))
    secrets = secrets_of(dataset)
    broken = dataset.project_ids()[0]
    sim = SimulatorOptions(token=TOKEN, client_id=CLIENT_ID, always_fail_projects=frozenset({broken}))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()), "PWH_PSEUDONYM_KEY": KEY,
           "RAYTEAMS_CLIENT_ID": CLIENT_ID}

    async def pwh(base_url: str, db: Path, token: str) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "pwh.cli", "sync", "rayteams", "--base-url", base_url, "--db", str(db),
            env={**env, "RAYTEAMS_TOKEN": token},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate()
        return process.returncode, (out + err).decode()

    async with running_simulator(dataset, sim) as base_url:
        (partial_code, partial_output), (refused_code, refused_output) = await asyncio.gather(
            pwh(base_url, tmp_path / "a.duckdb", TOKEN), pwh(base_url, tmp_path / "b.duckdb", WRONG_TOKEN))
    assert partial_code == 3 and "partial" in partial_output and broken in partial_output
    assert refused_code == 1 and "RAYTEAMS_TOKEN" in refused_output
    assert_clean("pwh's output", partial_output + refused_output, secrets)
    assert_clean("the warehouse file", warehouse_bytes(tmp_path / "a.duckdb"), secrets)


async def test_credentials_can_come_from_prefect_secret_blocks(tmp_path, monkeypatch):
    from prefect.blocks.system import Secret

    dataset = RayteamsDataset(DatasetConfig(seed=33, n_projects=3))
    token, client_id = "tok-FROM-BLOCK-31415", "cid-FROM-BLOCK-27182"
    monkeypatch.delenv("RAYTEAMS_TOKEN")
    monkeypatch.delenv("RAYTEAMS_CLIENT_ID")
    await Secret(value=token).save("rayteams-token", overwrite=True)
    await Secret(value=client_id).save("rayteams-client-id", overwrite=True)
    try:
        async with running_simulator(dataset, SimulatorOptions(token=token, client_id=client_id)) as base_url:
            summary = await sync_rayteams(base_url=base_url, db_path=str(tmp_path / "w.duckdb"))
    finally:
        await Secret.delete("rayteams-token")
        await Secret.delete("rayteams-client-id")
    assert summary["status"] == "success" and summary["units_new"] == 3


def test_a_missing_secret_says_where_to_put_it(monkeypatch):
    from pwh.flows.secrets import MissingSecretError, read_secret

    monkeypatch.delenv("RAYTEAMS_TOKEN")
    # With the harness's server configured, the Secret block is looked up too, and absent.
    with pytest.raises(MissingSecretError, match="export it, or .* Secret block named 'rayteams-token'"):
        read_secret("RAYTEAMS_TOKEN")
