"""Loading: each batch of units (projects) replaces those units' rows in every table of
the source, their quarantined records and their sync state, in one transaction. A crash
leaves every project either as it was or wholly replaced, and state never runs ahead of
data."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import orjson
import polars as pl

from pwh.errors import PwhError
from pwh.schemas import pipeline
from pwh.schemas.rows import RejectedRecord, RowIssue, dimension_unit
from pwh.schemas.spec import Table
from pwh.warehouse.connection import transaction
from pwh.warehouse.crashpoints import crash_point


@dataclass(frozen=True, slots=True)
class UnitState:
    cursor: str | None
    deleted: bool
    run_id: str | None = None  # the run that last loaded the unit
    missing_streams: frozenset[str] = frozenset()  # streams it was loaded without


# Rows of pipeline.unit_state read at a time: the whole result as tuples would double the peak.
STATE_CHUNK = 10_000


def read_state(con: duckdb.DuckDBPyConnection, source: str, account: str) -> dict[str, UnitState]:
    """Every unit's committed state. A run holds it whole (an account of 200,000 projects:
    ~260 bytes a unit, ~600 before the run ids and stream sets were shared: an empty
    frozenset alone is 216 bytes, and DuckDB gives every row its own strings)."""
    result = con.execute(
        "SELECT unit_key, cursor, deleted_at IS NOT NULL, run_id, missing_streams FROM pipeline.unit_state "
        "WHERE source = ? AND account = ?",
        [source, account],
    )
    states: dict[str, UnitState] = {}
    run_ids: dict[str | None, str | None] = {}
    stream_sets: dict[str, frozenset[str]] = {}
    none: frozenset[str] = frozenset()
    while rows := result.fetchmany(STATE_CHUNK):
        for key, cursor, deleted, run_id, missing in rows:
            streams = stream_sets.get(missing) if missing else none
            if streams is None:
                streams = stream_sets[missing] = frozenset(missing.split(","))
            states[key] = UnitState(cursor, deleted, run_ids.setdefault(run_id, run_id), streams)
    return states


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
    kept_tables: Mapping[str, Collection[str]] | None = None,
    missing_streams: Mapping[str, Collection[str]] | None = None,
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

    ``kept_tables`` (unit → tables) are tables a unit's rows stay in as they are: a stream
    that feeds them was skipped (excluded, or forbidden); ``missing_streams`` (unit →
    streams) is recorded in its state, so that a run fetching them refetches the unit.

    Returns rows inserted per table."""
    quarantine = quarantine_frame(source, account, run_id, rejected, now)
    field_issues = issues_frame(source, account, run_id, issues, now)
    with transaction(con):
        inserted = write_units(con, source=source, account=account, run_id=run_id, tables=tables, cursors=cursors,
                               frames=frames, quarantine=quarantine, field_issues=field_issues, now=now,
                               stored=stored, partial_tables=partial_tables, kept_tables=kept_tables,
                               missing_streams=missing_streams)
        crash_point("load-before-commit")
    crash_point("load-after-commit")
    return inserted


