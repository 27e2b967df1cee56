"""A sharded sync on a real Prefect work pool (issue 19): a Prefect server, a process
work pool with two workers on 127.0.0.1, a deployment of the shard flow; `pwh sync
rayteams --shards 2 --shard-deployment` starts one flow run per shard (idempotency key
`<parent run>:<shard>`), the workers run them, the parent loads what they staged. The
warehouse equals a single-process sync; a parent retried with the same run id starts no
shard twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from tests.live import CLIENT_ID, TOKEN, VENV_BIN, SimulatorThread, deployments, flow_runs, pwh, pwh_env, stop
from tests.warehouse_checks import content_hashes

ROOT = Path(__file__).parents[1]
POOL = "pwh-shards-test"

DEPLOY = f"""
from pwh.flows.prefect_flows import stage_rayteams_shard
stage_rayteams_shard.from_source(source={str(ROOT)!r}, entrypoint="pwh/flows/prefect_flows.py:stage_rayteams_shard").deploy(
    name="pool", work_pool_name={POOL!r}, build=False, push=False, print_next_steps=False)
"""


def run(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def workers(prefect_server, tmp_path):
    env = {**pwh_env(prefect_server), "PYTHONPATH": str(ROOT)}
    run([str(VENV_BIN / "prefect"), "work-pool", "create", POOL, "--type", "process", "--overwrite"], env)
    run([sys.executable, "-c", DEPLOY], env)
    started = [subprocess.Popen([str(VENV_BIN / "prefect"), "worker", "start", "--pool", POOL, "--name", f"w{i}",
                                 "--limit", "1", "--prefetch-seconds", "5"],
                                env=env, cwd=tmp_path, stdout=open(tmp_path / f"worker{i}.log", "wb"),
                                stderr=subprocess.STDOUT)
               for i in range(2)]
    try:
        yield env
    finally:
        for worker in started:
            stop(worker)


def test_a_sharded_sync_on_a_process_work_pool_equals_a_single_process_sync(prefect_server, workers, tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=23, n_projects=40, invalid_records=2))
    with SimulatorThread(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as sim:
        one, many = tmp_path / "one.duckdb", tmp_path / "many.duckdb"
        common = ("sync", "rayteams", "--base-url", sim.base_url, "--account", "lab", "--quiet")
        single = pwh(*common, "--db", str(one), env=pwh_env(None))
        assert single.wait(120) == 0, single.stderr.read()
        parent = pwh(*common, "--db", str(many), "--shards", "2", "--staging", str(tmp_path / "staging"),
                     "--shard-deployment", "pool", env=workers)
        out, err = parent.communicate(timeout=300)
        assert parent.returncode == 0, out + err
    assert content_hashes(many) == content_hashes(one)
    # The server is the session's: other tests' deployments have runs too.
    [pool] = [d["id"] for d in deployments(prefect_server) if d["name"] == "pool"]
    shards = flow_runs(prefect_server, pool)
    assert len(shards) == 2 and {r["state_type"] for r in shards} == {"COMPLETED"}
    assert {r["parameters"]["part"] for r in shards} == {0, 1}
    [parent_run_id] = {r["parameters"]["parent_run_id"] for r in shards}
    assert {r["idempotency_key"] for r in shards} == {f"{parent_run_id}:lab:0/2", f"{parent_run_id}:lab:1/2"}

    # The parent retried (same run id): starting its shards again starts no new flow run.
    again = subprocess.run([sys.executable, "-c", RESTART, orjson.dumps(shards[0]["parameters"]).decode()],
                           env=workers, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split() == [shards[0]["id"]]
    assert len(flow_runs(prefect_server, pool)) == 2


RESTART = """
import asyncio, sys, orjson
from pwh.flows.rayteams_shards import run_shard_deployment
from pwh.flows.shards import Shard
p = orjson.loads(sys.argv[1])
print(asyncio.run(run_shard_deployment("stage-rayteams-shard/pool",
                                       Shard(p["parent_run_id"], p["account"], p["part"], p["parts"]), p)))
"""
