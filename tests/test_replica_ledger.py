"""Failures reach readers (issue 18): after any run, failed or not, the readers' replica
carries the primary's run ledger, and never a failed run's data. `pwh sync` runs as a real
subprocess against the RAYTeams simulator: a good sync, then a run whose token is refused
or that the mass-deletion guard refuses; readers (`pwh status` and `pwh report` as
subprocesses, the dashboard's page) see the failure on the replica, whose data is what the
good sync published. A ledger that does not read in the primary is never published."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pytest

from pwh.dashboard import render, snapshot
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from pwh.warehouse.connection import connect
from pwh.warehouse.lock import open_writer
from pwh.warehouse.migrations import migrate
from pwh.warehouse.replica import ledger_for_readers, publish_replica, replica_path
from pwh.warehouse.runs import RunRecord, save_run
from tests.live import CLIENT_ID, TOKEN, SimulatorThread, pwh, pwh_env
from tests.test_dashboard import text_of
from tests.warehouse_checks import content_hashes, table_counts

SYNC_ARGS = ("--concurrency", "4", "--quiet")
WRONG_TOKEN = "tok-refused-SECRET-0d4e"
EXIT_FAILING, EXIT_FAILING_AND_STALE = 5, 7


def simulator(projects: int = 24) -> SimulatorThread:
    return SimulatorThread(RayteamsDataset(DatasetConfig(seed=83, n_projects=projects, invalid_records=2)),
                           SimulatorOptions(token=TOKEN, client_id=CLIENT_ID))


def sync(sim: SimulatorThread, db: Path, api_url: str, **env: str) -> tuple[int, str, str]:
    process = pwh("sync", "rayteams", "--base-url", sim.base_url, "--db", str(db), *SYNC_ARGS,
                  env=pwh_env(api_url, **env))
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


def runs(path: Path) -> list[tuple[str, str | None]]:
    """(status, error) of every run in the file's ledger, oldest first."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT status, error FROM pipeline.runs ORDER BY started_at").fetchall()
    finally:
        con.close()


def status_json(db: Path, cwd: Path) -> tuple[int, dict]:
    """`pwh status --json` as cron runs it: the replica, without --primary."""
    process = pwh("status", "--db", str(db), "--json", env=pwh_env(None), cwd=cwd)
    out, err = process.communicate(timeout=120)
    assert out, err
    return process.returncode, json.loads(out)["accounts"][0]


def report_header(db: Path, out: Path) -> str:
    process = pwh("report", "--db", str(db), "--out", str(out), env=pwh_env(None))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return text_of(out.read_text().split("</header>")[0])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_refused_token_reaches_readers_but_the_data_stays_the_good_syncs(prefect_server, tmp_path):
    db = tmp_path / "w.duckdb"
    replica = replica_path(db)
    with simulator() as sim:
        code, _, err = sync(sim, db, prefect_server)
        assert code == 0, err
        published = content_hashes(replica)
        sim.dataset.mutate(seed=1, update_share=0.5, add_share=0.2)  # news the refused run cannot bring
        code, out, err = sync(sim, db, prefect_server, RAYTEAMS_TOKEN=WRONG_TOKEN)

    assert code == 1, out + err
    assert content_hashes(replica) == published
    (first, _), (status, error) = runs(replica)
    assert (first, status) == ("success", "failed") and "401" in error and WRONG_TOKEN not in error
    assert runs(replica) == runs(db)

    code, account = status_json(db, tmp_path)
    assert code == EXIT_FAILING and account["problems"] == ["failing"]
    assert account["last_run"]["status"] == "failed" and account["last_run"]["error"] == error.splitlines()[0]
    assert account["data_age_s"] < 600  # the good sync's data, still fresh

    page = render(snapshot(db))
    header = text_of(page.split("</header>")[0])
    assert "rayteams/default: data" in header and "last run failed" in header and "401" in header, header
    assert '<span class="status-failed">failed</span>' in page  # the runs table
    reported = report_header(db, tmp_path / "report.html")
    assert "last run failed" in reported and "401" in reported, reported


@pytest.mark.parametrize("listing", ["empty", "most projects gone, others changed"])
def test_a_run_the_mass_delete_guard_refuses_publishes_its_ledger_not_what_it_loaded(
        prefect_server, tmp_path, listing):
    db = tmp_path / "w.duckdb"
    replica = replica_path(db)
    with simulator() as sim:
        code, _, err = sync(sim, db, prefect_server)
        assert code == 0, err
        published, counts = content_hashes(replica), table_counts(replica)
        if listing == "empty":
            sim.dataset.mutate(seed=2, update_share=0, add_share=0, remove_share=1.0)
        else:  # the refused run loads the changed and new projects it fetched into the primary
            sim.dataset.mutate(seed=3, update_share=0.3, add_share=0.15, remove_share=0.6)
        code, out, err = sync(sim, db, prefect_server)

    assert code == 1 and "--allow-mass-delete" in err, out + err
    if listing != "empty":
        assert content_hashes(db) != published, "the refused run loaded nothing: the test proves nothing"
    assert content_hashes(replica) == published and table_counts(replica) == counts
    (_, _), (status, error) = runs(replica)
    assert status == "failed" and error.startswith("MassDeleteError: rayteams/default: this run would mark")

    code, account = status_json(db, tmp_path)
    assert code == EXIT_FAILING and account["last_run"]["error"].startswith("MassDeleteError")
    header = text_of(render(snapshot(db)).split("</header>")[0])
    assert "last run failed" in header and "--allow-mass-delete" in header, header


