"""Documentation inside the warehouse: ``COMMENT ON`` every table, view and column, from
the same specs that render the README (``schemas.catalog``), so what an analyst's tool
shows (DBeaver, Superset, Metabase, ``duckdb_columns()``) cannot drift from the schema.

Re-applied after every sync: comments vanish when an object is re-created (``CREATE OR
REPLACE``, as the marts are), and a new pwh version's docs reach old files this way.
DuckDB 2.0 cannot comment on a schema ("not implemented"): schema docs live in the
README reference and in ``pwh docs`` only.
"""

from __future__ import annotations

import duckdb

from schemas.catalog import all_tables, all_views


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_statements(present: set[str]) -> list[str]:
    """COMMENT ON statements for every documented table and view in ``present``."""
    statements = []
    for kind, objects in (("TABLE", all_tables()), ("VIEW", all_views())):
        for obj in objects:
            if obj.qualified_name not in present:
                continue
            statements.append(f"COMMENT ON {kind} {obj.qualified_name} IS {_literal(obj.doc)}")
            statements.extend(
                f"COMMENT ON COLUMN {obj.qualified_name}.{column.name} IS {_literal(column.doc)}"
                for column in obj.columns
            )
    return statements


def apply_comments(con: duckdb.DuckDBPyConnection) -> int:
    """Comment every documented object present in the file; returns how many statements
    ran. The caller owns the transaction."""
    present = {
        f"{schema}.{name}"
        for schema, name in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "UNION ALL SELECT schema_name, view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal"
        ).fetchall()
    }
    statements = comment_statements(present)
    for statement in statements:
        con.execute(statement)
    return len(statements)
