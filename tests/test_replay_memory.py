"""A primary whose write-ahead log needs more memory to replay than a sync's limit (rows
with primary keys committed but not yet checkpointed, as a kill after a large shard load
leaves) is whole: it is reported as memory, never as damage, and ``pwh restore`` keeps it.
DuckDB words that shortage in an InternalException ("Failure while replaying WAL … Out of
Memory Error …"), not an OutOfMemoryException. Found by a review of the default limit."""

from __future__ import annotations

import shutil

import duckdb
import pytest

from pwh.failures import describe_failure
from pwh.warehouse.connection import WarehouseMemoryError, connect
from pwh.warehouse.replica import NothingToRestoreError, replica_path, restore_from_replica

KEYS = 2_000_000  # ~250 MB of key index to rebuild at replay: well over 128 MiB


@pytest.fixture(scope="module")
def unreplayed(tmp_path_factory):
    """A file of an empty keyed table, and a WAL holding one committed insert of KEYS keys."""
    folder = tmp_path_factory.mktemp("wal")
    db = folder / "w.duckdb"
    con = duckdb.connect(str(db))
    con.execute("PRAGMA disable_checkpoint_on_shutdown")  # what a kill before the checkpoint leaves
    con.execute("SET wal_autocheckpoint = '1TB'")
    con.execute("CREATE TABLE t (k VARCHAR PRIMARY KEY)")
    con.execute("CHECKPOINT")
    con.execute(f"INSERT INTO t SELECT md5(range::VARCHAR) FROM range({KEYS})")
    con.close()
    assert (folder / "w.duckdb.wal").exists()
    return db


def copy_of(db, folder):
    folder.mkdir()
    for suffix in ("", ".wal"):
        shutil.copy(f"{db}{suffix}", folder / f"w.duckdb{suffix}")
    return folder / "w.duckdb"


def test_a_replay_short_of_the_limit_is_memory_not_damage(unreplayed, tmp_path, monkeypatch):
    monkeypatch.delenv("PWH_DUCKDB_MEMORY", raising=False)
    db = copy_of(unreplayed, tmp_path / "c")
    with pytest.raises(WarehouseMemoryError) as raised:
        connect(db)
    assert str(raised.value) == (
        "DuckDB ran out of memory opening the warehouse (replaying its write-ahead log) (its limit: pwh's "
        "default, 128MiB or a quarter of the file): raise PWH_DUCKDB_MEMORY (e.g. 2GB), or free memory on this machine")
    # As the message says: with more memory the same file opens whole.
    monkeypatch.setenv("PWH_DUCKDB_MEMORY", "2GB")
    con = connect(db)
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(KEYS,)]
    con.close()


def test_restore_never_replaces_a_primary_it_could_not_read_for_memory(unreplayed, tmp_path, monkeypatch):
    monkeypatch.delenv("PWH_DUCKDB_MEMORY", raising=False)
    db = copy_of(unreplayed, tmp_path / "c")
    duckdb.connect(str(replica_path(db))).close()  # an older replica, which restore would put in its place
    with pytest.raises((NothingToRestoreError, WarehouseMemoryError, duckdb.Error)) as raised:
        restore_from_replica(db)
    assert not isinstance(raised.value, duckdb.Error) or "Out of Memory" in str(raised.value)
    assert not [p.name for p in db.parent.iterdir() if "damaged" in p.name]
    assert (db.parent / "w.duckdb.wal").exists()  # the primary and its log stay as they were


def test_the_replays_error_outside_pwhs_own_paths_is_one_memory_line(monkeypatch):
    monkeypatch.delenv("PWH_DUCKDB_MEMORY", raising=False)
    line = describe_failure(duckdb.InternalException(
        "INTERNAL Error: Failure while replaying WAL file \"w.duckdb.wal\": Out of Memory Error: failed to allocate"))
    assert line.startswith("WarehouseMemoryError: DuckDB ran out of memory reading or checking the warehouse")
