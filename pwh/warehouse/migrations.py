"""DDL owned by the code: numbered migrations, each applied once, recorded in
``pipeline.schema_version``; and a check that the file matches the table specs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import duckdb

from pwh.errors import PwhError
from pwh.schemas import clarity, incoplax, openproject, pipeline, rayteams
from pwh.schemas.spec import Table
from pwh.warehouse.catalog import all_tables
from pwh.warehouse.connection import transaction


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[duckdb.DuckDBPyConnection], None]


def create_tables(tables: Iterable[Table]) -> Callable[[duckdb.DuckDBPyConnection], None]:
    tables = tuple(tables)

    def apply(con: duckdb.DuckDBPyConnection) -> None:
        for schema in sorted({t.schema for t in tables}):
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table in tables:
            con.execute(table.ddl())

    return apply


def add_column(table: Table, column: str) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """Add a column of ``table``'s spec to a file made before it (one made since has it)."""
    spec = next(c for c in table.columns if c.name == column)

    def apply(con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"ALTER TABLE {table.qualified_name} ADD COLUMN IF NOT EXISTS {spec.name} {spec.sql_type}")

    return apply


def drop_key_constraints(tables: Iterable[Table]) -> Callable[[duckdb.DuckDBPyConnection], None]:
    """Rebuild each of ``tables`` whose spec no longer enforces its key (Table.enforces_key)
    but whose file still does, without the PRIMARY KEY: DuckDB cannot drop one."""
    tables = tuple(t for t in tables if not t.enforces_key)

    def apply(con: duckdb.DuckDBPyConnection) -> None:
        for table in tables:
            if not con.execute(
                "SELECT 1 FROM duckdb_constraints() WHERE database_name = current_database() AND schema_name = ? "
                "AND table_name = ? AND constraint_type = 'PRIMARY KEY'", [table.schema, table.name],
            ).fetchall():
                continue
            rebuilt = f"{table.schema}.{table.name}__rebuilt"
            con.execute(table.ddl(rebuilt))
            # By name: a column a migration added sits last in the file, not where the spec has it.
            con.execute(f"INSERT INTO {rebuilt} BY NAME SELECT * FROM {table.qualified_name}")
            con.execute(f"DROP TABLE {table.qualified_name}")
            con.execute(f"ALTER TABLE {rebuilt} RENAME TO {table.name}")

    return apply


MIGRATIONS: list[Migration] = [
    Migration(1, "pipeline tables and the RAYTeams tables", create_tables((
        pipeline.SCHEMA_VERSION, pipeline.RUNS, pipeline.REJECTED_RECORDS, pipeline.UNIT_STATE, *rayteams.TABLES))),
    Migration(2, "OpenProject tables", create_tables(openproject.TABLES)),
    Migration(3, "Clarity LIMS tables", create_tables(clarity.TABLES)),
    Migration(4, "Incoplax tables", create_tables(incoplax.TABLES)),
    Migration(5, "pipeline.accounts: each account's region and base URL", create_tables((pipeline.ACCOUNTS,))),
    Migration(6, "pipeline.pseudonym_keys: the fingerprint of the key that made the pseudonyms",
              create_tables((pipeline.PSEUDONYM_KEYS,))),
    # 7 creates only its own table, so it applies whether or not 6 came before it.
    Migration(7, "pipeline.field_issues: fields loaded NULL because they could not be read",
              create_tables((pipeline.FIELD_ISSUES,))),
    Migration(8, "pipeline.unit_state.missing_streams: streams a project was loaded without",
              add_column(pipeline.UNIT_STATE, "missing_streams")),
    Migration(9, "OpenProject dimensions: custom field definitions, statuses, users",
              create_tables(openproject.DIMENSION_TABLES)),
    Migration(10, "Clarity researchers (with their lab) and file details", create_tables(clarity.DIMENSION_TABLES)),
    Migration(11, "pipeline.shard_loads: the load log of sharded syncs (each shard loaded once)",
              create_tables((pipeline.SHARD_LOADS,))),
    Migration(12, "unit child tables without PRIMARY KEY: its index was most of a large account's memory",
              drop_key_constraints(all_tables())),
]


class SchemaDriftError(PwhError, RuntimeError):
    """The warehouse file's tables do not match the code's table specs."""


def migrate(con: duckdb.DuckDBPyConnection, migrations: list[Migration] = MIGRATIONS) -> int:
    """Apply pending migrations, each in its own transaction; return the version now."""
    con.execute("CREATE SCHEMA IF NOT EXISTS pipeline")
    con.execute(pipeline.SCHEMA_VERSION.ddl())
    applied = {row[0] for row in con.execute("SELECT version FROM pipeline.schema_version").fetchall()}
    newest = max((m.version for m in migrations), default=0)
    if applied and max(applied) > newest:
        raise SchemaDriftError(
            f"warehouse is at schema version {max(applied)}, newer than this code knows ({newest}): upgrade pwh"
        )
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in applied:
            continue
        with transaction(con):
            migration.apply(con)
            con.execute(
                "INSERT INTO pipeline.schema_version VALUES (?, ?, now())",
                [migration.version, migration.description],
            )
    return newest


def check_tables(con: duckdb.DuckDBPyConnection, tables: Iterable[Table]) -> None:
    """Fail loudly if a table or column the code writes is missing from the file."""
    present = {
        (schema, table, column)
        for schema, table, column in con.execute(
            "SELECT schema_name, table_name, column_name FROM duckdb_columns() WHERE database_name = current_database()"
        ).fetchall()
    }
    missing = [
        f"{t.qualified_name}.{c.name}" for t in tables for c in t.columns if (t.schema, t.name, c.name) not in present
    ]
    if missing:
        raise SchemaDriftError(f"warehouse lacks {', '.join(missing[:10])}: a migration is missing")