def test_a_first_run_that_fails_publishes_an_empty_replica_with_its_ledger(prefect_server, tmp_path):
    db = tmp_path / "w.duckdb"
    with simulator() as sim:
        code, out, err = sync(sim, db, prefect_server, RAYTEAMS_TOKEN=WRONG_TOKEN)

    assert code == 1, out + err
    replica = replica_path(db)
    assert set(table_counts(replica).values()) == {0}
    [(status, error)] = runs(replica)
    assert status == "failed" and "401" in error
    assert oct(replica.stat().st_mode & 0o777) == "0o600"

    code, account = status_json(db, tmp_path)
    assert code == EXIT_FAILING_AND_STALE and account["problems"] == ["failing", "stale"]
    page = render(snapshot(db))
    header = text_of(page.split("</header>")[0])
    assert "rayteams/default: no successful sync yet · last run failed" in header and "401" in header, header
    assert 'id="empty-state"' in page


def hand_warehouse(db: Path) -> Path:
    """A primary with two runs, its replica, then a third (failed) run only in the primary."""
    con = connect(db)
    try:
        migrate(con)
        for number in range(2):
            save_run(con, RunRecord(f"run-{number}", "rayteams", "lab", "incremental", None,
                                    started_at=_at(number), status="success", ended_at=_at(number)))
        publish_replica(con, db)
        save_run(con, RunRecord("run-2", "rayteams", "lab", "incremental", None, started_at=_at(2),
                                status="failed", ended_at=_at(2), error="AuthError: 401"))
    finally:
        con.close()
    return db


def _at(hour: int) -> datetime:
    return datetime(2026, 12, 1, hour, tzinfo=timezone.utc)


def test_a_ledger_that_does_not_read_in_the_primary_is_never_published(tmp_path, caplog):
    db = hand_warehouse(tmp_path / "w.duckdb")
    replica = replica_path(db)
    before = digest(replica)
    con = duckdb.connect(str(db), read_only=True)
    try:
        blocks = {b for (b,) in con.execute(
            "SELECT block_id FROM pragma_storage_info('pipeline.runs') WHERE block_id >= 0").fetchall()}
    finally:
        con.close()
    assert blocks
    with open(db, "r+b") as handle:
        for block in blocks:
            handle.seek(3 * 4096 + block * 262144)
            handle.write(b"\0" * 262144)

    caplog.set_level(logging.ERROR, logger="pwh.replica")
    with open_writer(db) as con, pytest.raises(RuntimeError, match="the run's own error"), ledger_for_readers(con, db):
        raise RuntimeError("the run's own error")

    assert digest(replica) == before
    assert "the readers' replica still shows the previous run ledger" in caplog.text
    assert not list(tmp_path.glob(".*.tmp*"))


def test_a_failure_that_recorded_no_run_leaves_the_replica_file_as_it_was(tmp_path):
    db = hand_warehouse(tmp_path / "w.duckdb")
    replica = replica_path(db)
    with open_writer(db) as con:
        with ledger_for_readers(con, db):  # the failed run-2 reaches the readers
            pass
        published = digest(replica)
        assert [status for status, _ in runs(replica)] == ["success", "success", "failed"]
        with pytest.raises(ValueError), ledger_for_readers(con, db):
            raise ValueError("refused before any run started")
    assert digest(replica) == published  # nothing new for readers: not even a rename


def test_a_replica_older_than_the_primarys_schema_gets_the_columns_it_has(tmp_path):
    db = hand_warehouse(tmp_path / "w.duckdb")
    replica = replica_path(db)
    con = duckdb.connect(str(replica))
    try:
        con.execute("ALTER TABLE pipeline.runs DROP COLUMN retries")
    finally:
        con.close()
    with open_writer(db) as con, ledger_for_readers(con, db):
        pass
    assert [status for status, _ in runs(replica)] == ["success", "success", "failed"]


def test_a_run_that_ends_as_published_does_not_open_the_replica_again(tmp_path, monkeypatch):
    """The ledger a publish gave readers is known: leaving the run then compares it with the
    primary's, without opening the replica (a DuckDB instance, ~0.05 s, ~25 MB). A ledger
    written after that publish still reaches readers."""
    from pwh.warehouse import replica as replica_module

    db = hand_warehouse(tmp_path / "w.duckdb")
    replica = replica_path(db)
    looked_at: list[Path] = []
    read_replica_ledger = replica_module._replica_ledger_digest
    monkeypatch.setattr(replica_module, "_replica_ledger_digest",
                        lambda path: looked_at.append(path) or read_replica_ledger(path))
    with open_writer(db) as con:
        with ledger_for_readers(con, db) as readers:
            readers.publish(publish_replica(con, db))
        assert looked_at == []
        assert [status for status, _ in runs(replica)] == ["success", "success", "failed"]

        with ledger_for_readers(con, db) as readers:
            readers.publish(publish_replica(con, db))
            save_run(con, RunRecord("run-3", "rayteams", "lab", "incremental", None, started_at=_at(3),
                                    status="failed", ended_at=_at(3), error="PublishFailedError: disk full"))
        assert looked_at == [replica]
    assert [status for status, _ in runs(replica)] == ["success", "success", "failed", "failed"]
