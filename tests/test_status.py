"""`pwh status` as cron and a person run it: real subprocesses over real warehouse files,
their ledgers written by the project's own functions (pwh/warehouse/runs.py) or by a real sync
of the Incoplax simulator. Outcome (failing: failed, abandoned, partial, unknown), data age
against the schedules of pwh.toml, exit statuses 0/5/6/7, the --json shape, the replica by
default and the primary on request, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pwh.flows.engine import PLAIN_STAGES, run_sync
from pwh.flows.incoplax_sync import IncoplaxAdapter
from pwh.simulators.incoplax.dataset import DatasetConfig, IncoplaxDataset
from pwh.simulators.incoplax.simulator import SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.errors import AuthError
from pwh.sources.incoplax.client import IncoplaxClient
from pwh.warehouse.connection import connect
from pwh.warehouse.lock import open_writer
from pwh.warehouse.migrations import migrate
from pwh.warehouse.replica import publish_replica
from pwh.warehouse.runs import RunRecord, save_run

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT_KEYS = {
    "source", "account", "ok", "problems", "last_run", "running_since", "last_success_at", "last_success_age_s",
    "data_at", "data_age_s", "max_age_s", "max_age_rule", "quarantined_rows",
}
LAST_RUN_KEYS = {"run_id", "status", "mode", "started_at", "ended_at", "error", "units_failed", "failed_units", "rows_rejected"}


def pwh(*args: str, cwd: Path = ROOT / "tests") -> subprocess.CompletedProcess:
    """`pwh status` in a folder without a pwh.toml unless the test writes one there."""
    return subprocess.run([sys.executable, "-m", "pwh.cli", "status", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def run(run_id: str, source: str, account: str, *, hours_ago: float, status: str = "success",
        took_h: float = 0.1, **counts) -> RunRecord:
    started = datetime.now(timezone.utc) - timedelta(hours=hours_ago)  # now: the full suite runs for minutes
    return RunRecord(run_id, source, account, "incremental", None, started, status=status,
                     ended_at=None if status == "running" else started + timedelta(hours=took_h), **counts)


def warehouse(path: Path, runs: list[RunRecord], *, publish: bool = True) -> Path:
    con = connect(path)
    try:
        migrate(con)
        for record in runs:
            save_run(con, record)
        if publish:
            publish_replica(con, path)
    finally:
        con.close()
    return path


def accounts(done: subprocess.CompletedProcess) -> dict[str, dict]:
    document = json.loads(done.stdout)
    assert document["exit_status"] == done.returncode
    return {f"{a['source']}/{a['account']}": a for a in document["accounts"]}


def test_fresh_successful_runs_exit_0_with_the_documented_json_shape(tmp_path):
    db = warehouse(tmp_path / "w.duckdb", [
        run("old", "clarity", "lims-eu", hours_ago=30, status="failed", error="HttpError: 500"),
        run("new", "clarity", "lims-eu", hours_ago=2, rows_rejected=4),
        run("op", "openproject", "default", hours_ago=23),
    ])
    done = pwh("--db", str(db), "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"warehouse", "checked_at", "exit_status", "accounts"}
    assert document["warehouse"].endswith("w.replica.duckdb")
    found = accounts(done)
    assert list(found) == ["clarity/lims-eu", "openproject/default"]
    clarity = found["clarity/lims-eu"]
    assert set(clarity) == ACCOUNT_KEYS and set(clarity["last_run"]) == LAST_RUN_KEYS
    assert clarity["ok"] and clarity["problems"] == []
    assert clarity["last_run"]["run_id"] == "new" and clarity["last_run"]["rows_rejected"] == 4
    assert clarity["max_age_s"] == 24 * 3600 and clarity["max_age_rule"] == "no schedule: the default"
    assert 1.8 * 3600 < clarity["data_age_s"] < 2 * 3600
    text = pwh("--db", str(db))
    assert text.returncode == 0, text.stderr
    assert "clarity/lims-eu: ok" in text.stdout and "openproject/default: ok" in text.stdout


def test_a_last_run_that_did_not_succeed_is_failing_exit_5(tmp_path):
    failed_units = {f"proj-{i:03d}": "HttpError: 502" for i in range(14)}
    db = warehouse(tmp_path / "w.duckdb", [
        run("ok-1", "rayteams", "seoul", hours_ago=5),
        run("bad-1", "rayteams", "seoul", hours_ago=1, status="failed",
            error="AuthError: the server refused the token (401); check RAYTEAMS_SEOUL_REFRESH_TOKEN\ntraceback line"),
        run("ok-2", "rayteams", "busan", hours_ago=3),
        run("part", "rayteams", "busan", hours_ago=1, status="partial", units_failed=14,
            failed_units=failed_units, rows_rejected=7),
        run("ok-3", "incoplax", "dom", hours_ago=4),
        run("died", "incoplax", "dom", hours_ago=2, status="abandoned"),
        # An interrupted run (Ctrl-C, SIGTERM) is no success either.
        run("ok-4", "clarity", "lims", hours_ago=4),
        run("stop", "clarity", "lims", hours_ago=1, status="interrupted", error="interrupted by SIGTERM"),
        # A status this version does not know is not taken for a success (fails closed).
        run("ok-6", "clarity", "other", hours_ago=4),
        run("odd", "clarity", "other", hours_ago=1, status="paused"),
        # A run in progress does not hide the last finished one, nor count as a failure.
        run("ok-5", "openproject", "default", hours_ago=2),
        run("now", "openproject", "default", hours_ago=0.1, status="running"),
    ])
    done = pwh("--db", str(db), "--json")
    assert done.returncode == 5, done.stderr
    found = accounts(done)
    assert {k for k, a in found.items() if a["problems"] == ["failing"]} == {
        "rayteams/seoul", "rayteams/busan", "incoplax/dom", "clarity/lims", "clarity/other"}
    seoul = found["rayteams/seoul"]
    assert seoul["last_run"]["status"] == "failed"
    assert seoul["last_run"]["error"] == "AuthError: the server refused the token (401); check RAYTEAMS_SEOUL_REFRESH_TOKEN"
    assert 4.8 * 3600 < seoul["last_success_age_s"] < 5 * 3600
    busan = found["rayteams/busan"]["last_run"]
    assert busan["units_failed"] == 14 and busan["failed_units"] == sorted(failed_units) and busan["rows_rejected"] == 7
    assert found["rayteams/busan"]["data_age_s"] < 3600, "a partial run's data counts as loaded"
    assert found["rayteams/busan"]["last_success_age_s"] > 2.8 * 3600
    op = found["openproject/default"]
    assert op["ok"] and op["last_run"]["run_id"] == "ok-5" and op["running_since"] is not None

    text = pwh("--db", str(db))
    assert text.returncode == 5
    out = text.stdout
    assert "rayteams/seoul: FAILING" in out and "check RAYTEAMS_SEOUL_REFRESH_TOKEN" in out
    assert "traceback line" not in out
    assert "14 failed projects (retried next run): proj-000, proj-001" in out and "proj-009 …" in out
    assert "proj-010" not in out, "the text caps the names"
    assert "7 rows rejected by the last run" in out
    assert "openproject/default: ok" in out and "a run is in progress since" in out


def test_staleness_follows_the_schedules_of_pwh_toml(tmp_path):
    (tmp_path / "pwh.toml").write_text("""