def write_units(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    account: str,
    run_id: str,
    tables: Sequence[Table],
    cursors: Mapping[str, str | None],
    frames: Mapping[str, pl.DataFrame],
    quarantine: pl.DataFrame,
    field_issues: pl.DataFrame,
    now: datetime,
    stored: Collection[str] | None = None,
    partial_tables: Collection[str] = (),
    kept_tables: Mapping[str, Collection[str]] | None = None,
    missing_streams: Mapping[str, Collection[str]] | None = None,
) -> dict[str, int]:
    """The statements of :func:`replace_units`, inside the caller's transaction (the shard
    loader applies a whole shard in one); ``quarantine`` and ``field_issues`` are the
    frames :func:`quarantine_frame` and :func:`issues_frame` build."""
    replaced = list(cursors) if stored is None else list(stored)
    units = pl.DataFrame({"unit_key": replaced}, schema={"unit_key": pl.Utf8})
    missing = missing_streams or {}
    state = pl.DataFrame(
        {"unit_key": list(cursors), "cursor": list(cursors.values()),
         "missing_streams": [",".join(sorted(missing[key])) if missing.get(key) else None for key in cursors]},
        schema={"unit_key": pl.Utf8, "cursor": pl.Utf8, "missing_streams": pl.Utf8},
    )
    kept = pl.DataFrame(
        [(key, table) for key, tables in (kept_tables or {}).items() for table in tables],
        schema={"unit_key": pl.Utf8, "table_name": pl.Utf8}, orient="row",
    )
    inserted: dict[str, int] = {}
    for table in tables:
        frame = frames.get(table.name)
        _check_units(table, frame, cursors)
        if table.name in partial_tables:
            if frame is not None and frame.height:
                _delete_same_keys(con, table, frame)
        elif replaced:
            execute_with(
                con,
                f"DELETE FROM {table.qualified_name} WHERE account = ? "
                f"AND {table.unit_column} IN (SELECT unit_key FROM batch_units) "
                f"AND {table.unit_column} NOT IN (SELECT unit_key FROM batch_kept WHERE table_name = ?)",
                [account, table.name], batch_units=units, batch_kept=kept,
            )
        if frame is not None and frame.height:
            execute_with(con, f"INSERT INTO {table.qualified_name} BY NAME SELECT * FROM batch_rows", batch_rows=frame)
        inserted[table.name] = 0 if frame is None else frame.height
    partial = list(partial_tables)
    for table, rows in ((pipeline.REJECTED_RECORDS, quarantine), (pipeline.FIELD_ISSUES, field_issues)):
        if replaced:
            execute_with(
                con,
                f"DELETE FROM {table.qualified_name} WHERE source = ? AND account = ? "
                "AND unit_key IN (SELECT unit_key FROM batch_units) "
                "AND (coalesce(table_name NOT IN (SELECT unnest(?::VARCHAR[])), TRUE) "
                "     OR record_key IN (SELECT record_key FROM batch_pipeline_rows)) "
                "AND NOT EXISTS (SELECT 1 FROM batch_kept k WHERE k.unit_key = "
                f"{table.qualified_name}.unit_key AND k.table_name = {table.qualified_name}.table_name)",
                [source, account, partial], batch_units=units, batch_pipeline_rows=rows, batch_kept=kept,
            )
        if rows.height:
            # Numbered after the unit's kept rows (none unless partial tables).
            execute_with(
                con,
                f"INSERT INTO {table.qualified_name} BY NAME SELECT * REPLACE (seq + coalesce(("
                f"SELECT max(r.seq) + 1 FROM {table.qualified_name} r WHERE r.source = b.source "
                "AND r.account = b.account AND r.unit_key = b.unit_key), 0) AS seq) FROM batch_pipeline_rows b",
                batch_pipeline_rows=rows,
            )
    execute_with(
        con,
        """
        MERGE INTO pipeline.unit_state AS s
        USING (SELECT ? AS source, ? AS account, unit_key, cursor, missing_streams FROM batch_state) AS n
        ON s.source = n.source AND s.account = n.account AND s.unit_key = n.unit_key
        WHEN MATCHED THEN UPDATE SET cursor = n.cursor, synced_at = ?, run_id = ?, deleted_at = NULL,
            missing_streams = n.missing_streams
        WHEN NOT MATCHED THEN INSERT (source, account, unit_key, cursor, first_seen_at, synced_at, run_id, deleted_at,
                                      missing_streams)
            VALUES (n.source, n.account, n.unit_key, n.cursor, ?, ?, ?, NULL, n.missing_streams)
        """,
        [source, account, now, run_id, now, now, run_id], batch_state=state,
    )
    return inserted


class StrayRowsError(PwhError, RuntimeError):
    """A batch carried rows of a unit it does not replace (a transform's bug)."""


def _check_units(table: Table, frame: pl.DataFrame | None, cursors: Mapping[str, str | None]) -> None:
    """Refuse rows of units outside the batch. A child table's key is unique only because
    every row holds a unit whose rows the load deleted first (Table.enforces_key)."""
    if frame is None or not frame.height or table.unit_column is None:
        return
    units = frame.get_column(table.unit_column)
    strays = units.filter(~units.is_in(list(cursors))).unique(maintain_order=True)
    if strays.len():
        named = ", ".join(map(str, strays.head(3).to_list()))
        raise StrayRowsError(f"{table.qualified_name}: the batch carried rows of {strays.len()} project(s) it does "
                             f"not replace ({named}); nothing of it was written: report this as a bug of pwh")


