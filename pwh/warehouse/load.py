"""Loading: each batch of units (projects) replaces those units' rows in every table of
the source, their quarantined records and their sync state, in one transaction. A crash
leaves every project either as it was or wholly replaced, and state never runs ahead of
data."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import orjson
import polars as pl

from pwh.schemas import pipeline
from pwh.schemas.spec import Table
from pwh.transforms.frames import RejectedRecord, RowIssue, dimension_unit
from pwh.warehouse.connection import transaction
from pwh.warehouse.crashpoints import crash_point


@dataclass(frozen=True)
class UnitState:
    cursor: str | None
    deleted: bool
    run_id: str | None = None  # the run that last loaded the unit


def read_state(con: duckdb.DuckDBPyConnection, source: str, account: str) -> dict[str, UnitState]:
    rows = con.execute(
        "SELECT unit_key, cursor, deleted_at IS NOT NULL, run_id FROM pipeline.unit_state WHERE source = ? AND account = ?",
        [source, account],
    ).fetchall()
    return {key: UnitState(cursor, deleted, run_id) for key, cursor, deleted, run_id in rows}


def replace_units(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    account: str,
    run_id: str,
    tables: Sequence[Table],
    cursors: Mapping[str, str | None],
    frames: Mapping[str, pl.DataFrame],
    rejected: Iterable[RejectedRecord],
    now: datetime,
    stored: Collection[str] | None = None,
    partial_tables: Collection[str] = (),
    issues: Iterable[RowIssue] = (),
) -> dict[str, int]:
    """Replace the units named in ``cursors`` (unit key → cursor) as one transaction: their
    rows, quarantined records (``rejected``) and field issues (``issues``).
    ``stored`` names those whose earlier rows must go (None: any may have some); a unit
    without committed state has none, and skipping its DELETEs halves a first sync's load.

    ``partial_tables`` are tables the fetch saw only in part (a RAYTeams strategy that
    cannot see every kind of record): a row missing there is no evidence that it is gone,
    so the units' rows there are kept, and rows the batch carries replace those of the
    same key. Likewise their quarantined records: kept, unless the batch quarantines a
    record of the same key again.

    Returns rows inserted per table."""
    replaced = list(cursors) if stored is None else list(stored)
    units = pl.DataFrame({"unit_key": replaced}, schema={"unit_key": pl.Utf8})
    quarantine = _rejected_frame(source, account, run_id, rejected, now)
    field_issues = _issues_frame(source, account, run_id, issues, now)
    state = pl.DataFrame(
        {"unit_key": list(cursors), "cursor": list(cursors.values())},
        schema={"unit_key": pl.Utf8, "cursor": pl.Utf8},
    )
    inserted: dict[str, int] = {}
    with transaction(con):
        con.register("batch_units", units)
        for table in tables:
            frame = frames.get(table.name)
            if table.name in partial_tables:
                if frame is not None and frame.height:
                    _delete_same_keys(con, table, frame)
            elif replaced:
                con.execute(
                    f"DELETE FROM {table.qualified_name} WHERE account = ? "
                    f"AND {table.unit_column} IN (SELECT unit_key FROM batch_units)",
                    [account],
                )
            if frame is not None and frame.height:
                con.register("batch_rows", frame)
                con.execute(f"INSERT INTO {table.qualified_name} BY NAME SELECT * FROM batch_rows")
                con.unregister("batch_rows")
            inserted[table.name] = 0 if frame is None else frame.height
        kept = list(partial_tables)
        for table, rows in ((pipeline.REJECTED_RECORDS, quarantine), (pipeline.FIELD_ISSUES, field_issues)):
            con.register("batch_pipeline_rows", rows)
            if replaced:
                con.execute(
                    f"DELETE FROM {table.qualified_name} WHERE source = ? AND account = ? "
                    "AND unit_key IN (SELECT unit_key FROM batch_units) "
                    "AND (coalesce(table_name NOT IN (SELECT unnest(?::VARCHAR[])), TRUE) "
                    "     OR record_key IN (SELECT record_key FROM batch_pipeline_rows))",
                    [source, account, kept],
                )
            if rows.height:
                # Numbered after the unit's kept rows (none unless partial tables).
                con.execute(
                    f"INSERT INTO {table.qualified_name} BY NAME SELECT * REPLACE (seq + coalesce(("
                    f"SELECT max(r.seq) + 1 FROM {table.qualified_name} r WHERE r.source = b.source "
                    "AND r.account = b.account AND r.unit_key = b.unit_key), 0) AS seq) FROM batch_pipeline_rows b"
                )
            con.unregister("batch_pipeline_rows")
        con.register("batch_state", state)
        con.execute(
            """
            MERGE INTO pipeline.unit_state AS s
            USING (SELECT ? AS source, ? AS account, unit_key, cursor FROM batch_state) AS n
            ON s.source = n.source AND s.account = n.account AND s.unit_key = n.unit_key
            WHEN MATCHED THEN UPDATE SET cursor = n.cursor, synced_at = ?, run_id = ?, deleted_at = NULL
            WHEN NOT MATCHED THEN INSERT (source, account, unit_key, cursor, first_seen_at, synced_at, run_id, deleted_at)
                VALUES (n.source, n.account, n.unit_key, n.cursor, ?, ?, ?, NULL)
            """,
            [source, account, now, run_id, now, now, run_id],
        )
        con.unregister("batch_state")
        con.unregister("batch_units")
        crash_point("load-before-commit")
    crash_point("load-after-commit")
    return inserted


def _delete_same_keys(con: duckdb.DuckDBPyConnection, table: Table, frame: pl.DataFrame) -> None:
    """Delete the rows of ``table`` whose key a batch frame carries (an upsert's first half)."""
    con.register("batch_keys", frame.select(list(table.key)))
    match = " AND ".join(f"t.{column} = k.{column}" for column in table.key)
    con.execute(f"DELETE FROM {table.qualified_name} t USING batch_keys k WHERE {match}")
    con.unregister("batch_keys")


def mark_deleted(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    account: str,
    unit_keys: Iterable[str],
    tables: Sequence[Table],
    now: datetime,
) -> int:
    """Mark vanished units deleted (their rows stay queryable). Returns how many were newly marked."""
    keys = sorted(set(unit_keys))
    if not keys:
        return 0
    units = pl.DataFrame({"unit_key": keys}, schema={"unit_key": pl.Utf8})
    with transaction(con):
        con.register("gone_units", units)
        newly = con.execute(
            "UPDATE pipeline.unit_state SET deleted_at = ? WHERE source = ? AND account = ? "
            "AND deleted_at IS NULL AND unit_key IN (SELECT unit_key FROM gone_units)",
            [now, source, account],
        ).fetchall()[0][0]
        for table in tables:
            if "deleted_at" in table.managed:
                con.execute(
                    f"UPDATE {table.qualified_name} SET deleted_at = ? WHERE account = ? AND deleted_at IS NULL "
                    f"AND {table.unit_column} IN (SELECT unit_key FROM gone_units)",
                    [now, account],
                )
        con.unregister("gone_units")
        crash_point("mark-deleted-before-commit")
    return int(newly)


def _rejected_frame(
    source: str, account: str, run_id: str, rejected: Iterable[RejectedRecord], now: datetime
) -> pl.DataFrame:
    return _per_unit_frame(pipeline.REJECTED_RECORDS, source, account, run_id, (
        (record.unit_key, {
            "table_name": record.table, "record_key": record.record_key,
            "reasons": orjson.dumps(list(record.reasons)).decode(), "raw": record.raw_json, "rejected_at": now,
        })
        for record in rejected
    ))


def _issues_frame(
    source: str, account: str, run_id: str, issues: Iterable[RowIssue], now: datetime
) -> pl.DataFrame:
    return _per_unit_frame(pipeline.FIELD_ISSUES, source, account, run_id, (
        (located.unit_key, {
            "table_name": located.table, "record_key": located.record_key, "field": located.issue.field,
            "reason": located.issue.reason, "value_description": located.issue.value, "seen_at": now,
        })
        for located in issues
    ))


def _per_unit_frame(
    table: Table, source: str, account: str, run_id: str, entries: Iterable[tuple[str, dict[str, Any]]]
) -> pl.DataFrame:
    """Rows of a pipeline table kept per unit (quarantine, field issues), numbered ``seq``
    within their unit."""
    columns: dict[str, list] = {name: [] for name in table.polars_schema}
    seq_by_unit: dict[str, int] = {}
    for unit_key, values in entries:
        seq = seq_by_unit.get(unit_key, 0)
        seq_by_unit[unit_key] = seq + 1
        row = {"source": source, "account": account, "unit_key": unit_key, "seq": seq, "run_id": run_id, **values}
        for name, column in columns.items():
            column.append(row[name])
    return pl.DataFrame(columns, schema=table.polars_schema, strict=True)


def load_dimensions(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    account: str,
    run_id: str,
    tables: Sequence[Table],
    frames: Mapping[str, pl.DataFrame],
    rejected: Iterable[RejectedRecord],
    issues: Iterable[RowIssue],
    now: datetime,
    upserted: Collection[str] = (),
) -> dict[str, int]:
    """Load an account's dimension tables (per account, not per unit) in one transaction:
    each table in ``frames`` replaces the account's rows of that table (``upserted``
    tables: only the rows of the same key), with its quarantined rows and field issues
    (kept under :func:`dimension_unit`). A table not in ``frames`` (its stream was not
    fetched) is left as it is. Returns rows inserted per table."""
    loaded = [table for table in tables if table.name in frames]
    units = pl.DataFrame({"unit_key": [dimension_unit(t.name) for t in loaded]}, schema={"unit_key": pl.Utf8})
    quarantine = _rejected_frame(source, account, run_id, rejected, now)
    field_issues = _issues_frame(source, account, run_id, issues, now)
    inserted: dict[str, int] = {}
    with transaction(con):
        for table in loaded:
            frame = frames[table.name]
            if table.name in upserted:
                if frame.height:
                    _delete_same_keys(con, table, frame)
            else:
                con.execute(f"DELETE FROM {table.qualified_name} WHERE account = ?", [account])
            if frame.height:
                con.register("dimension_rows", frame)
                con.execute(f"INSERT INTO {table.qualified_name} BY NAME SELECT * FROM dimension_rows")
                con.unregister("dimension_rows")
            inserted[table.name] = frame.height
        con.register("dimension_units", units)
        for table, rows in ((pipeline.REJECTED_RECORDS, quarantine), (pipeline.FIELD_ISSUES, field_issues)):
            con.execute(
                f"DELETE FROM {table.qualified_name} WHERE source = ? AND account = ? "
                "AND unit_key IN (SELECT unit_key FROM dimension_units)",
                [source, account],
            )
            if rows.height:
                con.register("dimension_pipeline_rows", rows)
                con.execute(f"INSERT INTO {table.qualified_name} BY NAME SELECT * FROM dimension_pipeline_rows")
                con.unregister("dimension_pipeline_rows")
        con.unregister("dimension_units")
        crash_point("load-before-commit")
    return inserted
