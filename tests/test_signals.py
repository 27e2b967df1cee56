"""Ctrl-C, SIGTERM and SIGKILL of a real `pwh sync` (issue 18), and the plain run of a
hand-run sync without a Prefect API (issue 17): a subprocess in its own process group
against the RAYTeams simulator with latency, so the sync takes seconds and the signal
lands mid-sync."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import orjson
import pytest

from pwh.schemas.rayteams import PROJECTS as PROJECTS_TABLE
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from tests.live import CLIENT_ID, TOKEN, SimulatorThread, flow_runs, pwh, pwh_env
from tests.warehouse_checks import content_hashes

PROJECTS = 40
# Two requests in flight and 4 projects a batch: ~10 batches of ~0.3 s each.
SYNC_ARGS = ("--quiet", "--concurrency", "2", "--batch-size", "4")


@pytest.fixture(scope="module")
def slow_sim():
    dataset = RayteamsDataset(DatasetConfig(seed=18, n_projects=PROJECTS))
    with SimulatorThread(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID, latency_ms=150)) as sim:
        yield sim


@pytest.fixture(scope="module")
def clean_sync(slow_sim, tmp_path_factory) -> Path:
    """A sync that was never interrupted: what every resumed warehouse must equal."""
    db = tmp_path_factory.mktemp("clean") / "w.duckdb"
    code, _, err = finish(start(slow_sim, db, tmp_path_factory.mktemp("home")))
    assert code == 0, err
    return db


def plain_env(home: Path, **extra: str) -> dict[str, str]:
    """No Prefect API anywhere: not in the environment, not in a profile (own PREFECT_HOME)."""
    env = pwh_env(None, PREFECT_HOME=str(home), **extra)
    env.pop("PREFECT_PROFILE", None)
    return env


def start(sim: SimulatorThread, db: Path, home: Path, *extra: str) -> subprocess.Popen:
    return pwh("sync", "rayteams", "--base-url", sim.base_url, "--db", str(db), *SYNC_ARGS, *extra,
               env=plain_env(home), start_new_session=True)


def finish(process: subprocess.Popen, timeout_s: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout_s)
    return process.returncode, out, err


def wait_for_requests(process: subprocess.Popen, sim: SimulatorThread, requests: int) -> None:
    base = sim.stats()["total"]
    deadline = time.monotonic() + 60
    while sim.stats()["total"] - base < requests:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the sync made no progress"
        time.sleep(0.02)


def group_is_gone(pgid: int, timeout_s: float = 5.0) -> bool:
    """No process of the group is left (the sync's children included)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def ledger(db: Path) -> list[tuple[str, str | None]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT status, error FROM pipeline.runs ORDER BY started_at").fetchall()
    finally:
        con.close()


def ledger_rows(db: Path) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return orjson.loads(con.execute("SELECT rows_loaded FROM pipeline.runs").fetchone()[0])
    finally:
        con.close()


def loaded(db: Path) -> tuple[int, int]:
    """(projects with committed state, projects with rows)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        state = con.execute("SELECT count(*) FROM pipeline.unit_state WHERE source = 'rayteams'").fetchone()[0]
        rows = con.execute(f"SELECT count(DISTINCT {PROJECTS_TABLE.unit_column}) FROM {PROJECTS_TABLE.qualified_name}").fetchone()[0]
        return state, rows
    finally:
        con.close()


@pytest.mark.parametrize("signum, to_group", [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-to-the-group", "sigterm-to-the-process"])
def test_a_signal_stops_the_sync_keeps_its_batches_and_the_next_run_completes(
        slow_sim, clean_sync, tmp_path, signum, to_group):
    db = tmp_path / "w.duckdb"
    process = start(slow_sim, db, tmp_path)
    wait_for_requests(process, slow_sim, 1 + 12)  # the list, then 3 batches' projects
    sent = time.monotonic()
    if to_group:
        os.killpg(process.pid, signum)  # what the terminal does on Ctrl-C
    else:
        process.send_signal(signum)
    code, out, err = finish(process)
    stopped_in = time.monotonic() - sent
    assert code == 128 + signum, (code, out, err)
    assert stopped_in < 5, stopped_in
    assert err.strip().splitlines() == [(
        f"pwh: error: interrupted by {signal.Signals(signum).name}; projects loaded so far are committed, "
        "the next run resumes")]
    assert group_is_gone(process.pid)
    assert ledger(db) == [("interrupted", f"interrupted by {signal.Signals(signum).name}")]
    state, rows = loaded(db)
    assert 0 < state == rows < PROJECTS  # every committed batch kept whole, the run stopped early
    assert ledger_rows(db)["projects"] == state  # the ledger counts every committed batch

    code, out, err = finish(start(slow_sim, db, tmp_path))
    assert code == 0, err
    assert [status for status, _ in ledger(db)] == ["interrupted", "success"]
    assert f"{state} unchanged" in out  # resumed: what the interrupted run committed is not refetched
    assert content_hashes(db) == content_hashes(clean_sync)


def test_sigkill_leaves_no_process_behind_and_the_next_run_completes(slow_sim, clean_sync, tmp_path):
    db = tmp_path / "w.duckdb"
    process = start(slow_sim, db, tmp_path)
    wait_for_requests(process, slow_sim, 1 + 8)
    process.send_signal(signal.SIGKILL)  # the process only: nothing it started may outlive it
    process.communicate(timeout=30)
    assert group_is_gone(process.pid)
    code, _, err = finish(start(slow_sim, db, tmp_path))
    assert code == 0, err
    assert [status for status, _ in ledger(db)] == ["abandoned", "success"]
    assert content_hashes(db) == content_hashes(clean_sync)


@pytest.mark.parametrize("delay_s", [0.05, 0.3])
def test_ctrl_c_before_the_sync_starts_is_one_line_and_exit_130(slow_sim, tmp_path, delay_s):
    """While the commands are still being imported (or the sync is being set up): no
    traceback from whichever import the signal interrupted, one line, exit 130."""
    process = start(slow_sim, tmp_path / "w.duckdb", tmp_path)
    time.sleep(delay_s)
    os.killpg(process.pid, signal.SIGINT)
    code, out, err = finish(process)
    assert code == 130
    [line] = err.strip().splitlines()
    assert line.startswith("pwh: ") and "interrupted" in line and "Traceback" not in err + out
    assert group_is_gone(process.pid)


def test_prefect_without_an_api_is_refused_so_no_temporary_server_can_be_orphaned(slow_sim, tmp_path):
    """Prefect's temporary server would outlive a SIGKILLed pwh (and drop the run's records):
    a hand run never starts one. `--prefect` with no API configured fails in one line."""
    process = start(slow_sim, tmp_path / "w.duckdb", tmp_path, "--prefect")
    code, out, err = finish(process)
    assert code == 1
    [line] = err.strip().splitlines()
    assert "PREFECT_API_URL" in line and "--prefect" in line
    assert group_is_gone(process.pid) and "Traceback" not in err + out
    assert not (tmp_path / "w.duckdb").exists()  # refused before anything started


def test_a_hand_run_without_a_prefect_api_never_imports_prefect(slow_sim, tmp_path):
    db = tmp_path / "w.duckdb"
    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pwh.cli", "sync", "rayteams",
         "--base-url", slow_sim.base_url, "--db", str(db), *SYNC_ARGS],
        env=plain_env(tmp_path), capture_output=True, text=True, timeout=120, start_new_session=True, check=False)
    assert process.returncode == 0, process.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in process.stderr.splitlines() if "import time:" in line}
    assert "polars" in imported and not {m for m in imported if m.split(".")[0] == "prefect"}
    con = duckdb.connect(str(db), read_only=True)
    try:
        [(run_id, status)] = con.execute("SELECT run_id, status FROM pipeline.runs").fetchall()
    finally:
        con.close()
    assert status == "success" and len(run_id) == 36  # a fresh uuid: no flow run to take it from


def test_a_hand_run_with_nothing_changed_imports_no_module_it_does_not_use(slow_sim, clean_sync, tmp_path):
    """A no-change `pwh sync --quiet` lists, plans and records its run: it imports neither
    Prefect, nor pyarrow (~30 MB, only a load or a ledger publish converts frames), nor
    rich (no progress bar is shown), nor pandera's polars backend (only a batch the one-pass
    check fails is validated by pandera itself)."""
    db = tmp_path / "w.duckdb"
    for name in ("w.duckdb", "w.replica.duckdb"):
        shutil.copyfile(clean_sync.with_name(name), tmp_path / name)
    process = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "pwh.cli", "sync", "rayteams",
         "--base-url", slow_sim.base_url, "--db", str(db), *SYNC_ARGS],
        env=plain_env(tmp_path), capture_output=True, text=True, timeout=120, start_new_session=True, check=False)
    assert process.returncode == 0, process.stderr[-2000:]
    assert f"{PROJECTS:,} unchanged" in process.stdout
    modules = {line.rsplit("|", 1)[-1].strip() for line in process.stderr.splitlines() if "import time:" in line}
    imported = {module.split(".")[0] for module in modules}
    assert {"duckdb", "polars", "aiohttp"} <= imported
    assert not imported & {"prefect", "pyarrow", "rich"}
    assert not {module for module in modules if module.startswith(("pandera.polars", "pandera.backends.polars"))}


def test_without_prefect_a_missing_secret_says_to_set_the_variable(slow_sim, tmp_path):
    env = plain_env(tmp_path)
    env.pop("RAYTEAMS_TOKEN")
    process = pwh("sync", "rayteams", "--base-url", slow_sim.base_url, "--db", str(tmp_path / "w.duckdb"),
                  "--quiet", env=env)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    [line] = err.strip().splitlines()
    assert "RAYTEAMS_TOKEN is not set: export it" in line


def test_with_a_prefect_api_in_the_profile_a_hand_run_is_a_flow_run_and_stops_on_sigterm(
        slow_sim, clean_sync, prefect_server, tmp_path):
    """The API only in the active profile (not the environment): `pwh sync` is a flow run
    on that server; SIGTERM stops it like a plain run; --no-prefect then runs plain."""
    (tmp_path / "profiles.toml").write_text(f'active = "lab"\n[profiles.lab]\nPREFECT_API_URL = "{prefect_server}"\n')
    db = tmp_path / "w.duckdb"
    process = start(slow_sim, db, tmp_path)
    wait_for_requests(process, slow_sim, 1 + 8)
    process.send_signal(signal.SIGTERM)
    code, _, err = finish(process)
    assert code == 143, err[-3000:]
    assert "pwh: error: interrupted by SIGTERM" in err
    assert group_is_gone(process.pid)
    code, _, err = finish(start(slow_sim, db, tmp_path, "--no-prefect"))
    assert code == 0, err
    con = duckdb.connect(str(db), read_only=True)
    try:
        runs = con.execute("SELECT run_id, status FROM pipeline.runs ORDER BY started_at").fetchall()
    finally:
        con.close()
    assert [status for _, status in runs] == ["interrupted", "success"]
    flow_run_ids = {run["id"] for run in flow_runs(prefect_server)}
    assert runs[0][0] in flow_run_ids and runs[1][0] not in flow_run_ids
    assert content_hashes(db) == content_hashes(clean_sync)
