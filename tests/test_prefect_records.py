"""What a flow run leaves on the Prefect server, read back through Prefect's own client: a
summary artifact with the run's counts (a failed run's too) and the engine's log lines in
the flow run's logs; never the token, and the console sees no more than before."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from uuid import UUID

import duckdb
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from pwh.flows.prefect_flows import sync_incoplax
from pwh.simulators.incoplax.dataset import DatasetConfig, IncoplaxDataset
from pwh.simulators.incoplax.simulator import SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.errors import AuthError

pytestmark = pytest.mark.usefixtures("prefect_harness")

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "records-SECRET-token-41c7"
WRONG = "records-WRONG-token-93aa"


async def records_of(flow_run_id: str) -> tuple[list, list[str]]:
    await APILogHandler.aflush()  # logs reach the server in batches
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])))
    return artifacts, [entry.message for entry in logs]


async def test_a_flow_run_carries_its_counts_and_the_engines_log_lines(tmp_path: Path, monkeypatch, caplog):
    dataset = IncoplaxDataset(DatasetConfig(seed=41, n_projects=14))
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("INCOPLAX_TOKEN", TOKEN)
    caplog.set_level(logging.WARNING)
    async with serving(build_app(dataset, SimulatorOptions(token=TOKEN)), any_method=True) as url:
        summary = await sync_incoplax(base_url=url, db_path=str(db), account="Lab_Seoul", page_size=5, batch_size=4)
        monkeypatch.setenv("INCOPLAX_TOKEN", WRONG)
        with pytest.raises(AuthError):
            await sync_incoplax(base_url=url, db_path=str(db), account="Lab_Seoul", page_size=5)
    assert summary["status"] == "success" and summary["units_new"] == 14

    artifacts, messages = await records_of(summary["run_id"])
    [artifact] = artifacts
    assert artifact.key == "sync-incoplax-lab-seoul" and artifact.type == "markdown"
    assert "### Sync incoplax/Lab_Seoul: success" in artifact.data
    assert "| projects listed | 14 |" in artifact.data and "| new | 14 |" in artifact.data
    assert "| rows loaded: `projects` | 14 |" in artifact.data
    assert any(f"incoplax/Lab_Seoul incremental run {summary['run_id']}: success" in m for m in messages), messages

    con = duckdb.connect(str(db), read_only=True)
    try:
        [(failed_run,)] = con.execute("SELECT run_id FROM pipeline.runs WHERE status = 'failed'").fetchall()
    finally:
        con.close()
    artifacts, messages = await records_of(failed_run)
    [artifact] = [a for a in artifacts if a.type == "markdown"]  # beside Prefect's own result record
    assert "### Sync incoplax/Lab_Seoul: failed" in artifact.data and "| projects listed | 0 |" in artifact.data
    assert any(f"run {failed_run}: failed" in m for m in messages), messages
    everything = artifact.data + "\n".join(messages)
    assert TOKEN not in everything and WRONG not in everything
    # The console (the root logger's handlers) saw no INFO line of ours: only what it saw before.
    assert not [r for r in caplog.records if r.name.startswith("pwh") and r.levelno < logging.WARNING]
    # And once the runs are over, the pwh loggers are as they were.
    assert logging.getLogger("pwh").propagate and not logging.getLogger("pwh").handlers


async def failed_run_events(flow_run_id: str) -> list[dict]:
    """The events Prefect emitted for a flow run (they reach the server asynchronously)."""
    async with get_client() as client:
        for _ in range(100):
            answer = await client.request("POST", "/events/filter", json={
                "filter": {"resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 50})
            events = answer.json()["events"]
            if any(e["event"] == "prefect.flow-run.Failed" for e in events):
                return events
            await asyncio.sleep(0.2)
    raise AssertionError(f"no Failed event for flow run {flow_run_id}")


class Colour(Enum):
    RED = "red"


def _nested(depth: int) -> object:
    value: object = []
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def _cycle() -> list:
    value: list = [1]
    value.append(value)
    return value


@pytest.mark.parametrize("value", [
    "text", "", 0, -7, 2.5, float("nan"), float("inf"), True, None, [], ["a", "b"], [1, [2.5, None]],
    {"code": "X-1", "nested": {"list": [1, "two"]}}, {}, _nested(3), _nested(40), {1: "int key"},
    ("a", "tuple"), {"a", "set"}, Path("/data/w.duckdb"), datetime(2026, 12, 7, 23, 0, tzinfo=timezone.utc),
    Colour.RED, [Path("/in/a/list")], {"when": datetime(2026, 1, 1)}, _cycle(), object(),
], ids=repr)
def test_a_sync_flow_stores_parameters_as_prefects_encoder_does(value):
    """What a sync flow stores for a parameter is what Prefect's own encoder would store
    (JSON as it is, anything else through the encoder), in the call's order."""
    from prefect import Flow

    from pwh.flows.prefect_flows import sync_flow

    def fn(first: object, value: object, last: str = "z") -> None: ...

    made = sync_flow("parameters")(fn)
    parameters = {"first": "a", "value": value, "last": "z"}
    ours, prefects = made.serialize_parameters(parameters), Flow.serialize_parameters(made, parameters)
    assert list(ours.items()) == list(prefects.items())


