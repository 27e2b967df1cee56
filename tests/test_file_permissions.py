"""Files on disk: the warehouse, its WAL (which DuckDB creates again after every
checkpoint), the readers' replica, the lock and the pseudonym key are owner-only (0600),
the key's folder 0700, whatever umask the process had."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pwh.flows import progress
from pwh.flows.prefect_flows import sync_rayteams
from pwh.flows.rayteams_sync import default_key_file
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_under(folder: Path) -> dict[str, int]:
    seen = {}
    for path in folder.rglob("*"):
        try:
            seen[str(path.relative_to(folder))] = mode(path)
        except FileNotFoundError:
            pass  # a temporary file renamed away meanwhile
    return seen


@pytest.fixture
def permissive_umask():
    previous = os.umask(0o000)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("prefect_harness")
async def test_warehouse_wal_and_key_files_are_owner_only(tmp_path, monkeypatch, permissive_umask):
    monkeypatch.setenv("RAYTEAMS_TOKEN", "tok-perm")
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", "cid-perm")
    monkeypatch.delenv("PWH_PSEUDONYM_KEY")  # the key file beside the warehouse is created
    dataset = RayteamsDataset(DatasetConfig(seed=41, n_projects=24))
    folder = tmp_path / "warehouse"
    db = folder / "w.duckdb"
    observed: list[dict[str, int]] = []
    # What is on disk while the sync runs, after every batch (the WAL exists only then).
    progress.set_listener(lambda p: observed.append(modes_under(folder)))
    try:
        async with running_simulator(dataset, SimulatorOptions(token="tok-perm", client_id="cid-perm")) as url:
            first = await sync_rayteams(base_url=url, db_path=str(db), batch_size=4)
            os.chmod(db, 0o644)  # loosened by hand: the next writer tightens it again
            second = await sync_rayteams(base_url=url, db_path=str(db), batch_size=4, mode="full_refresh")
    finally:
        progress.set_listener(None)
    assert first["status"] == second["status"] == "success"
    observed.append(modes_under(folder))

    key = default_key_file(str(db))
    assert key.exists() and mode(key) == 0o600
    assert mode(key.parent) == 0o700
    assert mode(db) == 0o600
    wal_seen = [m["w.duckdb.wal"] for m in observed if "w.duckdb.wal" in m]
    assert wal_seen, "the WAL was never observed during the sync"
    for snapshot in observed:
        for name, bits in snapshot.items():
            expected = 0o700 if (folder / name).is_dir() or name == ".pwh" else 0o600
            assert bits == expected, f"{name} had mode {bits:o}"
    assert os.umask(0o000) == 0o000  # the process umask is given back untouched


def test_a_wal_recreated_after_a_checkpoint_is_owner_only_too(tmp_path, permissive_umask):
    from pwh.warehouse.lock import open_writer

    db = tmp_path / "w.duckdb"
    wal = Path(f"{db}.wal")
    with open_writer(db) as con:
        con.execute("CREATE TABLE t (a INTEGER)")
        con.execute("INSERT INTO t VALUES (1)")
        assert wal.exists() and mode(wal) == 0o600
        con.execute("CHECKPOINT")
        assert not wal.exists()  # DuckDB removed it ...
        con.execute("INSERT INTO t VALUES (2)")
        assert wal.exists() and mode(wal) == 0o600  # ... and made a new one
        assert os.umask(0o077) == 0o077 and os.umask(0o077) == 0o077  # held while open
    assert mode(db) == 0o600
    assert os.umask(0o000) == 0o000  # given back on close