[schedules.rayteams-accounts]
cron = "0 * * * *"

[schedules.lims-weekdays]
source = "clarity"
cron = "0 9 * * 1-5"
account = "lims"

[schedules.op-fast]
source = "openproject"
interval_seconds = 600

[schedules.incoplax]
cron = "*/30 * * * *"
""")
    db = warehouse(tmp_path / "w.duckdb", [
        run("r", "rayteams", "seoul", hours_ago=3),  # hourly: 2 h allowed
        run("c", "clarity", "lims", hours_ago=60),  # weekdays at 9: the weekend gap, 2 × 72 h allowed
        run("o", "openproject", "default", hours_ago=0.25, took_h=0.01),  # every 10 min: 20 min allowed
        run("x", "other", "acct", hours_ago=20),  # no schedule: 24 h
    ])
    done = pwh("--db", str(db), "--json", cwd=tmp_path)
    assert done.returncode == 6, done.stderr
    found = accounts(done)
    assert found["rayteams/seoul"]["problems"] == ["stale"]
    assert found["rayteams/seoul"]["max_age_s"] == 2 * 3600
    assert "schedule 'rayteams-accounts'" in found["rayteams/seoul"]["max_age_rule"]
    assert found["clarity/lims"]["ok"] and found["clarity/lims"]["max_age_s"] == 2 * 72 * 3600
    assert found["openproject/default"]["max_age_s"] == 1200 and found["openproject/default"]["ok"]
    assert found["other/acct"]["ok"]
    # Scheduled but never synced: no data at all.
    assert found["incoplax/*"]["problems"] == ["stale"] and found["incoplax/*"]["last_run"] is None

    tight = pwh("--db", str(db), "--json", "--max-age", "90m", cwd=tmp_path)
    assert tight.returncode == 6
    found = accounts(tight)
    assert {k for k, a in found.items() if a["ok"]} == {"openproject/default"}
    assert all(a["max_age_s"] == 5400 and a["max_age_rule"] == "--max-age" for a in found.values())

    empty = pwh("--db", str(warehouse(tmp_path / "e.duckdb", [])))
    assert empty.returncode == 6 and "no sync has run yet" in empty.stdout, "nothing synced is not fresh"

    failing_too = warehouse(tmp_path / "f.duckdb", [run("bad", "rayteams", "seoul", hours_ago=30, status="failed")])
    done = pwh("--db", str(failing_too), "--config", str(tmp_path / "pwh.toml"))
    assert done.returncode == 7, done.stderr
    assert "rayteams/seoul: FAILING, STALE" in done.stdout and "no data loaded yet" in done.stdout


def test_reads_the_replica_while_a_writer_holds_the_primary_and_the_primary_on_request(tmp_path):
    db = warehouse(tmp_path / "w.duckdb", [run("published", "incoplax", "dom", hours_ago=1)])
    warehouse(db, [run("later", "incoplax", "dom", hours_ago=0.5, status="failed", error="SourceError: boom")],
              publish=False)
    with open_writer(db):  # a sync in progress holds the primary
        during = pwh("--db", str(db), "--json")
        refused = pwh("--db", str(db), "--primary")
    assert during.returncode == 0, during.stderr
    assert accounts(during)["incoplax/dom"]["last_run"]["run_id"] == "published"
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
    assert "in use" in refused.stderr and "without --primary" in refused.stderr
    primary = pwh("--db", str(db), "--primary", "--json")
    assert primary.returncode == 5, primary.stderr
    assert accounts(primary)["incoplax/dom"]["last_run"]["run_id"] == "later"


@pytest.mark.parametrize("case", ["nothing", "no replica", "not a warehouse", "bad max age", "bad cron"])
def test_errors_are_one_line_naming_what_to_do(tmp_path, case):
    db = tmp_path / "w.duckdb"
    args = ["--db", str(db)]
    expected = {
        "nothing": "pwh sync <source> --db", "no replica": f"pwh publish --db {db}",
        "not a warehouse": "not a pwh warehouse", "bad max age": "--max-age takes a positive duration",
        "bad cron": "pwh.toml: [schedules.rayteams] cron = '0 25 * * *' is not a valid cron expression (Bad hour",
    }[case]
    if case == "no replica":
        warehouse(db, [], publish=False)
    elif case == "not a warehouse":
        con = connect(tmp_path / "w.replica.duckdb")
        con.close()
    elif case != "nothing":
        warehouse(db, [run("r", "rayteams", "seoul", hours_ago=1)])
    if case == "bad max age":
        args += ["--max-age", "-3h"]
    if case == "bad cron":
        (tmp_path / "pwh.toml").write_text('[schedules.rayteams]\ncron = "0 25 * * *"\n')
        args += ["--config", str(tmp_path / "pwh.toml")]
    done = pwh(*args)
    assert done.returncode == 1
    assert done.stdout == "" and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("pwh: error: ") and expected in done.stderr


async def test_a_real_sync_then_a_refused_token_reads_as_failing(tmp_path, monkeypatch):
    """The ledger as the engine writes it (no Prefect): a successful sync of the Incoplax
    simulator, then a run whose token is refused."""
    db = tmp_path / "w.duckdb"
    dataset = IncoplaxDataset(DatasetConfig(seed=5, n_projects=9))
    con = connect(db)
    try:
        migrate(con)
        async with serving(build_app(dataset, SimulatorOptions(token="right-token")), any_method=True) as url:
            async with IncoplaxAdapter(IncoplaxClient.connect(url, token="right-token"), account="lab") as adapter:
                first = await run_sync(adapter, con, run_id="good", stages=PLAIN_STAGES)
            with pytest.raises(AuthError):
                async with IncoplaxAdapter(IncoplaxClient.connect(url, token="wrong-token"), account="lab") as adapter:
                    await run_sync(adapter, con, run_id="refused", stages=PLAIN_STAGES)
        [(stored_error,)] = con.execute("SELECT error FROM pipeline.runs WHERE run_id = 'refused'").fetchall()
        publish_replica(con, db)
    finally:
        con.close()
    assert first.status == "success" and first.units_new == 9
    done = pwh("--db", str(db), "--json")
    assert done.returncode == 5, done.stderr
    lab = accounts(done)["incoplax/lab"]
    assert lab["problems"] == ["failing"] and lab["last_run"]["status"] == "failed"
    assert lab["last_run"]["error"] == stored_error.splitlines()[0]
    assert "wrong-token" not in done.stdout
    assert lab["data_age_s"] < 120 and lab["last_success_age_s"] < 120