FLOW_CALL = """
import asyncio, json, sys
from pwh.flows.prefect_flows import sync_incoplax
summary = asyncio.run(sync_incoplax(base_url=sys.argv[1], db_path=sys.argv[2], account="Lab_Seoul", page_size=5,
                                    batch_size=4, mask=["code", "opts.title"], filter={"code": sys.argv[3]}))
print(json.dumps({"run_id": summary["run_id"], "units_new": summary["units_new"],
                  "fastapi": sorted(m for m in sys.modules if m.split(".")[0] == "fastapi")}))
"""


async def test_a_flow_run_stores_its_parameters_as_called_and_the_call_imports_no_fastapi(tmp_path: Path):
    """A sync flow called in a fresh process (as `pwh sync` with a Prefect API runs it): its
    flow run on the server holds the call's parameters, lists and dicts as JSON, and the
    process never imported FastAPI (Prefect's parameter encoder; pwh/flows/prefect_flows.py)."""
    from prefect.settings import PREFECT_API_URL

    dataset = IncoplaxDataset(DatasetConfig(seed=43, n_projects=9))
    code = dataset.projects[sorted(dataset.projects)[2]]["code"]
    selected = [pid for pid, project in dataset.projects.items() if project["code"] == code]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(INCOPLAX_TOKEN=TOKEN, PREFECT_API_URL=PREFECT_API_URL.value(), PREFECT_LOGGING_LEVEL="WARNING",
               PREFECT_HOME=str(tmp_path / "prefect-home"), PYTHONPATH=str(ROOT))
    async with serving(build_app(dataset, SimulatorOptions(token=TOKEN)), any_method=True) as url:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FLOW_CALL, url, str(tmp_path / "w.duckdb"), code, env=env, cwd=str(tmp_path),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(child.communicate(), timeout=300)
    assert child.returncode == 0, err.decode()[-3000:]
    called = json.loads(out.decode().strip().splitlines()[-1])
    assert called["units_new"] == len(selected) and called["fastapi"] == []
    async with get_client() as client:
        flow_run = await client.read_flow_run(UUID(called["run_id"]))
    called_with = {
        "base_url": url, "db_path": str(tmp_path / "w.duckdb"), "account": "Lab_Seoul", "page_size": 5,
        "batch_size": 4, "mask": ["code", "opts.title"], "filter": {"code": code},
        "order": ["id"], "max_response_bytes": None, "timeout_s": 30.0, "allow_mass_delete": False,  # defaults
    }
    assert {name: flow_run.parameters.get(name) for name in called_with} == called_with


async def test_the_documented_automation_is_accepted_and_matches_a_failed_sync_only(tmp_path, monkeypatch):
    """docs/alert-failed-sync.yaml, as `prefect automation create --from-file` reads it,
    is accepted by the server, and its trigger covers the very event a failed sync flow run
    emits, not the same run's other events nor another flow's failure."""
    from prefect.blocks.notifications import SlackWebhook
    from prefect.events.schemas.automations import AutomationCore
    from prefect.server.events.schemas.automations import EventTrigger
    from prefect.server.events.schemas.events import ReceivedEvent

    block_id = await SlackWebhook(url="https://hooks.slack.invalid/services/T0/B0/x").save("ops-alerts", overwrite=True)
    data = yaml.safe_load((ROOT / "docs" / "alert-failed-sync.yaml").read_text())
    data["actions"][0]["block_document_id"] = str(block_id)
    async with get_client() as client:
        automation_id = await client.create_automation(AutomationCore.model_validate(data))
        stored = await client.read_automation(automation_id)
    assert stored is not None and stored.name == "pwh sync failed"
    assert stored.actions[0].type == "send-notification"

    monkeypatch.setenv("INCOPLAX_TOKEN", WRONG)
    async with serving(build_app(IncoplaxDataset(DatasetConfig(seed=2, n_projects=3)),
                                 SimulatorOptions(token=TOKEN)), any_method=True) as url:
        with pytest.raises(AuthError):
            await sync_incoplax(base_url=url, db_path=str(tmp_path / "w.duckdb"), account="a")
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        [(flow_run_id,)] = con.execute("SELECT run_id FROM pipeline.runs").fetchall()
    finally:
        con.close()
    events = [ReceivedEvent.model_validate(e) for e in await failed_run_events(flow_run_id)]
    trigger = EventTrigger.model_validate(stored.trigger.model_dump())
    covered = {e.event for e in events if trigger.covers(e)}
    assert covered == {"prefect.flow-run.Failed"}, covered
    [failed] = [e for e in events if e.event == "prefect.flow-run.Failed"]
    other_flow = failed.model_copy(update={"related": [
        r.model_copy(update={"root": {**r.root, "prefect.resource.name": "nightly-report"}}) for r in failed.related]})
    assert not trigger.covers(other_flow)
