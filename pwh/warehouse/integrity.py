"""Is a warehouse file whole? Checked before a sync writes into the primary and before a
copy of it replaces the readers' replica.

DuckDB 2.0 has no integrity-check pragma, but it verifies a checksum of every block it
reads; ``count(*)`` alone reads none (it is answered from the table's metadata), so a
damaged file passes it. Every table is therefore scanned whole: ``sum(hash(row))`` makes
DuckDB read every block of every column. Measured on this machine: 0.06 s for 9 tables of
1.8 M rows (10 MB), 0.26 s for 5 tables of 10 M rows (220 MB). A file truncated to half, a zeroed
block in the middle and a garbage header were each caught, at open or by the scan.

The scan reads the whole file through DuckDB's buffer pool, which keeps what it read up to
its memory limit (DuckDB's default: 80% of the machine's memory): a warehouse of 200,000 RAYTeams
projects (1.4 GB) took a no-change sync from 166 to 478 MB before it had listed anything.
So the scan first runs under :data:`SCAN_MEMORY`, evicting the blocks it read as it goes.
What a scan needs grows with DuckDB's threads (one per core) and the tables' columns; where
the bound is too small (many cores, wide tables, a user's ``PWH_DUCKDB_MEMORY`` below it), or
cannot be set (a replayed WAL's index already holds more), the scan runs again under the
connection's own limit. Running out of memory is never reported as damage: it is raised as
``duckdb.OutOfMemoryException``, which ``pwh`` reports in one line naming ``PWH_DUCKDB_MEMORY``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import duckdb

from pwh.errors import PwhError
from pwh.settings import duckdb_memory

log = logging.getLogger("pwh.integrity")

# DuckDB's memory limit an integrity scan first tries (bytes): small beside a large file, and
# enough for the streaming aggregate over this project's tables on a few cores.
SCAN_MEMORY = 64 << 20


class WarehouseDamagedError(PwhError, RuntimeError):
    """A warehouse file does not open, or a table of it does not read."""


def recovery_hint(db_path: Path | str) -> str:
    return (f"restore it from the readers' replica with `pwh restore --db {db_path}`, or move it aside "
            "and sync every source into a new file (--full-refresh)")


# How DuckDB words running out of memory outside an OutOfMemoryException: a COMMIT's
# TransactionException ("Failed to commit: could not allocate block of size …", "… failed to
# pin block …"), a write-ahead log replayed at open in an InternalException ("Failure while
# replaying WAL … Out of Memory Error …").
_MEMORY_SHORT = re.compile(r"Out of Memory|could not allocate|failed to allocate|failed to pin block", re.IGNORECASE)


def out_of_memory(exc: BaseException) -> bool:
    """Whether a DuckDB error says that DuckDB ran out of memory. Such a file is unproven,
    never damaged: nothing may replace it on that ground."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return True
    return isinstance(exc, duckdb.Error) and _MEMORY_SHORT.search(str(exc)) is not None


def damaged(db_path: Path | str, detail: str) -> WarehouseDamagedError:
    """The one-line error for a damaged primary: what is wrong and how to recover."""
    return WarehouseDamagedError(f"{db_path} is damaged ({first_line(detail)}): {recovery_hint(db_path)}")


def first_line(text: str, limit: int = 200) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else "no detail"
    return line[:limit]


def read_every_table(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Scan every table of the connection's database whole; return its row counts.
    Raises ``duckdb.Error`` at the first block that does not read back."""
    return _counts(con, "count(*), sum(hash(t))")


def row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Every table's row count, as its metadata says (cheap: reads no data blocks)."""
    return _counts(con, "count(*)")


def _counts(con: duckdb.DuckDBPyConnection, aggregates: str) -> dict[str, int]:
    """``aggregates`` (the row count first) of every table, in one query: a statement per
    table cost more than the scans of a 2,000-project warehouse."""
    tables = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "ORDER BY ALL"
    ).fetchall()
    if not tables:
        return {}
    query = " UNION ALL ".join(f'SELECT {i}, {aggregates} FROM "{schema}"."{table}" t'
                               for i, (schema, table) in enumerate(tables))
    counts = {row[0]: row[1] for row in con.execute(query).fetchall()}
    return {f"{schema}.{table}": counts[i] for i, (schema, table) in enumerate(tables)}


def check_primary(con: duckdb.DuckDBPyConnection, db_path: Path | str) -> dict[str, int]:
    """Every table of the open primary reads, or :class:`WarehouseDamagedError` saying how to recover."""
    try:
        return _bounded(lambda: _scan_under_bound(con, Path(db_path)), lambda: read_every_table(con))
    except duckdb.Error as exc:
        if out_of_memory(exc):
            raise  # the machine's (or PWH_DUCKDB_MEMORY's) memory, not the file
        raise damaged(db_path, str(exc)) from None


def _scan_under_bound(con: duckdb.DuckDBPyConnection, db_path: Path) -> dict[str, int]:
    """read_every_table under :data:`SCAN_MEMORY` (or a sync's limit if lower), then the
    connection's own limit again (``PWH_DUCKDB_MEMORY``, else pwh's default)."""
    limit = duckdb_memory(db_path)
    con.execute(f"SET memory_limit = '{min(SCAN_MEMORY, limit)}B'")
    try:
        return read_every_table(con)
    finally:
        con.execute(f"SET memory_limit = '{limit}B'")


def _bounded(bounded: Callable[[], dict[str, int]], unbounded: Callable[[], dict[str, int]]) -> dict[str, int]:
    """``bounded()``; if it runs out of memory (the bound too small here, or not settable), ``unbounded()``."""
    try:
        return bounded()
    except duckdb.Error as exc:
        if not out_of_memory(exc):
            raise
        log.info("the integrity scan needed more than %d MB here; scanning again under the connection's own limit",
                 SCAN_MEMORY >> 20)
    return unbounded()


def check_copy(path: Path | str) -> dict[str, int]:
    """Open a file read-only and read every table; ``duckdb.Error`` if it does not
    (``duckdb.OutOfMemoryException`` when the machine's memory, not the file, is short)."""
    return _bounded(lambda: _read_copy(path, SCAN_MEMORY), lambda: _read_copy(path, None))


def _read_copy(path: Path | str, memory: int | None) -> dict[str, int]:
    con = duckdb.connect(str(path), read_only=True, config={} if memory is None else {"memory_limit": f"{memory}B"})
    try:
        return read_every_table(con)
    finally:
        con.close()
