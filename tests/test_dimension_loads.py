"""Per-account dimension tables: hostile shapes are loaded or quarantined, never lost and
never a crash, and each load replaces (or upserts) one account's rows in a real DuckDB
file, leaving the tables of streams that were not fetched alone."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from pwh.schemas import clarity, openproject
from pwh.schemas.validate import split_valid
from pwh.transforms.clarity import transform_dimensions as clarity_dimensions
from pwh.transforms.openproject import transform_dimensions
from pwh.transforms.redact import redact_unknown_source
from pwh.warehouse.connection import connect
from pwh.warehouse.load import load_dimensions
from pwh.warehouse.migrations import migrate

NOW = datetime(2026, 12, 7, tzinfo=timezone.utc)

HOSTILE_USERS = [
    {"id": 3, "name": "Ada", "status": "active", "admin": False, "email": "ada@example.org", "login": "ada"},
    {"id": "4", "name": ["not", "text"], "status": None, "admin": "yes", "email": "x@example.org"},
    {"id": "abc", "name": "No id", "email": "noid@example.org", "login": "secret-login"},
    "not an object",
    {"id": 5, "name": "Duplicate", "createdAt": "yesterday"},
    {"id": 5, "name": "Duplicate again"},
    {"name": "\x00\u202e bidi", "id": 6},
]
HOSTILE_STATUSES = {"_type": "Status", "id": 1, "name": "A single object, not a list"}
HOSTILE_SCHEMAS = {
    "project": {"customField7": {"name": "Ok", "type": "String"}, "customField8": "not an object",
                "customComment7": {"name": "ignored: a comment has no definition"},
                "customField9": {"name": 9, "type": None, "required": "no", "_embedded": {"allowedValues": [
                    {"email": "embedded@example.org"}]}}},
    "work_package": [None, {"customField7": {"name": "also 7: the project's comes first"},
                            "customField1": {"name": "Ticket", "type": "String", "location": "_links"}}],
}


def load(con, tables, batch, account="lab", upserted=()):
    frames, rejected, issues = {}, list(batch.rejected), []
    for name, buffer in batch.buffers.items():
        frames[name], bad = split_valid(buffer, redact_unknown_source, batch.unit_redactors)
        rejected.extend(bad)
        issues.extend(buffer.row_issues())
    return load_dimensions(con, source="openproject", account=account, run_id="r1", tables=tables, frames=frames,
                           rejected=rejected, issues=issues, now=NOW, upserted=upserted), len(rejected), len(issues)


def test_hostile_dimension_records_are_loaded_or_quarantined_and_personal_fields_never_land(tmp_path):
    batch = transform_dimensions({"users": HOSTILE_USERS, "statuses": HOSTILE_STATUSES,
                                  "custom_fields": HOSTILE_SCHEMAS}, account="lab")
    assert set(batch.buffers) == {"users", "statuses", "custom_fields"}
    con = connect(str(tmp_path / "w.duckdb"))
    migrate(con)
    rows, rejected, issues = load(con, openproject.DIMENSION_TABLES, batch, upserted={"custom_fields"})
    # users: 7 given = 4 rows (3, "4", 5, 6) + the non-object + the unreadable id + the
    # duplicate; custom fields: the work-package schema that is no object
    assert rows == {"users": 4, "statuses": 1, "custom_fields": 4}
    assert rejected == 4 and issues > 0
    assert con.execute("SELECT id, name FROM openproject.users ORDER BY id").fetchall() == [
        (3, "Ada"), (4, None), (5, "Duplicate"), (6, "\x00\u202e bidi")]
    assert con.execute("SELECT id, applies_to, name FROM openproject.custom_fields ORDER BY id").fetchall() == [
        (1, "work_package", "Ticket"), (7, "project", "Ok"), (8, "project", None), (9, "project", "9")]
    dump = str(con.execute("SELECT * FROM pipeline.rejected_records").fetchall()) + str(
        con.execute("SELECT * FROM pipeline.field_issues").fetchall()) + str(
        con.execute("SELECT * FROM openproject.custom_fields").fetchall())
    assert "example.org" not in dump and "secret-login" not in dump
    assert {r[0] for r in con.execute("SELECT DISTINCT unit_key FROM pipeline.rejected_records").fetchall()} == {
        "dimension:users", "dimension:custom_fields"}


def test_a_load_replaces_one_accounts_rows_and_leaves_unfetched_tables_and_other_accounts(tmp_path):
    con = connect(str(tmp_path / "w.duckdb"))
    migrate(con)
    users = [{"id": 1, "name": "One"}, {"id": 2, "name": "Two"}]
    load(con, openproject.DIMENSION_TABLES, transform_dimensions({"users": users, "statuses": [{"id": 1}]}, account="lab"))
    load(con, openproject.DIMENSION_TABLES, transform_dimensions({"users": users}, account="other"), account="other")
    # the next run: user 2 gone, statuses not fetched (forbidden): they stay
    load(con, openproject.DIMENSION_TABLES, transform_dimensions({"users": users[:1]}, account="lab"))
    assert con.execute("SELECT account, id FROM openproject.users ORDER BY ALL").fetchall() == [
        ("lab", 1), ("other", 1), ("other", 2)]
    assert con.execute("SELECT account, id FROM openproject.statuses").fetchall() == [("lab", 1)]
    # an empty answer is an empty table (the stream was read and holds nothing)
    load(con, openproject.DIMENSION_TABLES, transform_dimensions({"users": []}, account="lab"))
    assert con.execute("SELECT count(*) FROM openproject.users WHERE account = 'lab'").fetchall() == [(0,)]


@pytest.mark.parametrize("researcher, loaded", [
    ({"uri": "https://h/api/v2/researchers/7", "first_name": "A", "lab_uri": "https://h/api/v2/labs/2"}, 1),
    ({"uri": None, "first_name": "no uri"}, 0),
    ({"uri": "https://h/api/v2/researchers/", "first_name": "empty id"}, 0),
])
def test_clarity_researchers_without_an_id_are_quarantined(tmp_path, researcher, loaded):
    batch = clarity_dimensions({"researchers": {"researchers": [researcher], "labs": [
        {"uri": "https://h/api/v2/labs/2", "name": "Core"}]}}, account="lab")
    con = connect(str(tmp_path / "w.duckdb"))
    migrate(con)
    rows, rejected, _ = load(con, clarity.DIMENSION_TABLES, batch)
    assert rows == {"researchers": loaded} and rejected == 1 - loaded
    if loaded:
        assert con.execute("SELECT researcher_id, lab_name FROM clarity.researchers").fetchall() == [("7", "Core")]


def test_clarity_file_details_of_any_shape_load_without_credentials(tmp_path):
    details = [
        {"limsid": "A1-40-1", "uri": "u", "attached_to": "https://h/api/v2/projects/A1", "is_published": "true",
         "content_location": "sftp://user:pw-SECRET@h/opt/f.pdf", "original_name": "f.pdf"},
        {"limsid": "A1-40-2", "attached_to": "https://h/api/v2/artifacts/2-9", "is_published": "maybe",
         "content_location": None},
        {"limsid": None, "content_location": "sftp://user:pw-SECRET@h/x"},
        {"limsid": "A1-40-1", "is_published": "false"},
    ]
    batch = clarity_dimensions({"file_details": details}, account="lab")
    assert set(batch.buffers) == {"files"}
    con = connect(str(tmp_path / "w.duckdb"))
    migrate(con)
    rows, rejected, issues = load(con, clarity.DIMENSION_TABLES, batch, upserted={"files"})
    assert rows == {"files": 2} and rejected == 1 and issues == 1
    assert con.execute("SELECT file_limsid, project_limsid, content_location, is_published FROM clarity.files "
                       "ORDER BY 1").fetchall() == [("A1-40-1", "A1", "sftp://h/opt/f.pdf", True),
                                                    ("A1-40-2", None, None, None)]
    everything = str(con.execute("SELECT * FROM pipeline.rejected_records").fetchall())
    assert "pw-SECRET" not in everything