def execute_with(con: duckdb.DuckDBPyConnection, sql: str, parameters: Sequence[Any] | None = None,
                 **frames: pl.DataFrame) -> list[Any]:
    """``sql`` with each of ``frames`` as a view of that name for this one statement; its rows.

    DuckDB reads a frame through its Arrow stream (the PyCapsule interface), not through
    pyarrow, which registering the polars frame itself imports (~30 MB of a sync's peak).
    A stream is consumed by the one scan: a view serves one statement, registered anew
    for the next (a second scan would fail loudly, never read nothing)."""
    for name, frame in frames.items():
        con.register(name, frame.__arrow_c_stream__())
    try:
        rows = con.execute(sql, parameters).fetchall()
    except BaseException:
        # The failed statement aborted the transaction, so DuckDB refuses the unregister
        # too ("transaction is aborted"); the rollback drops the views. Raised from here,
        # that refusal would hide the real error (say, out of memory) from the user.
        for name in frames:
            with suppress(duckdb.Error):
                con.unregister(name)
        raise
    for name in frames:
        con.unregister(name)
    return rows


def _delete_same_keys(con: duckdb.DuckDBPyConnection, table: Table, frame: pl.DataFrame) -> None:
    """Delete the rows of ``table`` whose key a batch frame carries (an upsert's first half)."""
    match = " AND ".join(f"t.{column} = k.{column}" for column in table.key)
    execute_with(con, f"DELETE FROM {table.qualified_name} t USING batch_keys k WHERE {match}",
                 batch_keys=frame.select(list(table.key)))


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
    with transaction(con):
        newly = mark_units_deleted(con, source=source, account=account, unit_keys=keys, tables=tables, now=now)
        crash_point("mark-deleted-before-commit")
    return newly


def mark_units_deleted(
    con: duckdb.DuckDBPyConnection,
    *,
    source: str,
    account: str,
    unit_keys: Collection[str],
    tables: Sequence[Table],
    now: datetime,
) -> int:
    """The statements of :func:`mark_deleted`, inside the caller's transaction."""
    units = pl.DataFrame({"unit_key": sorted(set(unit_keys))}, schema={"unit_key": pl.Utf8})
    newly = execute_with(
        con,
        "UPDATE pipeline.unit_state SET deleted_at = ? WHERE source = ? AND account = ? "
        "AND deleted_at IS NULL AND unit_key IN (SELECT unit_key FROM gone_units)",
        [now, source, account], gone_units=units,
    )[0][0]
    for table in tables:
        if "deleted_at" in table.managed:
            execute_with(
                con,
                f"UPDATE {table.qualified_name} SET deleted_at = ? WHERE account = ? AND deleted_at IS NULL "
                f"AND {table.unit_column} IN (SELECT unit_key FROM gone_units)",
                [now, account], gone_units=units,
            )
    return int(newly)


def quarantine_frame(
    source: str, account: str, run_id: str, rejected: Iterable[RejectedRecord], now: datetime
) -> pl.DataFrame:
    return _per_unit_frame(pipeline.REJECTED_RECORDS, source, account, run_id, (
        (record.unit_key, {
            "table_name": record.table, "record_key": record.record_key,
            "reasons": orjson.dumps(list(record.reasons)).decode(), "raw": record.raw_json, "rejected_at": now,
        })
        for record in rejected
    ))


def issues_frame(
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
    columns: dict[str, list[Any]] = {name: [] for name in table.polars_schema}
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
    quarantine = quarantine_frame(source, account, run_id, rejected, now)
    field_issues = issues_frame(source, account, run_id, issues, now)
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
                execute_with(con, f"INSERT INTO {table.qualified_name} BY NAME SELECT * FROM dimension_rows",
                             dimension_rows=frame)
            inserted[table.name] = frame.height
        for table, rows in ((pipeline.REJECTED_RECORDS, quarantine), (pipeline.FIELD_ISSUES, field_issues)):
            execute_with(
                con,
                f"DELETE FROM {table.qualified_name} WHERE source = ? AND account = ? "
                "AND unit_key IN (SELECT unit_key FROM dimension_units)",
                [source, account], dimension_units=units,
            )
            if rows.height:
                execute_with(con, f"INSERT INTO {table.qualified_name} BY NAME SELECT * FROM dimension_pipeline_rows",
                             dimension_pipeline_rows=rows)
        crash_point("load-before-commit")
    return inserted
