"""Opening the warehouse file: one writer at a time, private file permissions, a clear
error when another process holds it."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from pwh.errors import PwhError
from pwh.settings import DEFAULT_DUCKDB_MEMORY, DUCKDB_MEMORY, duckdb_memory, environment_value
from pwh.warehouse.integrity import damaged, out_of_memory

DEFAULT_PATH = Path("warehouse.duckdb")
# Files readable by DuckDB 1.4+ clients too (BI tools often embed 1.x); 2.0's own format
# would lock them out, and the pipeline needs nothing that only 2.0 storage offers.
STORAGE_COMPATIBILITY = "v1.4.0"


class WarehouseBusyError(PwhError, RuntimeError):
    """Another process has the warehouse file open."""


class WarehouseMemoryError(PwhError, MemoryError):
    """DuckDB could not get the memory a statement needed (a write's transaction is rolled back)."""


_umask_lock = threading.Lock()
_umask_holders = 0
_umask_saved = 0


@contextmanager
def private_files() -> Iterator[None]:
    """Files created inside (the database, its WAL) are readable by their owner only.

    The umask is per process: nested or concurrent holders (two syncs in one process)
    share one restrictive umask, restored when the last one leaves. DuckDB deletes the
    WAL at each checkpoint and creates it again at the next write, so a writer holds this
    for as long as its connection is open (see ``warehouse.lock.open_writer``)."""
    global _umask_holders, _umask_saved
    with _umask_lock:
        if _umask_holders == 0:
            _umask_saved = os.umask(0o077)
        _umask_holders += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_holders -= 1
            if _umask_holders == 0:
                os.umask(_umask_saved)


def connect(path: Path | str, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file; a writer's DuckDB memory limit is ``PWH_DUCKDB_MEMORY`` (else
    pwh's default: :func:`~pwh.settings.duckdb_memory`), a reader's DuckDB's own default."""
    path = Path(path)
    config: dict[str, str | bool | int | float | list[str]] = {}
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
        config["storage_compatibility_version"] = STORAGE_COMPATIBILITY
        config["memory_limit"] = f"{duckdb_memory(path)}B"
    try:
        with private_files():
            con = duckdb.connect(str(path), read_only=read_only, config=config)
    except duckdb.Error as exc:
        message = str(exc)
        if isinstance(exc, duckdb.IOException) and "lock" in message.lower():
            holder = re.search(r"\(PID (\d+)\)", message)
            who = f"process {holder.group(1)}" if holder else "another process"
            raise WarehouseBusyError(
                f"{path} is in use by {who} (a sync, or a reader such as a notebook); "
                "DuckDB allows one writer at a time: wait for it to finish and retry"
            ) from None
        if not read_only and path.exists() and "permission denied" not in message.lower():
            if out_of_memory(exc):  # replaying its write-ahead log under the limit: not damage
                raise memory_error("opening the warehouse (replaying its write-ahead log)") from None
            raise damaged(path, message) from None  # the primary is there but does not open
        raise
    if not read_only:
        os.chmod(path, 0o600)
    return con


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, rolled back on any error (DuckDB's COMMIT after a failed statement
    commits nothing and says nothing, so errors must never reach it)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException as exc:
        con.execute("ROLLBACK")
        _raise_if_out_of_memory(exc, "writing the warehouse")
        raise
    try:
        con.execute("COMMIT")
    except duckdb.Error as exc:
        # A COMMIT that fails ends the transaction, rolled back. Out of memory there (the
        # usual way once the primary-key indexes outgrow a limit) reads "Failed to commit:
        # could not allocate block" in a TransactionException.
        _raise_if_out_of_memory(exc, "committing to the warehouse")
        raise


def _raise_if_out_of_memory(exc: BaseException, doing: str) -> None:
    if out_of_memory(exc):
        raise memory_error(doing, "nothing of that transaction was written") from exc


def memory_error(doing: str, outcome: str | None = None, *, writer: bool = True) -> WarehouseMemoryError:
    """The one-line error for DuckDB running out of memory while ``doing``, naming its limit
    and what to change. ``writer``: on a sync's connection (else it may be a reader's too)."""
    if DUCKDB_MEMORY.read() is not None:
        limit = f"{DUCKDB_MEMORY.name}={(environment_value(DUCKDB_MEMORY.name) or '').strip()}"
    else:
        limit = f"pwh's default, {DEFAULT_DUCKDB_MEMORY >> 20}MiB or a quarter of the file"
    where = f"its limit: {limit}" if writer else f"a sync's limit: {limit}; a reader's: DuckDB's, 80% of the memory"
    fix = f"raise {DUCKDB_MEMORY.name} (e.g. 2GB), or free memory on this machine"
    return WarehouseMemoryError(f"DuckDB ran out of memory {doing} ({where})" + (f"; {outcome}" if outcome else "")
                                + f": {fix}")
