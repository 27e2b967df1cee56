"""How long a sync waits for another writer of its warehouse file: a scheduled run (a
deployment's flow run) waits its turn, a run started by hand fails at once. Real flow
runs under the Prefect test harness, one of them created from a real deployment."""

from __future__ import annotations

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow

from pwh.flows.runner import SCHEDULED_LOCK_WAIT_S, lock_wait_s


@flow(name="lock-wait-probe")
def lock_wait_probe() -> float:
    return lock_wait_s()


def test_a_direct_flow_run_does_not_wait(prefect_harness, monkeypatch):
    monkeypatch.delenv("PWH_LOCK_WAIT_S", raising=False)
    assert lock_wait_probe() == 0.0


async def test_a_deployment_flow_run_waits_its_turn(prefect_harness, monkeypatch):
    monkeypatch.delenv("PWH_LOCK_WAIT_S", raising=False)
    deployment_id = await (await lock_wait_probe.ato_deployment(name="probe")).apply()
    async with get_client() as client:
        flow_run = await client.create_flow_run_from_deployment(deployment_id)
    assert flow_run.deployment_id == deployment_id
    assert run_flow(lock_wait_probe, flow_run=flow_run) == SCHEDULED_LOCK_WAIT_S


def test_the_environment_overrides_the_wait(prefect_harness, monkeypatch):
    monkeypatch.setenv("PWH_LOCK_WAIT_S", "2.5")
    assert lock_wait_probe() == 2.5
    assert lock_wait_s() == 2.5  # outside any flow run too
