"""The one-pass check (``passes_all_checks``) must say "clean" exactly when pandera accepts
the frame and no key repeats: a batch it passes is loaded without pandera's own run.

Frames are generated for every table of the catalog, with values drawn around each
check's own bounds (``Check.statistics``), nulls in every column, and repeated keys."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pandera.errors
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwh.schemas.spec import UTC_MS, Table
from pwh.schemas.validate import passes_all_checks
from pwh.warehouse.catalog import all_tables

TABLES = [t for t in all_tables() if t.unit_column is not None]
FAST = settings(max_examples=20, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _near(value: object) -> list[object]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return [value]
    return [value - 1, value, value + 1]


def column_values(table: Table, name: str) -> st.SearchStrategy:
    """Values for one column: its check bounds and neighbours, a few others, and null."""
    column = next(c for c in table.loaded_columns if c.name == name)
    edges: list[object] = []
    for check in column.checks:
        for stat in check.statistics.values():
            edges.extend(v for s in (stat if isinstance(stat, (list, tuple, set, frozenset)) else [stat])
                         for v in _near(s))
    dtype = column.dtype
    if dtype == pl.Utf8():
        texts = [e for e in edges if isinstance(e, str)]
        base = st.sampled_from(texts + [t + "x" for t in texts] + ["x" + t for t in texts]) if texts else st.nothing()
        values = st.one_of(base, st.sampled_from(["", "a", "project:1"]))
    elif dtype == pl.Boolean():
        values = st.booleans()
    elif dtype == pl.Float64():
        values = st.one_of(st.sampled_from([float(e) for e in edges if isinstance(e, (int, float))] or [0.0]),
                           st.floats(allow_nan=True, allow_infinity=True))
    elif dtype == UTC_MS:
        values = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1),
                              timezones=st.just(timezone.utc))
    elif dtype == pl.Date():
        values = st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1))
    else:  # integers of some width
        bits = {pl.Int16(): 15, pl.Int32(): 31}.get(dtype, 63)
        ints = [int(e) for e in edges if isinstance(e, (int, float)) and abs(e) < 2**bits]
        values = st.one_of(st.sampled_from(ints or [0]), st.integers(-(2**bits), 2**bits - 1))
    return st.one_of(st.none(), values)


@st.composite
def table_frames(draw, table: Table) -> pl.DataFrame:
    rows = draw(st.integers(0, 6))
    columns = {name: draw(st.lists(column_values(table, name), min_size=rows, max_size=rows))
               for name in table.polars_schema}
    frame = pl.DataFrame(columns, schema=table.polars_schema)
    if rows and draw(st.booleans()):  # repeat a row's key
        frame = pl.concat([frame, frame.head(1)])
    return frame


def pandera_accepts(frame: pl.DataFrame, table: Table) -> bool:
    try:
        table.pandera_schema.validate(frame, lazy=True)
    except pandera.errors.SchemaErrors:
        return False
    return not frame.select(pl.struct(table.key).is_duplicated().any()).item()


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.qualified_name)
@FAST
@given(data=st.data())
def test_one_pass_agrees_with_pandera(table: Table, data) -> None:
    frame = data.draw(table_frames(table))
    assert passes_all_checks(frame, table) == pandera_accepts(frame, table)


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.qualified_name)
def test_every_check_can_fail_the_pass(table: Table) -> None:
    """Each null rule and each value check, broken alone in an otherwise clean row, fails
    the pass (so no check is silently skipped)."""
    clean = _clean_row(table)
    frame = pl.DataFrame([clean], schema=table.polars_schema)
    assert passes_all_checks(frame, table)
    for column in table.pandera_schema.columns.values():
        broken = []
        if not column.nullable:
            broken.append(None)
        broken += [_violating(check, table.polars_schema[column.name]) for check in column.checks]
        for value in broken:
            bad = pl.DataFrame([{**clean, column.name: value}], schema=table.polars_schema)
            assert not pandera_accepts(bad, table), (column.name, value)
            assert not passes_all_checks(bad, table), (column.name, value)


def test_a_frame_not_shaped_like_its_table_is_left_to_pandera() -> None:
    table = TABLES[0]
    frame = pl.DataFrame([_clean_row(table)], schema=table.polars_schema)
    assert not passes_all_checks(frame.drop(frame.columns[-1]), table)
    assert not passes_all_checks(frame.with_columns(pl.lit(1).alias("unexpected")), table)
    assert not passes_all_checks(frame.select(reversed(frame.columns)), table)


def _clean_row(table: Table) -> dict[str, object]:
    row: dict[str, object] = {}
    for column in table.loaded_columns:
        stats = {k: v for check in column.checks for k, v in check.statistics.items()}
        if "allowed_values" in stats:
            row[column.name] = min(stats["allowed_values"])
        elif "string" in stats:
            row[column.name] = f"{stats['string']}1"
        elif "min_value" in stats:
            row[column.name] = stats["min_value"]
        elif column.dtype == pl.Utf8():
            row[column.name] = "x"
        elif column.dtype == pl.Boolean():
            row[column.name] = True
        elif column.dtype == UTC_MS:
            row[column.name] = datetime(2024, 1, 1, tzinfo=timezone.utc)
        elif column.dtype == pl.Date():
            row[column.name] = date(2024, 1, 1)
        elif column.dtype == pl.Float64():
            row[column.name] = 1.0
        else:
            row[column.name] = 1
    return row


def _violating(check, dtype: pl.DataType) -> object:
    stats = check.statistics
    if "allowed_values" in stats:
        return "not-" + str(min(stats["allowed_values"]))
    if "string" in stats:
        return "x" + stats["string"]
    value = stats["min_value"] - 1
    return float(value) if dtype == pl.Float64() else value
