"""Scheduled runs (issue 3): schedules from pwh.toml, the writer lock, and — the live
test — `pwh serve` against a real local Prefect server (`prefect server start`, session
fixture) running sync-rayteams every 2 seconds against the simulator, until two scheduled
runs have completed. Overlapping runs of the deployment must be skipped, never run
side by side."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
import yaml
from prefect.cli.deploy._models import PrefectYamlModel

from pwh.flows.schedules import (
    DEFAULT_CRON,
    SCHEDULABLE_FLOWS,
    Schedule,
    ScheduleError,
    check_parameters,
    load_schedules,
    parse_schedules,
    select,
    to_deployment,
)
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from pwh.warehouse.connection import WarehouseBusyError
from pwh.warehouse.lock import lock_path, writer_lock
from tests.live import (
    CLIENT_ID,
    TOKEN,
    SimulatorThread,
    deployments,
    flow_runs,
    pwh,
    pwh_env,
    stop,
)
from tests.warehouse_checks import table_counts

# ---------------------------------------------------------------- schedules from config


def test_schedules_default_to_hourly_and_take_flow_parameters(tmp_path):
    config = tmp_path / "pwh.toml"
    config.write_text(
        '[schedules.rayteams]\nbase_url = "https://example.invalid/v1.0"\naccount = "lab-a"\n\n'
        '[schedules.lab-b]\nsource = "rayteams"\ncron = "30 2 * * *"\nbase_url = "https://b.invalid/v1.0"\n'
        'batch_size = 100\ndb_path = "w.duckdb"\n\n[schedules.off]\nsource = "rayteams"\nenabled = false\n'
    )
    first, second = select(load_schedules(config))
    assert (first.name, first.source, first.cron, first.interval_seconds) == ("rayteams", "rayteams", DEFAULT_CRON, None)
    assert first.parameters == {"base_url": "https://example.invalid/v1.0", "account": "lab-a"}
    assert (second.source, second.cron, second.parameters["batch_size"]) == ("rayteams", "30 2 * * *", 100)
    assert second.parameters["db_path"] == str(tmp_path.resolve() / "w.duckdb")  # beside the file
    # CLI choices: one schedule, an interval instead of cron, an extra parameter.
    [only] = select(load_schedules(config), only=["lab-b"], interval_seconds=5, parameters={"db_path": "/w.duckdb"})
    assert (only.name, only.cron, only.interval_seconds, only.parameters["db_path"]) == ("lab-b", None, 5.0, "/w.duckdb")
    deployment = to_deployment(only)
    assert deployment.name == "lab-b" and deployment.entrypoint == "pwh.flows.prefect_flows.sync_rayteams"
    assert deployment.concurrency_options.collision_strategy.value == "CANCEL_NEW"
    assert deployment.concurrency_limit == 1


def test_secrets_and_unknown_parameters_are_refused():
    with pytest.raises(ScheduleError, match="looks like a secret"):
        select(parse_schedules({"schedules": {"rayteams": {"token": "x"}}}))
    with pytest.raises(ScheduleError, match="looks like a secret"):
        select([], only=["rayteams"], parameters={"client_id": "x"})
    with pytest.raises(ScheduleError, match="no parameter 'colour'"):
        select(parse_schedules({"schedules": {"rayteams": {"colour": "red"}}}))
    with pytest.raises(ScheduleError, match="unknown source"):
        select([], only=["nosuch"])


def test_serve_refuses_to_start_without_a_server_or_a_schedule(tmp_path):
    env = pwh_env(None)
    code_out_err = pwh("serve", "--source", "rayteams", env=env, cwd=tmp_path).communicate(timeout=120)
    assert "PREFECT_API_URL" in code_out_err[1]
    code_out_err = pwh("serve", env={**env, "PREFECT_API_URL": "http://127.0.0.1:9/api"}, cwd=tmp_path).communicate(timeout=120)
    assert "nothing to serve" in code_out_err[1]


# ---------------------------------------------------------------- the writer lock


def test_writer_lock_refuses_at_once_or_waits(tmp_path):
    db = tmp_path / "w.duckdb"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with writer_lock(db):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with pytest.raises(WarehouseBusyError, match=f"being written by process {os.getpid()}"):
        with writer_lock(db):
            pass
    assert time.monotonic() - started < 1  # a manual sync fails at once
    threading.Timer(1.0, release.set).start()
    started = time.monotonic()
    with writer_lock(db, wait_s=10):  # a scheduled run waits for the holder to finish
        waited = time.monotonic() - started
    thread.join()
    assert 0.8 < waited < 5
    assert oct(lock_path(db).stat().st_mode & 0o777) == "0o600"


# ---------------------------------------------------------------- live: pwh serve


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_pwh_serve_runs_scheduled_syncs_against_a_real_prefect_server(prefect_server, tmp_path):
    """LIVE: a real Prefect server, `pwh serve` and the simulator; ~30–90 s."""
    dataset = RayteamsDataset(DatasetConfig(seed=41, n_projects=15))
    with SimulatorThread(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID, latency_ms=20)) as sim:
        db = tmp_path / "w.duckdb"
        (tmp_path / "pwh.toml").write_text(
            f'[schedules.rayteams-live]\nsource = "rayteams"\ninterval_seconds = 2\n'
            f'base_url = "{sim.base_url}"\ndb_path = "{db}"\nbatch_size = 5\n'
        )
        server = pwh("serve", env=pwh_env(prefect_server), cwd=tmp_path)  # reads ./pwh.toml
        try:
            deadline = time.monotonic() + 240
            deployment_id = None
            while True:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "no two completed scheduled runs in time"
                if deployment_id is None:
                    found = [d for d in deployments(prefect_server) if d["name"] == "rayteams-live"]
                    deployment_id = found[0]["id"] if found else None
                else:
                    runs = flow_runs(prefect_server, deployment_id)
                    if sum(r["state_type"] == "COMPLETED" for r in runs) >= 2:
                        break
                time.sleep(1)
        finally:
            stop(server)
    runs = flow_runs(prefect_server, deployment_id)
    completed = sorted((r for r in runs if r["state_type"] == "COMPLETED"), key=lambda r: r["start_time"])
    assert all(r["auto_scheduled"] for r in completed)

    # Never two at once: the runs that ran did so one after the other; the ones that came
    # due meanwhile were cancelled by the deployment's concurrency limit (CANCEL_NEW).
    ran = sorted((r for r in runs if r["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "RUNNING")),
                 key=lambda r: r["start_time"])
    for before, after in zip(ran, ran[1:]):
        assert before["end_time"] and _time(before["end_time"]) <= _time(after["start_time"])
    skipped = [r for r in runs if r["state_type"] == "CANCELLED"
               and "concurrency limit reached" in (r["state"]["message"] or "")]
    assert skipped, "with a 2 s interval and runs longer than that, some runs must have been skipped"

    # Parameters hold no secret; the runs wrote the warehouse and the ledger.
    assert TOKEN not in json.dumps(runs) and CLIENT_ID not in json.dumps(runs)
    assert set(completed[0]["parameters"]) == {"base_url", "db_path", "batch_size"}
    assert table_counts(db) == dataset.expected_rows("aggregate")
    con = duckdb.connect(str(db), read_only=True)
    ledger = con.execute(
        "SELECT run_id, status, mode, units_new, units_unchanged, requests FROM pipeline.runs ORDER BY started_at"
    ).fetchall()
    con.close()
    by_id = {row[0]: row for row in ledger}
    assert set(by_id) <= {r["id"] for r in ran}  # a skipped run never touched the warehouse
    first, second = by_id[completed[0]["id"]], by_id[completed[1]["id"]]
    assert first[1:4] == ("success", "incremental", 15)
    assert second[1:] == ("success", "incremental", 0, 15, 1)  # no change upstream: the list only


def test_prefect_yaml_deploys_known_flows_with_one_run_at_a_time_and_no_secrets():
    """prefect.yaml (for `prefect deploy --all`) parses as Prefect reads it and names the
    flows `pwh serve` serves, with the same limits and no secret in any parameter."""
    project = PrefectYamlModel.model_validate(yaml.safe_load((Path(__file__).parents[1] / "prefect.yaml").read_text()))
    assert project.deployments
    sources = {target: source for source, target in SCHEDULABLE_FLOWS.items()}
    for deployment in project.deployments:
        path, _, name = deployment.entrypoint.partition(":")
        source = sources[f"{path.removesuffix('.py').replace('/', '.')}:{name}"]
        check_parameters(Schedule(deployment.name, source, parameters=deployment.parameters))
        assert deployment.concurrency_limit.limit == 1
        assert deployment.concurrency_limit.collision_strategy == "CANCEL_NEW"
        assert deployment.schedules and deployment.schedules[0].cron
        assert deployment.work_pool.name == "pwh-process"
