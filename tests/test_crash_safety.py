"""Crash safety (issue 6) and resumption (issue 3): `pwh sync rayteams` run as a
subprocess and killed with SIGKILL at eleven moments across listing, fetch, transform
and load; a second writer on the same file; a kill while deletions are being marked.

Kills come two ways: by timing (the test watches the simulator's request counter and
sends SIGKILL when the sync has made N requests, wherever it then is: fetching a batch
while the previous one is transformed and loaded in a worker thread) and at named points
(`PWH_CRASH_AT`, pwh/warehouse/crashpoints.py: the process SIGKILLs itself inside the load
transaction before COMMIT, right after COMMIT, before a transform, after a fetch).

After every kill the warehouse must open and hold only whole projects; after a rerun it
must equal an uninterrupted sync, and the rerun must fetch only what was not committed.
Each `pwh sync` is a fresh process (~4 s against the session's Prefect server).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import duckdb
import httpx
import pytest

from pwh.flows.rayteams_sync import project_cursor
from pwh.schemas import rayteams
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from tests.live import CLIENT_ID, TOKEN, SimulatorThread, pwh, pwh_env
from tests.warehouse_checks import content_hashes, table_counts

# (kind, value): "requests" → SIGKILL from outside once the sync has made that many
# requests in this run (list = 1, then 2 per project: aggregate + files; batches of 5
# projects = 10 requests); "point" → the process kills itself at a named crash point.
KILLS = [
    ("requests", 1),                      # just listed: planning / first fetch
    ("point", "fetched:1"),               # first batch fetched, nothing loaded
    ("requests", 7),                      # inside the first batch's fetch
    ("point", "transform:1"),             # first batch about to be transformed
    ("requests", 14),                     # second batch fetching, first loading
    ("point", "load-before-commit:1"),    # inside the load transaction, before COMMIT
    ("requests", 26),                     # third batch fetching
    ("point", "load-after-commit:2"),     # just after the second batch's COMMIT
    ("requests", 19),
    ("point", "transform:3"),
    ("requests", 33),
]
N_PROJECTS = 80
SYNC_ARGS = ("--concurrency", "4", "--batch-size", "5", "--quiet")


def options(**kw) -> SimulatorOptions:
    return SimulatorOptions(token=TOKEN, client_id=CLIENT_ID, **kw)


def start_sync(sim: SimulatorThread, db: Path, api_url: str, *extra: str, **env: str) -> subprocess.Popen:
    return pwh("sync", "rayteams", "--base-url", sim.base_url, "--db", str(db), *SYNC_ARGS, *extra,
               env=pwh_env(api_url, **env))


def finish(process: subprocess.Popen, timeout_s: float = 120) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout_s)
    return process.returncode, out, err


def kill_after_requests(process: subprocess.Popen, sim: SimulatorThread, requests: int) -> None:
    """SIGKILL the sync (this test's own child, by its handle) once it has made ``requests``."""
    base = sim.stats()["total"]
    while process.poll() is None:
        if sim.stats()["total"] - base >= requests:
            process.send_signal(signal.SIGKILL)
            return
        time.sleep(0.003)


def committed_state(db: Path) -> dict[str, str | None]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return dict(con.execute(
            "SELECT unit_key, cursor FROM pipeline.unit_state WHERE source = 'rayteams' AND deleted_at IS NULL"
        ).fetchall())
    finally:
        con.close()


def assert_only_whole_projects(db: Path, dataset: RayteamsDataset) -> int:
    """The file opens; every project in it has exactly its rows in every table (and its
    quarantined records), state and data name the same projects. Returns how many."""
    con = duckdb.connect(str(db), read_only=True)  # replays a WAL left by the kill
    try:
        per_table: dict[str, dict[str, int]] = {}
        for table in rayteams.TABLES:
            per_table[table.name] = dict(con.execute(
                f"SELECT {table.unit_column}, count(*) FROM {table.qualified_name} GROUP BY ALL"
            ).fetchall())
        per_table["rejected_records"] = dict(con.execute(
            "SELECT unit_key, count(*) FROM pipeline.rejected_records GROUP BY ALL"
        ).fetchall())
        state = {k for (k,) in con.execute("SELECT unit_key FROM pipeline.unit_state").fetchall()}
    finally:
        con.close()
    projects = set(per_table["projects"])
    assert projects == state, "unit_state and rayteams.projects disagree"
    for pid in projects:
        truth = dataset.project_rows(pid)
        got = {name: rows.get(pid, 0) for name, rows in per_table.items()}
        assert got == truth, f"project {pid} is not whole: {got} != {truth}"
    for name, rows in per_table.items():
        assert set(rows) <= projects, f"{name} holds rows of a project that is not in the warehouse"
    return len(projects)


@pytest.fixture(scope="module")
def sim():
    dataset = RayteamsDataset(DatasetConfig(seed=31, n_projects=N_PROJECTS, invalid_records=3))
    with SimulatorThread(dataset, options(latency_ms=15)) as running:
        yield running


@pytest.fixture(scope="module")
def baseline(sim, prefect_server, tmp_path_factory) -> Path:
    """An uninterrupted sync of the same data."""
    db = tmp_path_factory.mktemp("baseline") / "w.duckdb"
    code, out, err = finish(start_sync(sim, db, prefect_server))
    assert code == 0, err
    assert table_counts(db) == sim.dataset.expected_rows("aggregate")
    return db


def test_sigkill_at_eleven_moments_then_rerun_equals_an_uninterrupted_sync(sim, baseline, prefect_server, tmp_path):
    db = tmp_path / "w.duckdb"
    progress = []
    for kind, value in KILLS:
        if kind == "requests":
            process = start_sync(sim, db, prefect_server)
            kill_after_requests(process, sim, value)
        else:
            process = start_sync(sim, db, prefect_server, PWH_CRASH_AT=value)
        code, _, err = finish(process)
        assert code == -signal.SIGKILL, f"{kind} {value}: the sync was not killed (exit {code}): {err[-500:]}"
        if db.exists():
            progress.append(assert_only_whole_projects(db, sim.dataset))
    # Work was committed along the way, and some was left for the rerun.
    assert 0 < progress[-1] < N_PROJECTS, progress
    assert progress == sorted(progress), "a kill lost committed projects"

    # The rerun fetches exactly the projects not committed (with their current cursor).
    state = committed_state(db)
    to_fetch = {r["_id"] for r in sim.dataset.project_list() if state.get(r["_id"]) != project_cursor(r)}
    assert len(to_fetch) == N_PROJECTS - progress[-1]
    sim.reset_stats()
    code, out, err = finish(start_sync(sim, db, prefect_server))
    assert code == 0, err
    stats = sim.stats()
    assert stats["list"] == 1 and stats["aggregate"] == len(to_fetch) and stats["file"] == len(to_fetch)
    assert f"{len(to_fetch)} new" in out

    assert content_hashes(db) == content_hashes(baseline)
    con = duckdb.connect(str(db), read_only=True)
    ledger = con.execute("SELECT status, count(*) FROM pipeline.runs GROUP BY ALL").fetchall()
    con.close()
    assert dict(ledger) == {"abandoned": len(KILLS), "success": 1}


def test_second_writer_fails_at_once_and_harms_nothing(prefect_server, tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=32, n_projects=40))
    # The first sync crawls (1 s an answer) until the second has been refused, however
    # slowly processes start on a loaded machine; then the simulator speeds up.
    with SimulatorThread(dataset, options(latency_ms=1000)) as slow:
        db = tmp_path / "w.duckdb"
        first = pwh("sync", "rayteams", "--base-url", slow.base_url, "--db", str(db), "--quiet",
                    "--concurrency", "2", "--batch-size", "5", env=pwh_env(prefect_server))
        while slow.stats()["total"] < 3:  # the first sync holds the file and is fetching
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        started = time.monotonic()
        second = pwh("sync", "rayteams", "--base-url", slow.base_url, "--db", str(db), "--quiet",
                     env=pwh_env(prefect_server))
        code, out, err = finish(second)
        elapsed = time.monotonic() - started
        assert first.poll() is None, "the first sync ended before the second was refused"
        slow.options.latency_ms = 0
        assert code == 1
        last = err.strip().splitlines()[-1]  # the CLI's one-line cause (Prefect logs its own)
        assert last.startswith("pwh: error: WarehouseBusyError")
        assert f"is being written by process {first.pid}" in last and "one writer at a time" in last
        code, out, err = finish(first)
    assert code == 0, err
    assert table_counts(db) == dataset.expected_rows("aggregate")
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM pipeline.runs").fetchall() == [("success",)]
    con.close()
    print(f"second writer refused after {elapsed:.1f} s (process start included)")


