"""The readers' replica: a read-only copy of the warehouse, published after every sync.

DuckDB allows one read-write process *or* many read-only ones per file: an analyst's open
notebook or a dashboard on the primary would block the scheduled sync, and the sync would
lock them out. So readers never open the primary. After each successful sync the writer,
still holding the writer lock, refreshes the marts and comments, ``CHECKPOINT``s (every
change in the main file, the WAL empty), copies the file to a temporary file beside the
replica, fsyncs it, reads every table of the copy back (pwh/warehouse/integrity.py: a damaged
primary, or a bad copy, never replaces a good replica) and ``os.replace``s it onto the
replica path (then fsyncs the folder). ``pwh restore`` copies the other way, for a primary
that no longer reads.

The rename is atomic: a reader opening the replica gets the old or the new file, never a
torn one; a reader with the old file open keeps its snapshot until it reconnects (the old
inode lives until closed); nobody ever waits for anybody. Measured: 0.2–0.3 s per 200 MB,
plus ~0.26 s per 220 MB for reading the copy back.

A run that does not end in a publish (it failed, a guard or the key check refused it, it
was interrupted, or its publish failed) gives readers its run ledger and nothing else
(:func:`ledger_for_readers`, around every run of pwh/flows/runner.py): a copy of the replica
gets the primary's ``pipeline.runs`` in place of its own, is read back whole like any
publish and renamed onto the replica, so the dashboard, ``pwh report`` and ``pwh status``
show the failure over the data of the last publish. Only the ledger is read from the
primary (whole, so DuckDB checks its every block); a primary that fails the check before
a run (pwh/warehouse/integrity.py) gets no run and leaves the replica untouched, ledger
included: the exit status and the flow run say why. A first run that fails publishes a
replica with every table empty, the marts and the ledger; a replica that is missing
beside a primary with data is not replaced by an empty one (`pwh publish`). Measured on
2,000 RAYTeams projects (16 MB): 0.13–0.26 s (median 0.17 s), like a full publish (0.13–0.23
s): both are a copy read back whole; a run whose ledger the replica already has (a
successful publish, a refusal before any run started) costs a 0.02 s comparison and no
copy.

The replica is ``<primary stem>.replica.duckdb`` beside the primary (``warehouse.duckdb``
→ ``warehouse.replica.duckdb``), owner-only like the primary. Being a byte copy, it has
the primary's storage format: readable by DuckDB 1.4 and newer
(:data:`pwh.warehouse.connection.STORAGE_COMPATIBILITY`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from pwh.errors import PwhError
from pwh.warehouse.comments import apply_comments
from pwh.warehouse.connection import WarehouseBusyError, connect, private_files, transaction
from pwh.warehouse.crashpoints import fail_point
from pwh.warehouse.integrity import (
    WarehouseDamagedError,
    check_copy,
    first_line,
    out_of_memory,
    recovery_hint,
    row_counts,
)
from pwh.warehouse.lock import writer_lock
from pwh.warehouse.marts import create_views
from pwh.warehouse.migrations import migrate

if TYPE_CHECKING:  # pyarrow is imported by duckdb when a ledger is published: ~30 MB a run does not need
    import pyarrow

log = logging.getLogger("pwh.replica")

# One buffer, read into again and again: a fresh 8 MiB chunk per read showed as ~13 MB more
# peak RSS of a no-change sync at 2,000 projects (its whole memory peak).
COPY_CHUNK = 1 << 20
# What readers get of a run whose data they must not get (see publish_ledger).
LEDGER = "pipeline.runs"
LOADED = "status IN ('success', 'partial')"  # runs whose data was committed (and published)


def replica_path(db_path: Path | str) -> Path:
    """Where readers find the warehouse: ``<stem>.replica.duckdb`` beside the primary."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.stem}.replica{db_path.suffix or '.duckdb'}")


