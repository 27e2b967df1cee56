"""Table specifications: the one source of truth for a table's columns.

From a :class:`Table` come the polars dtypes the transforms build, the pandera schema
that validates a batch, the DuckDB DDL, and the documentation (docs/tables.md and COMMENT ON),
so none of them can drift from the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, TypedDict, Unpack

import polars as pl

# The light part of pandera: declaring checks. Its polars backend (~0.1 s and ~10 MB to
# import) is loaded only when a batch fails the one-pass check (pwh/schemas/validate.py).
from pandera.api.checks import Check

if TYPE_CHECKING:
    import pandera.polars as pa

UTC_MS = pl.Datetime("ms", "UTC")

_SQL_TYPES: dict[pl.DataType, str] = {
    pl.Utf8(): "VARCHAR",
    pl.Int64(): "BIGINT",
    pl.Int32(): "INTEGER",
    pl.Int16(): "SMALLINT",
    pl.Float64(): "DOUBLE",
    pl.Boolean(): "BOOLEAN",
    pl.Date(): "DATE",
    UTC_MS: "TIMESTAMPTZ",
}


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    doc: str
    nullable: bool = True
    checks: tuple[Check, ...] = ()
    is_json: bool = False  # stored as JSON text in polars, JSON in DuckDB

    @property
    def sql_type(self) -> str:
        if self.is_json:
            return "JSON"
        return _SQL_TYPES[self.dtype]

    @property
    def wire_dtype(self) -> pl.DataType:
        """The dtype transforms fill: time stamps travel as epoch milliseconds."""
        return pl.Int64() if self.dtype == UTC_MS else self.dtype


class ColumnOptions(TypedDict, total=False):
    """What a column helper passes on to :class:`Column` besides name, dtype and doc."""

    nullable: bool
    checks: tuple[Check, ...]


def text(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, pl.Utf8(), doc, **kw)


def integer(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, pl.Int64(), doc, **kw)


def number(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, pl.Float64(), doc, **kw)


def boolean(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, pl.Boolean(), doc, **kw)


def timestamp(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, UTC_MS, doc, **kw)


def date(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, pl.Date(), doc, **kw)


def small_int(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, pl.Int16(), doc, **kw)


def json_text(name: str, doc: str, **kw: Unpack[ColumnOptions]) -> Column:
    return Column(name, pl.Utf8(), doc, is_json=True, **kw)


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    doc: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # The column that ties a row to the unit of atomic replacement (a project);
    # None for the pipeline's own tables.
    unit_column: str | None = "project_id"
    # Columns the warehouse maintains itself (e.g. deleted_at); transforms leave them out.
    managed: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        unit = (self.unit_column,) if self.unit_column else ()
        missing = [k for k in (*self.key, *unit, *self.managed) if k not in names]
        if missing:
            raise ValueError(f"{self.qualified_name}: key/unit/managed columns {missing} not among columns")

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def loaded_columns(self) -> tuple[Column, ...]:
        """Columns a transform fills (every column but the managed ones)."""
        return tuple(c for c in self.columns if c.name not in self.managed)

    @cached_property
    def polars_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.dtype for c in self.loaded_columns}

    @cached_property
    def wire_schema(self) -> dict[str, pl.DataType]:
        return {c.name: c.wire_dtype for c in self.loaded_columns}

    @cached_property
    def timestamp_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.loaded_columns if c.dtype == UTC_MS)

    @cached_property
    def pandera_schema(self) -> pa.DataFrameSchema:
        """Column dtypes, nullability and value checks. Key uniqueness is checked apart
        (schemas.validate), keeping the first copy, which pandera's polars backend cannot."""
        import pandera.polars as pa

        return pa.DataFrameSchema(
            {
                c.name: pa.Column(
                    c.dtype,
                    nullable=self.nullable(c),
                    checks=list(c.checks),
                    coerce=False,
                )
                for c in self.loaded_columns
            },
            strict=True,
            name=self.qualified_name,
        )

    def nullable(self, column: Column) -> bool:
        """Whether the column may hold nulls: a key column never does."""
        return column.nullable and column.name not in self.key

    @property
    def enforces_key(self) -> bool:
        """Whether the file enforces the key as a PRIMARY KEY. A source's tables of a unit's
        child rows (keyed within the unit: memos, histories, work packages, …) do not.
        DuckDB holds a key's index whole in memory and in the file: at 200,000 projects it
        was most of a sync's memory growth and 1.0 of the file's 1.4 GB (docs/performance.md).
        Their keys stay unique by how they are loaded (pwh/warehouse/load.py): a batch's
        rows are validated unique, and every key holds its unit, whose rows a load deletes
        before it inserts. The tables of the units themselves (one row a unit) keep theirs,
        so rows the state does not know of still fail a load; so do the pipeline's tables."""
        if self.schema == "pipeline" or self.unit_column is None:
            return True
        return set(self.key) <= {"account", self.unit_column}

    def ddl(self, name: str | None = None) -> str:
        """``CREATE TABLE`` of this table (as ``name``, a qualified name: a rebuild's)."""
        cols = ",\n  ".join(
            f"{c.name} {c.sql_type}{'' if self.nullable(c) else ' NOT NULL'}"
            for c in self.columns
        )
        key = f",\n  PRIMARY KEY ({', '.join(self.key)})" if self.enforces_key else ""
        return f"CREATE TABLE IF NOT EXISTS {name or self.qualified_name} (\n  {cols}{key}\n)"
