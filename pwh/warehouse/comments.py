"""Documentation inside the warehouse: ``COMMENT ON`` every table, view, table macro and column, from
the same specs that render docs/tables.md (``warehouse.catalog``), so what an analyst's tool
shows (DBeaver, Superset, Metabase, ``duckdb_columns()``) cannot drift from the schema.

Re-applied after every sync: comments vanish when an object is re-created (``CREATE OR
REPLACE``, as the marts are), and a new pwh version's docs reach old files this way.
DuckDB 2.0 cannot comment on a schema ("not implemented"): schema docs live in the
table reference and in ``pwh docs`` only.
"""

from __future__ import annotations

import duckdb

from pwh.warehouse.catalog import all_tables, all_views
from pwh.warehouse.marts import View


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def comment_statements(present: dict[tuple[str, ...], str | None]) -> list[str]:
    """COMMENT ON statements for every documented table, view and column in the file
    (``present``: object or column → its current comment) whose comment is not already
    the documented one."""
    statements = []
    for kind, objects in (("TABLE", all_tables()), ("VIEW", all_views())):
        for obj in objects:
            if (obj.schema, obj.name) not in present:
                continue
            if present[(obj.schema, obj.name)] != obj.doc:
                statements.append(f"COMMENT ON {kind} {obj.qualified_name} IS {_literal(obj.doc)}")
            if isinstance(obj, View) and obj.macro and obj.macro_doc:
                key = ("macro", obj.schema, obj.macro)
                if key in present and present[key] != obj.macro_doc:
                    statements.append(f"COMMENT ON MACRO TABLE {obj.qualified_macro} IS {_literal(obj.macro_doc)}")
            statements.extend(
                f"COMMENT ON COLUMN {obj.qualified_name}.{column.name} IS {_literal(column.doc)}"
                for column in obj.columns
                if (obj.schema, obj.name, column.name) in present
                and present[(obj.schema, obj.name, column.name)] != column.doc
            )
    return statements


def apply_comments(con: duckdb.DuckDBPyConnection) -> int:
    """Comment every documented object present in the file; returns how many statements
    ran (only changed comments are written). The caller owns the transaction."""
    here = "database_name = current_database()"
    present: dict[tuple[str, ...], str | None] = {}
    for schema, name, comment in con.execute(
        f"SELECT schema_name, table_name, comment FROM duckdb_tables() WHERE {here} "
        f"UNION ALL SELECT schema_name, view_name, comment FROM duckdb_views() WHERE {here} AND NOT internal"
    ).fetchall():
        present[(schema, name)] = comment
    for schema, name, column, comment in con.execute(
        f"SELECT schema_name, table_name, column_name, comment FROM duckdb_columns() WHERE {here}"
    ).fetchall():
        present[(schema, name, column)] = comment
    for schema, name, comment in con.execute(
        f"SELECT schema_name, function_name, comment FROM duckdb_functions() WHERE {here} AND function_type = 'table_macro'"
    ).fetchall():
        present[("macro", schema, name)] = comment
    statements = comment_statements(present)
    for statement in statements:
        con.execute(statement)
    return len(statements)
