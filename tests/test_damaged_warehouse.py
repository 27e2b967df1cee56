"""A damaged primary is never synced into nor published over the good replica (issue 15,
item 6); a publish that fails leaves the ledger saying what the exit status says, and
every file any command writes is owner-only under umask 000 (item 13).

`pwh` runs as a real subprocess against the RAYTeams simulator (~4 s a sync with the
session's Prefect server). The primary is damaged three ways after a good sync:
truncated to half, a data block zeroed in the middle, a garbage header."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
from pathlib import Path

import duckdb
import pytest

from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions
from pwh.warehouse.integrity import WarehouseDamagedError, read_every_table
from pwh.warehouse.lock import open_writer
from pwh.warehouse.replica import publish_replica, replica_path
from tests.live import CLIENT_ID, TOKEN, SimulatorThread, pwh, pwh_env

SYNC_ARGS = ("--concurrency", "4", "--quiet")
BLOCK = 262144  # DuckDB's block size; the file's three 4 KiB headers come first
HEADERS = 3 * 4096


@pytest.fixture(scope="module")
def sim():
    dataset = RayteamsDataset(DatasetConfig(seed=57, n_projects=30, invalid_records=2))
    with SimulatorThread(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as running:
        yield running


def sync(sim: SimulatorThread, db: Path, api_url: str, *extra: str, umask: int | None = None, **env: str):
    process = pwh("sync", "rayteams", "--base-url", sim.base_url, "--db", str(db), *SYNC_ARGS, *extra,
                  env=pwh_env(api_url, **env), preexec_fn=None if umask is None else (lambda: os.umask(umask)))
    out, err = process.communicate(timeout=180)
    return process.returncode, out, err


def run_pwh(*args: str, api_url: str | None = None, umask: int | None = None) -> tuple[int, str, str]:
    process = pwh(*args, env=pwh_env(api_url), preexec_fn=None if umask is None else (lambda: os.umask(umask)))
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def readable_counts(path: Path) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return read_every_table(con)
    finally:
        con.close()


@pytest.fixture(scope="module")
def good(sim, prefect_server, tmp_path_factory) -> Path:
    """A warehouse after one good sync, and its replica."""
    db = tmp_path_factory.mktemp("good") / "w.duckdb"
    code, _, err = sync(sim, db, prefect_server)
    assert code == 0, err
    return db


def copy_warehouse(good: Path, folder: Path) -> Path:
    folder.mkdir()
    db = folder / good.name
    shutil.copy2(good, db)
    shutil.copy2(replica_path(good), replica_path(db))
    return db


def middle_data_block(db: Path) -> int:
    """The file offset of a block holding a table's data, in the middle of the file's used blocks."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        blocks = sorted({b for (b,) in con.execute(
            "SELECT block_id FROM pragma_storage_info('rayteams.projects') WHERE block_id >= 0").fetchall()})
    finally:
        con.close()
    return HEADERS + blocks[len(blocks) // 2] * BLOCK


def truncate_to_half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def zero_a_data_block(db: Path, offset: int | None = None) -> None:
    offset = middle_data_block(db) if offset is None else offset
    with open(db, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\0" * BLOCK)


def garbage_header(db: Path) -> None:
    with open(db, "r+b") as handle:
        handle.write(os.urandom(4096))


@pytest.mark.parametrize(("damage", "mode"), [
    (truncate_to_half, "incremental"),
    (zero_a_data_block, "incremental"),
    (garbage_header, "incremental"),
    (zero_a_data_block, "full_refresh"),  # a full refresh must not "repair" into a damaged file either
])
def test_a_damaged_primary_fails_the_sync_and_leaves_the_replica_as_it_was(
        sim, good, prefect_server, tmp_path, damage, mode):
    db = copy_warehouse(good, tmp_path / "w")
    replica = replica_path(db)
    before, counts = digest(replica), readable_counts(replica)
    damage(db)

    code, out, err = sync(sim, db, prefect_server, *(["--full-refresh"] if mode == "full_refresh" else []))

    assert code == 1, out + err
    last = err.strip().splitlines()[-1]  # the CLI's one-line cause (Prefect logs its own)
    assert last.startswith(f"pwh: error: WarehouseDamagedError: {db} is damaged"), last
    assert f"pwh restore --db {db}" in last and "--full-refresh" in last
    assert digest(replica) == before
    assert readable_counts(replica) == counts


def test_restore_puts_the_replica_back_and_the_next_sync_succeeds(sim, good, prefect_server, tmp_path):
    db = copy_warehouse(good, tmp_path / "w")
    truncate_to_half(db)
    Path(f"{db}.wal").write_bytes(b"a WAL of the damaged file must not be replayed onto the restored one")

    code, out, err = run_pwh("restore", "--db", str(db))

    assert code == 0, err
    assert readable_counts(db) == readable_counts(replica_path(db))
    aside = sorted(p.name for p in db.parent.glob("w.duckdb*.damaged-*"))
    assert [name.split(".damaged-")[0] for name in aside] == ["w.duckdb", "w.duckdb.wal"], aside
    assert not Path(f"{db}.wal").exists()
    code, out, err = sync(sim, db, prefect_server)
    assert code == 0, err
    assert out.startswith("success:")


def test_restore_refuses_to_replace_a_primary_that_reads(good, tmp_path):
    db = copy_warehouse(good, tmp_path / "w")
    before = digest(db)
    code, _, err = run_pwh("restore", "--db", str(db))
    assert code == 1 and "nothing to restore" in err
    assert digest(db) == before


def test_restore_refuses_a_replica_that_does_not_read(good, tmp_path):
    db = copy_warehouse(good, tmp_path / "w")
    truncate_to_half(db)
    garbage_header(replica_path(db))
    primary_before = digest(db)

    code, _, err = run_pwh("restore", "--db", str(db))

    assert code == 1
    assert "does not read either" in err and "--full-refresh" in err and len(err.strip().splitlines()) == 1
    assert digest(db) == primary_before  # nothing moved


def test_a_copy_that_does_not_read_back_never_replaces_the_replica(good, tmp_path):
    """The primary is damaged on disk under an open writer (its blocks are not cached yet):
    the copy is checked before the rename, deleted, and the replica stays as it was."""
    db = copy_warehouse(good, tmp_path / "w")
    replica = replica_path(db)
    before = digest(replica)
    offset = middle_data_block(db)
    with open_writer(db) as con:
        zero_a_data_block(db, offset)
        with pytest.raises(WarehouseDamagedError, match="was left as it was"):
            publish_replica(con, db)
    assert digest(replica) == before
    assert not list(db.parent.glob(".*.tmp"))


def test_a_full_disk_while_publishing_fails_the_run_in_the_ledger_too(sim, good, prefect_server, tmp_path):
    db = copy_warehouse(good, tmp_path / "w")
    replica = replica_path(db)
    before = digest(replica)

    code, out, err = sync(sim, db, prefect_server, "--full-refresh", PWH_FAIL_AT="publish-write")

    assert code == 1, out + err
    assert err.strip().splitlines()[-1] == ("pwh: error: PublishFailedError: publishing the replica failed: "
                                            "OSError: [Errno 28] No space left on device")
    con = duckdb.connect(str(db), read_only=True)
    try:
        status, error = con.execute(
            "SELECT status, error FROM pipeline.runs ORDER BY started_at DESC LIMIT 1").fetchall()[0]
    finally:
        con.close()
    assert status == "failed"
    assert error.startswith("publishing the replica failed: OSError: [Errno 28]")
    assert digest(replica) == before
    assert not list(db.parent.glob(".*.tmp"))


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_every_file_every_command_writes_is_owner_only_under_umask_000(sim, prefect_server, tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    db = folder / "w.duckdb"
    report = folder / "report.html"
    report.write_text("an older report, left readable by all")
    os.chmod(report, 0o666)
    env_without_key = {k: v for k, v in pwh_env(prefect_server).items() if k != "PWH_PSEUDONYM_KEY"}

    process = pwh("sync", "rayteams", "--base-url", sim.base_url, "--db", str(db), *SYNC_ARGS,
                  env=env_without_key, preexec_fn=lambda: os.umask(0))
    _, err = process.communicate(timeout=180)
    assert process.returncode == 0, err
    for args in (("publish", "--db", str(db)), ("report", "--db", str(db), "--out", str(report)),
                 ("report", "--db", str(db), "--out", str(folder / "new-report.html"))):
        code, _, err = run_pwh(*args, umask=0)
        assert code == 0, (args, err)
    truncate_to_half(db)
    code, _, err = run_pwh("restore", "--db", str(db), umask=0)
    assert code == 0, err

    seen = {str(p.relative_to(folder)): mode_of(p) for p in folder.rglob("*")}
    assert {".pwh/pseudonym.key", "w.duckdb", "w.replica.duckdb", "report.html", "new-report.html"} <= set(seen)
    assert any(".damaged-" in name for name in seen)
    loose = {name: oct(bits) for name, bits in seen.items() if bits != (0o700 if (folder / name).is_dir() else 0o600)}
    assert not loose


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of its own (root only: where it cannot be mounted, the injected ENOSPC of
    the test above stands in), unmounted afterwards."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted: list[str] = []

    def mount(size: int) -> Path:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(str(folder))
        return folder

    yield mount
    for path in mounted:
        subprocess.run(["umount", path], check=True)


def test_a_really_full_disk_while_publishing_fails_the_run_in_the_ledger_too(sim, good, prefect_server, small_disk):
    # Room for the primary, its replica and half a copy: the new replica copy runs out.
    size = good.stat().st_size
    folder = small_disk(2 * size + size // 2)
    db = folder / good.name
    shutil.copy2(good, db)
    shutil.copy2(replica_path(good), replica_path(db))
    replica = replica_path(db)
    before = digest(replica)

    code, out, err = sync(sim, db, prefect_server)

    assert code == 1, out + err
    assert err.strip().splitlines()[-1].startswith(
        "pwh: error: PublishFailedError: publishing the replica failed: OSError: [Errno 28]"), err
    con = duckdb.connect(str(db), read_only=True)
    try:
        status, error = con.execute(
            "SELECT status, error FROM pipeline.runs ORDER BY started_at DESC LIMIT 1").fetchall()[0]
    finally:
        con.close()
    assert (status, error.split(":")[0]) == ("failed", "publishing the replica failed")
    assert digest(replica) == before
    assert not list(folder.glob(".*.tmp"))
