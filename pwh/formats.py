"""Output formats of ``pwh sql -c``: a module of its own so the CLI can list them in
``--help`` without importing DuckDB."""

from __future__ import annotations

from enum import Enum


class Format(str, Enum):
    """How ``pwh sql -c`` writes its rows."""

    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"
