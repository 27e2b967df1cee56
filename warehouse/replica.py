"""The readers' replica: a read-only copy of the warehouse, published after every sync.

DuckDB allows one read-write process *or* many read-only ones per file: an analyst's open
notebook or a dashboard on the primary would block the scheduled sync, and the sync would
lock them out. So readers never open the primary. After each successful sync the writer,
still holding the writer lock, refreshes the marts and comments, ``CHECKPOINT``s (every
change in the main file, the WAL empty), copies the file to a temporary file beside the
replica, fsyncs it and ``os.replace``s it onto the replica path (then fsyncs the folder).

The rename is atomic: a reader opening the replica gets the old or the new file, never a
torn one; a reader with the old file open keeps its snapshot until it reconnects (the old
inode lives until closed); nobody ever waits for anybody. Measured: 0.2–0.3 s per 200 MB.

The replica is ``<primary stem>.replica.duckdb`` beside the primary (``warehouse.duckdb``
→ ``warehouse.replica.duckdb``), owner-only like the primary. Being a byte copy, it has
the primary's storage format: readable by DuckDB 1.4 and newer
(:data:`warehouse.connection.STORAGE_COMPATIBILITY`).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from warehouse.comments import apply_comments
from warehouse.connection import connect, private_files, transaction
from warehouse.marts import create_views

log = logging.getLogger("pwh.replica")

COPY_CHUNK = 8 << 20


def replica_path(db_path: Path | str) -> Path:
    """Where readers find the warehouse: ``<stem>.replica.duckdb`` beside the primary."""
    db_path = Path(db_path)
    return db_path.with_name(f"{db_path.stem}.replica{db_path.suffix or '.duckdb'}")


@dataclass(frozen=True)
class Published:
    path: Path
    bytes: int
    seconds: float


def refresh_analyst_layer(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """(Re)create the marts and (re)apply every comment, in one transaction."""
    with transaction(con):
        covered = create_views(con)
        apply_comments(con)
    return covered


def publish_replica(con: duckdb.DuckDBPyConnection, db_path: Path | str, target: Path | str | None = None) -> Published:
    """Copy the primary (open read-write in ``con``; the caller holds the writer lock, so
    nothing else writes it) atomically onto the readers' path."""
    started = time.perf_counter()
    source = Path(db_path)
    target = Path(target) if target is not None else replica_path(source)
    con.execute("CHECKPOINT")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Copies left by a publisher that died mid-copy (we hold the writer lock: no other runs).
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        stale.unlink(missing_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with private_files():
        out = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 0
        with open(source, "rb") as src:
            while chunk := src.read(COPY_CHUNK):
                _write_all(out, chunk)
                size += len(chunk)
        os.fsync(out)
    except BaseException:
        os.close(out)
        temporary.unlink(missing_ok=True)
        raise
    os.close(out)
    os.replace(temporary, target)
    folder = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a crash
    finally:
        os.close(folder)
    seconds = time.perf_counter() - started
    log.info("published the readers' replica %s (%d bytes) in %.2f s", target, size, seconds)
    return Published(target, size, seconds)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
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
            f"no readers' replica at {replica}: it is published after each successful sync "
            f"(or run `pwh publish --db {path}`)"
        )
    return connect(replica, read_only=True)