@dataclass(frozen=True)
class Published:
    path: Path
    bytes: int
    seconds: float
    ledger: tuple[Any, ...] | None = None  # the digest of the run ledger the copy carries


def refresh_analyst_layer(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """(Re)create the marts and (re)apply every comment, in one transaction."""
    with transaction(con):
        covered = create_views(con)
        apply_comments(con)
    return covered


def publish_replica(con: duckdb.DuckDBPyConnection, db_path: Path | str, target: Path | str | None = None) -> Published:
    """Copy the primary (open read-write in ``con``; the caller holds the writer lock, so
    nothing else writes it) atomically onto the readers' path, once the copy has proved
    whole: it opens read-only, every table reads back, with the primary's row counts. A
    copy that does not is deleted and the replica is left as it was."""
    started = time.perf_counter()
    source = Path(db_path)
    target = Path(target) if target is not None else replica_path(source)
    con.execute("CHECKPOINT")
    expected = row_counts(con)
    ledger = _ledger_digest(con) if LEDGER in expected else None  # a file never migrated has none
    temporary = _temporary(target)
    size = _copy_checked(source, temporary, expected, lambda detail: WarehouseDamagedError(
        f"the copy of {source} for the readers' replica does not read back ({first_line(detail)}); "
        f"the replica {target} was left as it was: {recovery_hint(source)}"))
    _replace(temporary, target)
    seconds = time.perf_counter() - started
    log.info("published the readers' replica %s (%d bytes) in %.2f s", target, size, seconds)
    return Published(target, size, seconds, ledger)


class ReadersLedger:
    """What :func:`ledger_for_readers` is told of a publish made inside it: the digest of
    the ledger that publish gave readers (a run that ends as published needs no second
    look at the replica: opening it costs a DuckDB instance, ~0.05 s and ~25 MB)."""

    def __init__(self) -> None:
        self.published: tuple[Any, ...] | None = None

    def publish(self, published: Published) -> None:
        self.published = published.ledger


@contextmanager
def ledger_for_readers(con: duckdb.DuckDBPyConnection, db_path: Path | str) -> Iterator[ReadersLedger]:
    """Around a run on a primary that proved whole: however the run ends (failed, refused
    by a guard, interrupted, its publish failed), on leaving, the readers' replica carries
    the primary's run ledger (:func:`publish_ledger`) unless it already does (a successful
    publish, told through the :class:`ReadersLedger` yielded, or a failure that recorded no
    run). Best effort: a ledger that cannot be published is logged, never raised over the
    run's own outcome."""
    readers = ReadersLedger()
    try:
        yield readers
    finally:
        try:
            ledger = _ledger_digest(con)
            if ledger != readers.published and ledger != _replica_ledger_digest(replica_path(db_path)):
                publish_ledger(con, db_path)
        except Exception as exc:  # noqa: BLE001 - best effort: the run's own outcome must propagate
            log.error("the readers' replica still shows the previous run ledger: %s: %s",
                      type(exc).__name__, first_line(str(exc)))


def publish_ledger(con: duckdb.DuckDBPyConnection, db_path: Path | str, target: Path | str | None = None) -> Published:
    """Give readers the primary's run ledger, and nothing else of it: after a run whose
    data must not reach them, so that the dashboard and ``pwh status`` show its failure.

    A copy of the replica (when there is none yet: a new file with every table, empty,
    and the marts) gets the primary's ``pipeline.runs`` in place of its own; every other
    table stays exactly as it was. The copy must then open read-only and read whole, with
    the replica's row counts and the primary's number of runs, before it replaces the
    replica atomically (as :func:`publish_replica` does). Only ``pipeline.runs`` is read
    from the primary, whole, so DuckDB checks every block of it: a damaged ledger raises
    and the replica is left as it was. The caller holds the writer lock."""
    started = time.perf_counter()
    source = Path(db_path)
    target = Path(target) if target is not None else replica_path(source)
    runs = con.sql(f"SELECT * FROM {LEDGER}").to_arrow_table()
    if not target.exists() and con.execute(f"SELECT count(*) FROM {LEDGER} WHERE {LOADED}").fetchall()[0][0]:
        # An empty replica beside a primary with data would tell readers there is none.
        raise FileNotFoundError(f"no readers' replica at {target} to add the run ledger to: "
                                f"run `pwh publish --db {source}`")

    def refused(detail: str) -> WarehouseDamagedError:
        return WarehouseDamagedError(
            f"the readers' replica {target} with the new run ledger does not read back ({first_line(detail)}); "
            f"it was left as it was (`pwh publish --db {source}` replaces it from the primary)")

    temporary = _temporary(target)
    try:
        if target.exists():
            _copy_file(target, temporary)
        try:
            kept = _replace_ledger(temporary, runs)
        except (duckdb.Error, WarehouseDamagedError) as exc:
            raise refused(str(exc)) from None
        _prove_whole(temporary, {**kept, LEDGER: runs.num_rows}, refused)
        size = temporary.stat().st_size
    except BaseException:
        temporary.unlink(missing_ok=True)
        Path(f"{temporary}.wal").unlink(missing_ok=True)
        raise
    _replace(temporary, target)
    seconds = time.perf_counter() - started
    log.info("published the run ledger (%d runs) to the readers' replica %s in %.2f s", runs.num_rows, target, seconds)
    return Published(target, size, seconds)


def _replace_ledger(path: Path, runs: pyarrow.Table) -> dict[str, int]:
    """Put ``runs`` in place of the ledger of the warehouse file at ``path`` (a new one
    gets every table and the marts first); returns the row counts of its other tables.
    Columns the file lacks (a replica older than the primary's schema) are left out."""
    fresh = not path.exists()
    copy = connect(path)
    try:
        if fresh:
            migrate(copy)
            refresh_analyst_layer(copy)
        kept = row_counts(copy)
        kept.pop(LEDGER, None)
        schema, table = LEDGER.split(".")
        present = {name for (name,) in copy.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
            "AND schema_name = ? AND table_name = ?", [schema, table]).fetchall()}
        columns = ", ".join(f'"{name}"' for name in runs.column_names if name in present)
        copy.register("primary_ledger", runs)
        with transaction(copy):
            copy.execute(f"DELETE FROM {LEDGER}")
            copy.execute(f"INSERT INTO {LEDGER} ({columns}) SELECT {columns} FROM primary_ledger")
        copy.unregister("primary_ledger")
        copy.execute("CHECKPOINT")  # every change in the file itself: only the file is renamed
    finally:
        copy.close()
    return kept


