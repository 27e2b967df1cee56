"""Validate a table's rows of a batch; split them into rows that load and rows that are
quarantined with every reason pandera found.

pandera's polars backend collects once per column and per check (~5–50 ms a table, most of
a batch's CPU). So a batch first runs the table's pandera checks — null rules, dtypes and
each check as the polars expression pandera's backend evaluates for it — as one polars
pass; only a batch in which that pass finds something goes through
``DataFrameSchema.validate`` for the reasons. pandera's polars backend is imported then
only (~0.1 s and ~10 MB a run that finds nothing does without)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl
from pandera.api.checks import Check

from pwh.errors import PwhError
from pwh.schemas.rows import RejectedRecord, RowBuffer, raw_json
from pwh.schemas.spec import Table


class SchemaMismatchError(PwhError, RuntimeError):
    """A batch whose columns or dtypes differ from its table: a bug in a transform, not bad
    input, so the batch fails as a whole rather than quarantining every row."""


def split_valid(buffer: RowBuffer, redact: Callable[[Any], Any],
                unit_redactors: Mapping[str, Callable[[Any], Any]] | None = None,
                ) -> tuple[pl.DataFrame, list[RejectedRecord]]:
    """The rows that load and the records quarantined. A quarantined row's field issues
    become reasons of its record and leave ``buffer.issues``, which then holds the issues
    of the rows that load only. ``redact`` is the source's; a unit in ``unit_redactors`` is
    redacted by its own (which knows its patient's identifiers)."""
    frame = buffer.frame()
    table = buffer.table
    if frame.height == 0:
        return frame, []
    if passes_all_checks(frame, table):
        return frame, []
    reasons: dict[int, list[str]] = defaultdict(list)
    # pandera's polars backend reports every copy of a duplicate key; keep the first here.
    later_copies = frame.select(_later_copy(table)).to_series()
    for i in later_copies.arg_true().to_list():
        reasons[i].append(f"duplicate key ({', '.join(table.key)}): an earlier record with the same key was kept")
    import pandera.errors

    try:
        # Eager frames: a LazyFrame would check only names and dtypes (stack notes).
        table.pandera_schema.validate(frame, lazy=True)
        failures = None
    except pandera.errors.SchemaErrors as exc:
        failures = exc.failure_cases
    if failures is None and not reasons:
        return frame, []
    if failures is not None:
        _collect(table.qualified_name, failures, reasons)
    for i, why in reasons.items():
        why.extend(str(issue) for issue in buffer.issues.pop(i, ()))
    own = unit_redactors or {}
    rejected = [
        RejectedRecord(
            table.name, buffer.units[i], buffer.keys[i], tuple(reasons[i]),
            raw_json(buffer.raws[i], own.get(buffer.units[i], redact)),
        )
        for i in sorted(reasons)
    ]
    bad = pl.Series("__row", sorted(reasons), dtype=pl.UInt32)
    valid = frame.with_row_index("__row").filter(~pl.col("__row").is_in(bad.implode())).drop("__row")
    return valid, rejected


def _later_copy(table: Table) -> pl.Expr:
    """True for a row whose key an earlier row of the batch already has."""
    return ~pl.struct(table.key).is_first_distinct()


def _collect(table_name: str, failures: pl.DataFrame, reasons: dict[int, list[str]]) -> None:
    schema_level = failures.filter(pl.col("index").is_null())
    if schema_level.height:
        detail = "; ".join(
            f"{row['column']}: {row['check']} ({row['failure_case']})"
            for row in schema_level.head(5).iter_rows(named=True)
        )
        raise SchemaMismatchError(f"{table_name}: batch does not match its table: {detail}")
    for row in failures.iter_rows(named=True):
        reasons[int(row["index"])].append(_reason(row))


def _reason(failure: dict[str, Any]) -> str:
    column = failure["column"] or "row"
    check = failure["check"]
    value = failure["failure_case"]
    if check in ("not_nullable", "nullable"):
        return f"{column}: must not be empty"
    return f"{column}: failed {check} (value {value!r})"


def passes_all_checks(frame: pl.DataFrame, table: Table) -> bool:
    """Whether ``table.pandera_schema`` would accept every row and no key repeats, found in
    one polars pass. False sends the batch through pandera itself, so a False that pandera
    would not confirm costs time, never data."""
    if frame.schema != table.polars_schema:
        return False  # pandera's strict column and dtype checks decide; order aside, it raises
    conditions = [_later_copy(table).not_().alias("first of its key")]
    for column in table.loaded_columns:
        if not table.nullable(column):
            conditions.append(pl.col(column.name).is_not_null().alias(f"{column.name} not null"))
        for n, check in enumerate(column.checks):
            passes = _check_expression(check, column.name)
            if passes is None:
                return False  # no one-pass form known here: pandera checks it
            # A null result passes (ignore_na), as in pandera's backend.
            conditions.append(passes.fill_null(True).alias(f"{column.name} check {n}"))
    passed = frame.lazy().select(conditions).select(pl.all_horizontal(pl.all()).all()).collect()
    return bool(passed.item())


# pandera's built-in checks as its polars backend evaluates them
# (pandera/backends/polars/builtin_checks.py), by the name a Check carries: the same
# polars expressions, without importing that backend. A check not listed is left to pandera.
_BUILTIN_EXPRESSIONS: dict[str, Callable[..., pl.Expr]] = {
    "greater_than_or_equal_to": lambda col, min_value: col.ge(min_value),
    "in_range": lambda col, min_value, max_value, include_min=True, include_max=True: (
        (col.ge(min_value) if include_min else col.gt(min_value)).and_(
            col.le(max_value) if include_max else col.lt(max_value))),
    "isin": lambda col, allowed_values: col.is_in(allowed_values),
    "str_startswith": lambda col, string: col.str.starts_with(string),
}


def _check_expression(check: Check, column: str) -> pl.Expr | None:
    """The polars expression of a built-in ``check`` on ``column`` (True: the row passes),
    or None when the one pass cannot express it."""
    expression = _BUILTIN_EXPRESSIONS.get(check.name or "")
    if expression is None or check.element_wise or check.ignore_na is False:
        return None
    return expression(pl.col(column), **check._check_kwargs)
