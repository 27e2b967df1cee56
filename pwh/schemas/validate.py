"""Validate a table's rows of a batch; split them into rows that load and rows that are
quarantined with every reason pandera found.

pandera's polars backend collects once per column and per check (~5–50 ms a table, most of
a batch's CPU). So a batch first runs the table's pandera checks — the same registered
check functions, null rules and dtypes — as one polars pass; only a batch in which that
pass finds something goes through ``DataFrameSchema.validate`` for the reasons."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import pandera.errors
import polars as pl
from pandera.api.polars.types import PolarsData
from pandera.backends.polars import builtin_checks  # noqa: F401  (registers the checks for PolarsData)

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
    lazy = frame.lazy()
    parts = [lazy.select(_later_copy(table).not_().alias("first of its key"))]
    for column in table.pandera_schema.columns.values():
        if not column.nullable:
            parts.append(lazy.select(pl.col(column.name).is_not_null().alias(f"{column.name} not null")))
        for n, check in enumerate(column.checks):
            if check.element_wise or check.ignore_na is False:
                return False  # not expressible as a lazy column: pandera checks it
            # The check's own registered function, as pandera's backend applies it; a null
            # result passes (ignore_na), as there.
            result = check._check_fn(PolarsData(lazy, column.name), **check._check_kwargs)
            if not isinstance(result, pl.LazyFrame):
                return False
            parts.append(result.select(pl.first().fill_null(True).alias(f"{column.name} check {n}")))
    passed = pl.concat(parts, how="horizontal").select(pl.all_horizontal(pl.all()).all()).collect()
    return bool(passed.item())