def test_kill_while_marking_deletions_leaves_none_marked_and_the_rerun_marks_them(sim, prefect_server, tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=33, n_projects=20))
    with SimulatorThread(dataset, options()) as small:
        db = tmp_path / "w.duckdb"
        assert finish(start_sync(small, db, prefect_server))[0] == 0
        removed = httpx.post(f"{small.admin}/mutate", json={
            "seed": 3, "update_share": 0, "add_share": 0, "remove_share": 0.1}, timeout=10).json()["removed"]
        assert len(removed) == 2
        code, _, _ = finish(start_sync(small, db, prefect_server, PWH_CRASH_AT="mark-deleted-before-commit"))
        assert code == -signal.SIGKILL
        con = duckdb.connect(str(db), read_only=True)
        marked = con.execute("SELECT count(*) FROM pipeline.unit_state WHERE deleted_at IS NOT NULL").fetchall()
        rows = con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NOT NULL").fetchall()
        con.close()
        assert marked == rows == [(0,)]
        small.reset_stats()
        code, out, err = finish(start_sync(small, db, prefect_server))
        assert code == 0, err
        assert small.stats()["total"] == 1  # nothing refetched: only the list
    con = duckdb.connect(str(db), read_only=True)
    deleted = {k for (k,) in con.execute(
        "SELECT project_id FROM rayteams.projects WHERE deleted_at IS NOT NULL").fetchall()}
    state = {k for (k,) in con.execute(
        "SELECT unit_key FROM pipeline.unit_state WHERE deleted_at IS NOT NULL").fetchall()}
    con.close()
    assert deleted == state == set(removed)


def test_a_killed_full_refresh_resumes_without_refetching_what_it_loaded(sim, baseline, prefect_server, tmp_path):
    db = tmp_path / "w.duckdb"
    code, _, _ = finish(start_sync(sim, db, prefect_server, "--full-refresh", PWH_CRASH_AT="load-after-commit:2"))
    assert code == -signal.SIGKILL
    loaded = assert_only_whole_projects(db, sim.dataset)
    assert 0 < loaded < N_PROJECTS
    sim.reset_stats()
    code, out, err = finish(start_sync(sim, db, prefect_server, "--full-refresh"))
    assert code == 0, err
    assert sim.stats()["aggregate"] == N_PROJECTS - loaded
    assert f"{loaded} unchanged" in out
    assert content_hashes(db) == content_hashes(baseline)