def _ledger_digest(con: duckdb.DuckDBPyConnection) -> tuple[Any, ...]:
    return con.execute(f"SELECT count(*), sum(hash(r)) FROM {LEDGER} r").fetchall()[0]


def _replica_ledger_digest(replica: Path) -> tuple[Any, ...] | None:
    """The replica's ledger digest (an empty ledger's when there is no replica yet); None
    when it does not read: then :func:`publish_ledger` tries, and proves what it publishes."""
    if not replica.exists():
        return (0, None)  # no replica and no run recorded: nothing for readers yet
    try:
        reader = duckdb.connect(str(replica), read_only=True)
    except duckdb.Error:
        return None
    try:
        return _ledger_digest(reader)
    except duckdb.Error:
        return None
    finally:
        reader.close()


def _temporary(target: Path) -> Path:
    """A fresh temporary path beside ``target``, for a copy that will be renamed onto it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copies left by a publisher that died mid-copy (we hold the writer lock: no other runs).
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def restore_from_replica(db_path: Path | str) -> tuple[Path, list[Path]]:
    """Put a copy of the readers' replica in place of a damaged primary (under the writer
    lock). The damaged file and its WAL are kept beside it, renamed ``….damaged-<UTC time>``
    (a WAL left in place would be replayed onto the restored file). Returns the replica
    and the files moved aside. The replica is the warehouse as of its last publish, ledger
    and sync state included: the next sync fetches what changed since."""
    primary = Path(db_path)
    replica = replica_path(primary)
    if not replica.exists():
        raise FileNotFoundError(f"no readers' replica at {replica} to restore from: move {primary} aside "
                                "and sync every source into a new file (--full-refresh)")
    with writer_lock(primary):
        if primary.exists() and _reads_whole(primary):
            raise NothingToRestoreError(f"{primary} opens and every table reads: nothing to restore (a sync "
                                        "or `pwh publish` refreshes the replica from it)")
        temporary = primary.with_name(f".{primary.name}.{os.getpid()}.restore.tmp")
        _copy_checked(replica, temporary, None, lambda detail: WarehouseDamagedError(
            f"the readers' replica {replica} does not read either ({first_line(detail)}): move {primary} aside "
            "and sync every source into a new file (--full-refresh)"))
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        moved = []
        for path in (primary, Path(f"{primary}.wal")):
            if path.exists():
                aside = path.with_name(f"{path.name}.damaged-{stamp}")
                os.replace(path, aside)
                moved.append(aside)
        _replace(temporary, primary)
    return replica, moved


class NothingToRestoreError(PwhError, RuntimeError):
    """The primary is whole: restoring would throw away what the replica lacks."""


def _reads_whole(path: Path) -> bool:
    try:
        check_copy(path)
    except duckdb.Error as exc:
        if out_of_memory(exc):
            raise  # unproven, not damaged: nothing may replace it on that ground
        if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
            raise WarehouseBusyError(f"{path} is open in another process: close it and retry") from None
        return False
    return True


def _copy_checked(source: Path, temporary: Path, expected: dict[str, int] | None,
                  refused: Callable[[str], Exception]) -> int:
    """Copy ``source`` to ``temporary`` (owner-only, fsynced) and prove the copy whole:
    it opens read-only and every table reads (with ``expected`` row counts, when given).
    Anything else deletes the copy; a copy that does not read raises ``refused(detail)``."""
    try:
        size = _copy_file(source, temporary)
        _prove_whole(temporary, expected, refused)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return size


def _copy_file(source: Path, temporary: Path) -> int:
    with private_files():
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 0
        buffer = memoryview(bytearray(COPY_CHUNK))
        with open(source, "rb", buffering=0) as src:
            while read := src.readinto(buffer):
                fail_point("publish-write")
                _write_all(out, buffer[:read])
                size += read
        os.fsync(out)
    finally:
        os.close(out)
    return size


def _prove_whole(path: Path, expected: dict[str, int] | None, refused: Callable[[str], Exception]) -> None:
    try:
        counts = check_copy(path)
    except duckdb.Error as exc:
        if out_of_memory(exc):
            raise  # the machine's memory, not the copy: not reported as a damaged primary
        raise refused(str(exc)) from None
    if expected is not None and counts != expected:
        differ = sorted(name for name in set(counts) | set(expected) if counts.get(name) != expected.get(name))
        raise refused(f"row counts differ from the expected ones in {', '.join(differ[:5])}")


def _replace(temporary: Path, target: Path) -> None:
    os.replace(temporary, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def open_replica(db_path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the readers' replica of the warehouse at ``db_path`` (or
    to ``db_path`` itself when it is a replica). Never blocks a sync, never blocked by one.
    Reconnect to see a newer publish: an open connection keeps its snapshot."""
    path = Path(db_path)
    replica = path if path.name.endswith(".replica.duckdb") else replica_path(path)
    if not replica.exists():
        raise FileNotFoundError(
            f"no readers' replica at {replica}: it is published after each sync "
            f"(or run `pwh publish --db {path}`)"
        )
    return connect(replica, read_only=True)
