"""Docs cannot drift from the schema: the README's table reference is generated from the
table specs, and every table and column has a meaning written down."""

from __future__ import annotations

from pathlib import Path

from schemas.catalog import all_tables, with_reference

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_table_reference_is_current():
    text = README.read_text()
    assert with_reference(text) == text, "README table reference is stale: run `pwh docs --readme README.md`"


def test_every_table_and_column_is_documented():
    tables = all_tables()
    assert {t.schema for t in tables} >= {"pipeline", "rayteams"}
    for table in tables:
        assert len(table.doc) > 20, table.qualified_name
        for column in table.columns:
            assert len(column.doc) > 5, f"{table.qualified_name}.{column.name} has no meaning written down"


def test_every_table_in_the_catalog_is_created_by_a_migration(tmp_path):
    from warehouse.connection import connect
    from warehouse.migrations import check_tables, migrate

    con = connect(tmp_path / "w.duckdb")
    try:
        migrate(con)
        check_tables(con, all_tables())
    finally:
        con.close()


def test_analytics_guide_marts_reference_is_current():
    from schemas.catalog import with_marts_reference

    guide = README.parent / "docs" / "analytics.md"
    text = guide.read_text()
    assert with_marts_reference(text) == text, "docs/analytics.md marts reference is stale: run `pwh docs --readme README.md`"
