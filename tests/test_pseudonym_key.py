"""The warehouse remembers which key made its pseudonyms (issue 15, item 5): a sync with
another key, or with none where a new one would silently be made, is refused with the fix
in one line; `--rekey` is the explicit way to change it. `pwh sync rayteams` runs as a
real subprocess against the simulator (~4 s a sync with the session's Prefect server)."""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

import duckdb
import pytest

from pwh.flows.rayteams_sync import default_key_file
from pwh.settings import FINGERPRINT_LABEL
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.warehouse.replica import replica_path
from tests.live import CLIENT_ID, TOKEN, SimulatorThread, pwh, pwh_env

SYNC_ARGS = ("--concurrency", "4", "--quiet")
NEW_KEY = "a-second-key-for-re-keying-7f3e9a"
OTHER_KEY = "some-other-key-entirely-0b1c2d3e"


def sync(sim: SimulatorThread, db: Path, api_url: str, *extra: str, key: str | None = None):
    env = pwh_env(api_url)
    env.pop("PWH_PSEUDONYM_KEY", None)
    if key is not None:
        env["PWH_PSEUDONYM_KEY"] = key
    process = pwh("sync", "rayteams", "--base-url", sim.base_url, "--db", str(db), *SYNC_ARGS, *extra, env=env)
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def fingerprint(key: str) -> str:
    return hmac.new(key.encode(), FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def every_text(db: Path) -> str:
    """Every value of every RAYTeams and pipeline table, as one text to search."""
    tables = query(db, "SELECT schema_name, table_name FROM duckdb_tables() WHERE schema_name IN ('rayteams', 'pipeline')")
    return "\n".join(repr(query(db, f"SELECT * FROM {schema}.{name}")) for schema, name in tables)


def last_error(err: str) -> str:
    return err.strip().splitlines()[-1]  # the CLI's one-line cause (Prefect logs its own)


@pytest.fixture
def sim():
    dataset = RayteamsDataset(DatasetConfig(seed=63, n_projects=20))
    with SimulatorThread(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as running:
        yield running


def test_a_missing_or_other_key_is_refused_and_rekey_recomputes_every_pseudonym(sim, prefect_server, tmp_path):
    db = tmp_path / "w.duckdb"
    key_file = default_key_file(str(db))

    # A brand-new warehouse, no key anywhere: a key file is made and its fingerprint recorded.
    code, _, err = sync(sim, db, prefect_server)
    assert code == 0, err
    first_key = key_file.read_text().strip()
    assert query(db, "SELECT fingerprint, reason FROM pipeline.pseudonym_keys") == [(fingerprint(first_key), "first sync")]
    assert first_key not in db.read_bytes().decode("latin-1")

    removed = sim.dataset.mutate(seed=1, update_share=0, add_share=0, remove_share=0.1).removed
    code, _, err = sync(sim, db, prefect_server)
    assert code == 0, err
    assert len(removed) == 2
    before, replica_before = every_text(db), replica_path(db).read_bytes()

    # The key file is gone: no new key is made, nothing is written.
    key_file.unlink()
    code, out, err = sync(sim, db, prefect_server)
    assert code == 1, out + err
    line = last_error(err)
    assert line.startswith("pwh: error: PseudonymKeyError: PWH_PSEUDONYM_KEY is unset and the key file"), line
    assert "set PWH_PSEUDONYM_KEY to the key that made this warehouse" in line and "--rekey" in line
    assert str(key_file) in line and first_key not in err
    assert not key_file.exists()
    # Another key, from the environment: refused the same way.
    code, out, err = sync(sim, db, prefect_server, key=OTHER_KEY)
    assert code == 1
    assert "PseudonymKeyError: the pseudonym key from PWH_PSEUDONYM_KEY" in last_error(err)
    assert OTHER_KEY not in err
    assert every_text(db) == before, "a refused sync changed the warehouse"
    assert replica_path(db).read_bytes() == replica_before

    # The key that made the warehouse, now from the environment: accepted.
    code, out, err = sync(sim, db, prefect_server, key=first_key)
    assert code == 0, err
    assert "0 new, 0 changed" in out

    # Re-keying is explicit: every live project is fetched again with the new key ...
    code, out, err = sync(sim, db, prefect_server, "--rekey", key=NEW_KEY)
    assert code == 0, err
    assert query(db, "SELECT fingerprint, reason FROM pipeline.pseudonym_keys ORDER BY recorded_at") == [
        (fingerprint(first_key), "first sync"), (fingerprint(NEW_KEY), "re-key")]
    assert query(db, "SELECT mode FROM pipeline.runs ORDER BY started_at DESC LIMIT 1") == [("full_refresh",)]
    new, old = Pseudonymizer(NEW_KEY.encode()), Pseudonymizer(first_key.encode())
    live = {p["_id"]: p["patientId"] for p in sim.dataset.project_list()}
    stored = dict(query(db, "SELECT project_id, patient_pseudonym FROM rayteams.projects WHERE deleted_at IS NULL"))
    assert stored == {pid: new.pseudonym(patient) for pid, patient in live.items()}
    # ... and the deleted projects' pseudonyms, which cannot be recomputed, are NULL.
    assert query(db, "SELECT count(*), count(patient_pseudonym), count(subject_pseudonym), count(extra) "
                     "FROM rayteams.projects WHERE deleted_at IS NOT NULL") == [(2, 0, 0, 0)]
    everything = every_text(db)
    old_pseudonyms = {old.pseudonym(value) for value in (*live.values(), *sim.dataset.patient_names())}
    assert not [p for p in old_pseudonyms if p in everything], "a pseudonym of the old key survived the re-key"

    # The new key is the warehouse's now: the next sync needs no --rekey and fetches nothing.
    code, out, err = sync(sim, db, prefect_server, key=NEW_KEY)
    assert code == 0, err
    assert f"0 new, 0 changed, {len(live)} unchanged" in out


def test_a_warehouse_older_than_fingerprints_is_not_given_a_new_key(sim, prefect_server, tmp_path):
    db = tmp_path / "w.duckdb"
    key = "the-key-of-an-older-warehouse-5a6b"
    code, _, err = sync(sim, db, prefect_server, key=key)
    assert code == 0, err
    con = duckdb.connect(str(db))
    con.execute("DELETE FROM pipeline.pseudonym_keys")  # as made before migration 6
    con.close()

    code, _, err = sync(sim, db, prefect_server)  # no key at all: a new one would be made
    assert code == 1
    assert "PWH_PSEUDONYM_KEY is unset" in last_error(err)
    assert not default_key_file(str(db)).exists()
    assert query(db, "SELECT count(*) FROM pipeline.pseudonym_keys") == [(0,)]

    code, _, err = sync(sim, db, prefect_server, key=key)  # the key it was made with is adopted
    assert code == 0, err
    assert query(db, "SELECT fingerprint, reason FROM pipeline.pseudonym_keys") == [(fingerprint(key), "adopted")]
    assert os.environ["PWH_PSEUDONYM_KEY"] != key
