"""Docs cannot drift from the schema: the table reference (docs/tables.md, linked from the
README) is generated from the table specs, and every table and column has a meaning written down."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pwh.warehouse.catalog import all_tables, with_reference

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TABLES = ROOT / "docs" / "tables.md"


def test_table_reference_is_current_and_the_readme_links_to_it():
    text = TABLES.read_text()
    assert with_reference(text) == text, "docs/tables.md is stale: run `pwh docs --write docs`"
    readme = README.read_text()
    assert "](docs/tables.md)" in readme
    assert "#### `" not in readme, "the generated reference lives in docs/tables.md, not in the README"


def test_pwh_docs_write_regenerates_both_references(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("tables.md", "analytics.md"):
        text = (ROOT / "docs" / name).read_text()
        start = text.index("do not edit by hand -->") + len("do not edit by hand -->")
        (docs / name).write_text(text[:start] + "\nstale\n" + text[text.index("<!-- end of", start):])
    done = subprocess.run([sys.executable, "-m", "pwh.cli", "docs", "--write", str(docs)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for name in ("tables.md", "analytics.md"):
        assert (docs / name).read_text() == (ROOT / "docs" / name).read_text()


def test_every_table_and_column_is_documented():
    tables = all_tables()
    assert {t.schema for t in tables} >= {"pipeline", "rayteams"}
    for table in tables:
        assert len(table.doc) > 20, table.qualified_name
        for column in table.columns:
            assert len(column.doc) > 5, f"{table.qualified_name}.{column.name} has no meaning written down"


def test_every_table_in_the_catalog_is_created_by_a_migration(tmp_path):
    from pwh.warehouse.connection import connect
    from pwh.warehouse.migrations import check_tables, migrate

    con = connect(tmp_path / "w.duckdb")
    try:
        migrate(con)
        check_tables(con, all_tables())
    finally:
        con.close()


def test_analytics_guide_marts_reference_is_current():
    from pwh.warehouse.catalog import with_marts_reference

    guide = ROOT / "docs" / "analytics.md"
    text = guide.read_text()
    assert with_marts_reference(text) == text, "docs/analytics.md marts reference is stale: run `pwh docs --write docs`"
