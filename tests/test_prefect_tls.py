"""Prefect's API clients share one TLS context when the API is plain http, and only then
(pwh/flows/prefect_tls.py): a flow run in a fresh process builds one instead of five, and
an https API or an unverified setup gets Prefect's own contexts, verified as before."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, PREFECT_API_URL, temporary_settings

from pwh.flows.prefect_tls import SHARED
from pwh.simulators.incoplax.dataset import DatasetConfig, IncoplaxDataset
from pwh.simulators.incoplax.simulator import SimulatorOptions, build_app
from pwh.simulators.simulation import serving

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tls-SECRET-token-5e1d"

# The CA files loaded into TLS contexts during one flow call in a fresh process (imports
# done before counting), as `pwh sync` with a Prefect API configured makes the call.
FLOW_CALL = """
import asyncio, json, ssl, sys, threading
from pwh.flows.prefect_flows import sync_incoplax
loads = []
load = ssl.SSLContext.load_verify_locations
def counted(self, *args, **kwargs):
    loads.append(threading.current_thread().name)
    return load(self, *args, **kwargs)
ssl.SSLContext.load_verify_locations = counted
summary = asyncio.run(sync_incoplax(base_url=sys.argv[1], db_path=sys.argv[2], account="Lab_Seoul", batch_size=3))
from prefect.events.worker import EventsWorker
from prefect.logging.handlers import APILogWorker
APILogWorker.drain_all(timeout=60)  # their clients made and used: counted
EventsWorker.drain_all(timeout=60)
print(json.dumps({"run_id": summary["run_id"], "status": summary["status"], "loads": loads}))
"""


async def test_a_flow_run_against_an_http_api_builds_one_tls_context(tmp_path: Path):
    dataset = IncoplaxDataset(DatasetConfig(seed=47, n_projects=7))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(INCOPLAX_TOKEN=TOKEN, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(ROOT))
    assert env["PREFECT_API_URL"].startswith("http://")
    async with serving(build_app(dataset, SimulatorOptions(token=TOKEN)), any_method=True) as url:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOW_CALL, url, str(tmp_path / "w.duckdb"), env=env, cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(child.communicate(), timeout=300)
    assert child.returncode == 0, err.decode()[-3000:]
    called = json.loads(out.decode().strip().splitlines()[-1])
    assert called["status"] == "success"
    # The engine's client, the result-storage lookup's, the events worker's, its version
    # check's and the log worker's: five contexts without the sharing.
    assert len(called["loads"]) == 1, called["loads"]

    # Still all in Prefect: the run completed, with its task runs and its log lines.
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    run_id = UUID(called["run_id"])
    async with get_client() as client:
        flow_run = await client.read_flow_run(run_id)
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert flow_run.state is not None and flow_run.state.is_completed()
    assert sorted(t.name.rsplit("-", 1)[0] for t in task_runs) == ["fetch-transform-load-batch"] * 3 + ["list-projects"]
    assert any("run " + called["run_id"] in entry.message for entry in logs)


def contexts_made(monkeypatch) -> list[ssl.SSLContext]:
    """Every context ``ssl.create_default_context`` makes from here on."""
    made: list[ssl.SSLContext] = []
    create = ssl.create_default_context

    def recorded(*args, **kwargs):
        made.append(create(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", recorded)
    return made


def verified(context: ssl.SSLContext) -> bool:
    return (context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
            and context.cert_store_stats()["x509_ca"] > 0)


@pytest.mark.parametrize("api_url", ["https://prefect.example.invalid/api", "HTTPS://prefect.example.invalid/api"])
def test_an_https_api_gets_a_verified_context_per_client(api_url, monkeypatch):
    import pwh.flows.prefect_flows  # noqa: F401  (installs the sharing)

    made = contexts_made(monkeypatch)
    with temporary_settings({PREFECT_API_URL: api_url}):
        get_client(), get_client(), get_client(sync_client=True)
    assert len(made) == 3 and len({id(c) for c in made}) == 3
    assert all(verified(c) for c in made)
    assert not set(map(id, made)) & set(map(id, SHARED._contexts.values()))


def test_an_http_api_shares_one_verified_context_and_an_unverified_setup_gets_its_own(monkeypatch):
    import pwh.flows.prefect_flows  # noqa: F401

    made = contexts_made(monkeypatch)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:1/api"}):
        get_client(), get_client(), get_client(sync_client=True)
        shared = list(SHARED._contexts.values())
        assert len(made) <= 1 and len(shared) == 1 and verified(shared[0])
        with temporary_settings({PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
            before = len(made)
            get_client(), get_client(sync_client=True)
        unverified = made[before:]
        assert len(unverified) == 2 and all(c.verify_mode == ssl.CERT_NONE for c in unverified)
        assert shared[0] not in unverified and verified(shared[0])
