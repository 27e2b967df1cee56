"""One writer per warehouse file, across processes: an advisory lock on ``<db>.lock``.

DuckDB's own file lock already refuses a second writer, but only once the second one
opens the file, and it cannot wait. This lock is taken before the database is opened
and is what lets a scheduled run *wait* for a manual sync (or another source's run) to
finish, while a manual ``pwh sync`` fails at once. The kernel drops it when the holder
dies, SIGKILL included, so it can never go stale. The holder's pid is written into the
file so the refusal can name it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pwh.warehouse.connection import WarehouseBusyError, connect, private_files

POLL_S = 0.5


def lock_path(db_path: Path | str) -> Path:
    db_path = Path(db_path)
    return db_path.with_name(db_path.name + ".lock")


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid.isdigit() else "another process"


@contextmanager
def writer_lock(db_path: Path | str, *, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the warehouse's writer lock; wait up to ``wait_s`` seconds for it (0: fail at
    once) and raise :class:`WarehouseBusyError` naming the holder if it stays taken."""
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with private_files():
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + max(wait_s, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    waited = f" after waiting {wait_s:.0f} s" if wait_s > 0 else ""
                    raise WarehouseBusyError(
                        f"{db_path} is being written by {_holder(path)} (another pwh sync or "
                        f"a scheduled run){waited}; one writer at a time: wait for it to finish "
                        "and retry"
                    ) from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def open_writer(db_path: Path | str, *, wait_s: float = 0.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """The writer lock, then a read-write connection. Within ``wait_s`` a DuckDB lock held
    by a reader (a notebook, a BI tool) is waited for too; past it the error says who."""
    deadline = time.monotonic() + max(wait_s, 0.0)
    # The whole session under an owner-only umask: the WAL is created again after every
    # checkpoint, long after the database file itself.
    with writer_lock(db_path, wait_s=wait_s), private_files():
        while True:
            try:
                con = connect(db_path)
                break
            except WarehouseBusyError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(POLL_S)
        try:
            yield con
        finally:
            con.close()
