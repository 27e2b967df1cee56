"""Helpers for comparing warehouses in tests. Every count and comparison also proves each
table's key unique: the file enforces only some keys (``Table.enforces_key``), the load
keeps the others unique, and every test that compares warehouses checks that it did."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import duckdb

from pwh.schemas import rayteams
from pwh.schemas.spec import Table


def duplicate_keys(con: duckdb.DuckDBPyConnection, tables: Sequence[Table]) -> dict[str, int]:
    """Per table, the rows beyond the first of each key (none: every key is unique)."""
    found = {}
    for table in tables:
        extra = con.execute(
            f"SELECT count(*) - (SELECT count(*) FROM (SELECT DISTINCT {', '.join(table.key)} "
            f"FROM {table.qualified_name})) FROM {table.qualified_name}"
        ).fetchall()[0][0]
        if extra:
            found[table.qualified_name] = extra
    return found


def assert_keys_unique(con: duckdb.DuckDBPyConnection, tables: Sequence[Table]) -> None:
    duplicates = duplicate_keys(con, tables)
    assert not duplicates, f"rows sharing a key: {duplicates}"


def table_counts(db: Path, tables: Sequence[Table] = rayteams.TABLES) -> dict[str, int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert_keys_unique(con, tables)
        counts = {t.name: con.execute(f"SELECT count(*) FROM {t.qualified_name}").fetchall()[0][0] for t in tables}
        counts["rejected_records"] = con.execute("SELECT count(*) FROM pipeline.rejected_records").fetchall()[0][0]
        return counts
    finally:
        con.close()


def content_hashes(db: Path, *, exclude: tuple[str, ...] = (), tables: Sequence[Table] = rayteams.TABLES) -> dict[str, str]:
    """A content hash of every RAYTeams table (rows in key order), of the quarantine and of
    the field issues (without their run id and time)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert_keys_unique(con, tables)
        hashes = {}
        for table in tables:
            cols = [c.name for c in table.columns if c.name not in exclude]
            rows = con.execute(
                f"SELECT {', '.join(cols)} FROM {table.qualified_name} ORDER BY {', '.join(table.key)}"
            ).fetchall()
            hashes[table.name] = hashlib.sha256(repr(rows).encode()).hexdigest()
        rows = con.execute(
            "SELECT unit_key, seq, table_name, record_key, reasons, raw FROM pipeline.rejected_records ORDER BY ALL"
        ).fetchall()
        hashes["rejected_records"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        rows = con.execute(
            "SELECT source, account, unit_key, seq, table_name, record_key, field, reason, value_description "
            "FROM pipeline.field_issues ORDER BY ALL"
        ).fetchall()
        hashes["field_issues"] = hashlib.sha256(repr(rows).encode()).hexdigest()
        return hashes
    finally:
        con.close()
