"""What a transform makes of a batch: its tables' rows (``schemas.rows.RowBuffer``) and the
records it rejected."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pwh.schemas.rows import RejectedRecord, RowBuffer, raw_json
from pwh.schemas.spec import Table


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
