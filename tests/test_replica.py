"""Readers never blocked: scheduled-style syncs run back to back (with simulator changes
between them) while another process queries the readers' replica continuously, and keeps
one connection open the whole time like a forgotten notebook. Zero reader errors; no
sync ever meets a lock (PWH_LOCK_WAIT_S=0: a sync that found the file taken would fail
at once); every publish reaches the reader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.warehouse.replica import replica_path

TOKEN, CLIENT_ID = "tok-replica-SECRET-5c1d", "client-replica"
# A minute by default, as the acceptance asks; PWH_READER_TEST_S shortens it locally.
DURATION_S = float(os.environ.get("PWH_READER_TEST_S", "60"))

READER = r"""
import json, os, sys, time
import duckdb

replica, stop = sys.argv[1], sys.argv[2]
queries, errors, seen = 0, [], []
started = time.monotonic()
last = False
while not last:
    last = os.path.exists(stop)  # one more round after the stop: it sees the final publish
    try:
        # Connect per query, as the dashboard does: a connection kept open pins its snapshot.
        con = duckdb.connect(replica, read_only=True)
        try:
            runs = con.execute("SELECT count(*) FROM pipeline.runs").fetchall()[0][0]
            con.execute("SELECT source, lifecycle, count(*) FROM analytics.projects GROUP BY ALL").fetchall()
            con.execute("SELECT sum(events) FROM analytics.activity_daily").fetchall()
        finally:
            con.close()
        if not seen or seen[-1] != runs:
            seen.append(runs)
        queries += 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
    time.sleep(0.02)
print(json.dumps({"queries": queries, "errors": errors, "runs_seen": seen, "seconds": time.monotonic() - started}))
"""

# The forgotten notebook: one connection opened on the replica and never closed.
NOTEBOOK = r"""
import json, os, sys, time
import duckdb

replica, stop = sys.argv[1], sys.argv[2]
con = duckdb.connect(replica, read_only=True)
before = con.execute("SELECT count(*) FROM pipeline.runs").fetchall()[0][0]
while not os.path.exists(stop):
    time.sleep(0.2)
after = con.execute("SELECT count(*) FROM pipeline.runs").fetchall()[0][0]
con.close()
print(json.dumps([before, after]))
"""


@pytest.fixture(autouse=True)
def env(monkeypatch):
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("PWH_LOCK_WAIT_S", "0")


async def test_readers_query_the_replica_while_syncs_run_and_nobody_waits(tmp_path, prefect_harness):
    from pwh.flows.prefect_flows import sync_rayteams

    db = tmp_path / "warehouse.duckdb"
    stop = tmp_path / "stop"
    dataset = RayteamsDataset(DatasetConfig(seed=41, n_projects=30))
    summaries, sync_seconds = [], []
    async with running_simulator(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as base_url:
        summaries.append(await sync_rayteams(base_url=base_url, db_path=str(db), batch_size=8))
        readers = [subprocess.Popen([sys.executable, "-c", script, str(replica_path(db)), str(stop)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for script in (READER, NOTEBOOK)]
        try:
            deadline = time.monotonic() + DURATION_S
            round_ = 0
            while time.monotonic() < deadline or round_ < 3:
                round_ += 1
                dataset.mutate(seed=round_, update_share=0.2, add_share=0.05, remove_share=0.03)
                started = time.monotonic()
                summaries.append(await sync_rayteams(base_url=base_url, db_path=str(db), batch_size=8))
                sync_seconds.append(time.monotonic() - started)
        finally:
            stop.touch()
            outputs = [reader.communicate(timeout=60) for reader in readers]
    for reader, (_, err) in zip(readers, outputs):
        assert reader.returncode == 0, err[-2000:]
    result, notebook = (json.loads(out) for out, _ in outputs)
    print(f"\nreader: {result['queries']} queries in {result['seconds']:.0f} s, runs seen {result['runs_seen']}; "
          f"{len(sync_seconds)} syncs, {min(sync_seconds):.1f}–{max(sync_seconds):.1f} s each")
    assert result["errors"] == []
    assert all(s["status"] == "success" for s in summaries), [s["status"] for s in summaries]
    assert result["seconds"] >= min(DURATION_S, 60) * 0.9
    assert result["queries"] >= max(10, DURATION_S)  # ≥ 1 a second even on a loaded machine
    # Every publish reached the reader: it saw the run count grow to the last sync's.
    assert result["runs_seen"][-1] == len(summaries) and len(result["runs_seen"]) >= 3
    # The connection held open all along kept its snapshot and blocked nobody.
    assert notebook == [1, 1]
