"""Rows to typed polars frames, column-wise and strict, with a record kept aside for every
row so a row that later fails validation can be quarantined with its raw record."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from pwh.schemas.spec import Table
from pwh.transforms.coerce import FieldIssue


@dataclass(frozen=True)
class RejectedRecord:
    """A record that could not be loaded, with every reason and its (redacted) raw JSON."""

    table: str
    unit_key: str
    record_key: str
    reasons: tuple[str, ...]
    raw_json: str


@dataclass(frozen=True)
class RowIssue:
    """A field issue of a row that loads, with where the row is (for ``pipeline.field_issues``)."""

    table: str
    unit_key: str
    record_key: str
    issue: FieldIssue


@dataclass
class RowBuffer:
    """Accumulates one table's rows of a batch."""

    table: Table
    columns: dict[str, list[Any]] = field(init=False)
    raws: list[Any] = field(default_factory=list)  # raw records, redacted lazily on rejection
    units: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    # Field issues by row position; sparse, as most rows have none.
    issues: dict[int, Sequence[FieldIssue]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.columns = {name: [] for name in self.table.wire_schema}

    def __len__(self) -> int:
        return len(self.raws)

    def append(self, row: dict[str, Any], raw: Any, unit_key: str, record_key: str,
               issues: Sequence[FieldIssue] = ()) -> None:
        if issues:
            self.issues[len(self.raws)] = issues
        for name, values in self.columns.items():
            values.append(row.get(name))
        self.raws.append(raw)
        self.units.append(unit_key)
        self.keys.append(record_key)

    def row_issues(self) -> list[RowIssue]:
        """The field issues of the rows still in the buffer's care, in row order."""
        return [
            RowIssue(self.table.name, self.units[i], self.keys[i], issue)
            for i in sorted(self.issues) for issue in self.issues[i]
        ]

    def frame(self) -> pl.DataFrame:
        """The typed frame; epoch-ms columns become UTC time stamps."""
        frame = pl.DataFrame(self.columns, schema=self.table.wire_schema, strict=True)
        if self.table.timestamp_columns:
            frame = frame.with_columns(
                pl.col(name).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")
                for name in self.table.timestamp_columns
            )
        return frame


@dataclass
class TableBatch:
    """What a transform makes of a batch of units: rows per table, and what it rejected."""

    buffers: dict[str, RowBuffer]
    rejected: list[RejectedRecord] = field(default_factory=list)
    # A unit's own redaction (its patient's identifiers), for raws quarantined later.
    unit_redactors: dict[str, Callable[[Any], Any]] = field(default_factory=dict)

    @classmethod
    def for_tables(cls, tables: Iterable[Table]) -> TableBatch:
        return cls({t.name: RowBuffer(t) for t in tables})

    def reject(self, table: str, unit_key: str, record_key: str, reasons: Iterable[str],
               raw: Any, redact: Callable[[Any], Any]) -> None:
        self.rejected.append(
            RejectedRecord(table, unit_key, record_key, tuple(reasons), raw_json(raw, redact))
        )


def dimension_unit(table: str) -> str:
    """The ``unit_key`` of a dimension table's rows (per account, not per unit): their
    quarantined records and field issues are kept under it (no project key has this form)."""
    return f"dimension:{table}"


def raw_json(raw: Any, redact: Callable[[Any], Any]) -> str:
    """Redacted JSON text of a raw record (the slower encoder takes what orjson refuses,
    such as integers beyond 64 bits)."""
    redacted = redact(raw)
    try:
        return orjson.dumps(redacted).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(redacted, default=repr)
