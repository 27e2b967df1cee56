"""The rows of a batch on their way to the warehouse, shared by the transforms that make
them, the validation that splits them and the load that writes them: typed column buffers
with the raw record kept aside for every row, so a row that later fails validation can be
quarantined with its raw record (``pipeline.quarantine``), and the field issues of the rows
that load (``pipeline.field_issues``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import polars as pl

from pwh.schemas.spec import Table


@dataclass(frozen=True)
class FieldIssue:
    """A field that could not be read: its column loads NULL, and this says why and what
    the value looked like (a description, never a patient field's value)."""

    field: str
    reason: str
    value: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason} (value: {self.value})"



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
        get = row.get
        for name, values in self.columns.items():
            values.append(get(name))
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


def raw_json(raw: Any, redact: Callable[[Any], Any]) -> str:
    """Redacted JSON text of a raw record (the slower encoder takes what orjson refuses,
    such as integers beyond 64 bits)."""
    redacted = redact(raw)
    try:
        return orjson.dumps(redacted).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(redacted, default=repr)


def dimension_unit(table: str) -> str:
    """The ``unit_key`` of a dimension table's rows (per account, not per unit): their
    quarantined records and field issues are kept under it (no project key has this form)."""
    return f"dimension:{table}"
