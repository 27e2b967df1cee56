"""Which key made the warehouse's pseudonyms (``pipeline.pseudonym_keys``).

A pseudonym made with another key names another patient as far as any join can tell, so
a sync with a key that is not the warehouse's, or with none (``PWH_PSEUDONYM_KEY`` unset
and the key file gone, when a new one would silently be made), is refused before anything
is fetched. The warehouse keeps the key's fingerprint, never the key.

Re-keying (``--rekey``) is explicit: in one transaction the new fingerprint is recorded,
every pseudonym and every JSON column (they hold pseudonyms too) of the source's tables is
set to NULL, its quarantined records are deleted and every unit's cursor is forgotten, so
every live project is fetched again and recomputed with the new key (the run is a full
refresh). Rows of projects deleted at the source cannot be recomputed (their raw values
are gone): they keep their other columns, with NULL pseudonyms, rather than keep
pseudonyms that would silently join with nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import duckdb

from pwh.errors import PwhError
from pwh.schemas.spec import Table
from pwh.settings import KEY_VARIABLE, PseudonymKey
from pwh.warehouse.connection import transaction

PSEUDONYM_SUFFIX = "_pseudonym"


class PseudonymKeyError(PwhError, RuntimeError):
    """The key at hand is not the one that made this warehouse's pseudonyms."""


def recorded_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute(
        "SELECT fingerprint FROM pipeline.pseudonym_keys ORDER BY recorded_at DESC LIMIT 1").fetchall()
    return rows[0][0] if rows else None


def settle_key(con: duckdb.DuckDBPyConnection, key: PseudonymKey, *, source: str, tables: Sequence[Table],
               run_id: str, rekey: bool = False) -> bool:
    """Check ``key`` against the warehouse's before a sync (recording it when the warehouse
    has none yet); returns whether the warehouse was re-keyed (then the run must be a full
    refresh). Raises :class:`PseudonymKeyError` naming the fix."""
    recorded = recorded_fingerprint(con)
    if recorded == key.fingerprint:
        return False
    pseudonymised = _holds_pseudonyms(con, tables)
    if recorded is None and not pseudonymised:
        key.keep()
        _record(con, key, "first sync", run_id)
        return False
    if rekey:
        key.keep()
        with transaction(con):
            _record(con, key, "re-key", run_id, in_transaction=True)
            _forget_pseudonyms(con, source, tables)
        return True
    if key.origin == "new":
        raise PseudonymKeyError(
            f"{KEY_VARIABLE} is unset and the key file {key.file} is missing, but this warehouse holds pseudonyms "
            f"made with a key: {_fix(key, recorded)}")
    if recorded is None:
        # A warehouse from before fingerprints were kept: its pseudonyms cannot tell which
        # key made them, so the configured key (from the environment or the file) is adopted.
        _record(con, key, "adopted", run_id)
        return False
    where = KEY_VARIABLE if key.origin == "environment" else f"the key file {key.file}"
    raise PseudonymKeyError(
        f"the pseudonym key from {where} (fingerprint {key.fingerprint[:12]}) is not the one that made this "
        f"warehouse's pseudonyms: {_fix(key, recorded)}")


def _fix(key: PseudonymKey, recorded: str | None) -> str:
    which = f" (fingerprint {recorded[:12]})" if recorded else ""
    return (f"set {KEY_VARIABLE} to the key that made this warehouse{which}, restore {key.file}, "
            "or re-key explicitly with --rekey (see docs/operations.md)")


def _holds_pseudonyms(con: duckdb.DuckDBPyConnection, tables: Sequence[Table]) -> bool:
    for table in tables:
        columns = [c.name for c in table.columns if c.name.endswith(PSEUDONYM_SUFFIX)]
        if columns:
            found = con.execute(f"SELECT 1 FROM {table.qualified_name} WHERE "
                                + " OR ".join(f"{c} IS NOT NULL" for c in columns) + " LIMIT 1").fetchall()
            if found:
                return True
    return False


def _record(con: duckdb.DuckDBPyConnection, key: PseudonymKey, reason: str, run_id: str, *,
            in_transaction: bool = False) -> None:
    statement = ("INSERT INTO pipeline.pseudonym_keys VALUES (?, ?, ?, ?)",
                 [key.fingerprint, datetime.now(timezone.utc), reason, run_id])
    if in_transaction:
        con.execute(*statement)
        return
    with transaction(con):
        con.execute(*statement)


def _forget_pseudonyms(con: duckdb.DuckDBPyConnection, source: str, tables: Sequence[Table]) -> None:
    for table in tables:
        columns = [c.name for c in table.columns if c.name.endswith(PSEUDONYM_SUFFIX) or c.is_json]
        if columns:
            con.execute(f"UPDATE {table.qualified_name} SET " + ", ".join(f"{c} = NULL" for c in columns))
    con.execute("DELETE FROM pipeline.rejected_records WHERE source = ?", [source])
    con.execute("UPDATE pipeline.unit_state SET cursor = NULL WHERE source = ?", [source])
