"""A field that cannot be read loads NULL with a field issue; the row loads (issue 15, item 14).

Unit tests of the coercions (every written form of a time stamp and a birth date, epoch
seconds against milliseconds, the range check, garbage), the transform (the row loads,
only an unreadable key quarantines), and end to end: a sync of the simulator on 127.0.0.1
serving projects with unreadable, odd and out-of-range fields (RAYTeams), and unreadable
dates, numbers and links (OpenProject; its transform's cases are in
tests/test_openproject_parse.py).
"""

from __future__ import annotations

import time
from datetime import date, datetime, timezone
from functools import partial
from pathlib import Path

import duckdb
import orjson
import pytest

from pwh.flows.prefect_flows import sync_openproject, sync_rayteams
from pwh.flows.rayteams_sync import project_cursor
from pwh.schemas import openproject
from pwh.schemas.validate import split_valid
from pwh.simulators.openproject import dataset as op_dataset
from pwh.simulators.openproject import simulator as op_simulator
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.transforms.coerce import (
    EARLIEST_MS,
    FUTURE_YEARS,
    SECONDS_BELOW,
    CoercionError,
    FieldIssues,
    as_timestamp_ms,
    describe_value,
)
from pwh.transforms.pseudonym import Pseudonymizer, birth_year
from pwh.transforms.rayteams import FetchedProject, transform_projects
from pwh.transforms.redact import redact

KEY = Pseudonymizer(b"field-issues-key-0123456789")
MS_2022 = 1_669_373_726_576  # 2022-11-25T10:55:26.576Z


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


# ------------------------------------------------------------------ time stamps

@pytest.mark.parametrize("value, expected", [
    (MS_2022, MS_2022),                                   # epoch ms (documented)
    (MS_2022 // 1000, MS_2022 // 1000 * 1000),            # epoch seconds
    (str(MS_2022), MS_2022),                              # numeric text of either
    (f" {MS_2022 // 1000} ", MS_2022 // 1000 * 1000),
    (1_669_373_726.576, MS_2022),                         # fractional seconds
    (float(MS_2022), MS_2022),                            # ms as a float
    ("2022-11-25T10:55:26.576Z", MS_2022),                # ISO date-time in UTC
    ("2022-11-25T19:55:26.576+09:00", MS_2022),           # with an offset
    ("2022-11-25T10:55:26.576", MS_2022),                 # without a zone: UTC
    ("2022-11-25 10:55:26.576", MS_2022),
    ("2022-11-25", ms("2022-11-25T00:00:00")),            # ISO date: midnight UTC
    ("20221125", ms("2022-11-25T00:00:00")),              # ISO basic date
    ("20221125T105526Z", ms("2022-11-25T10:55:26")),      # ISO basic date-time
    (None, None), ("", None), ("   ", None),
])
def test_every_written_form_of_a_time_stamp(value, expected):
    assert as_timestamp_ms(value, "created") == expected


def test_seconds_and_milliseconds_are_told_apart_by_magnitude():
    # Inside the believed range, seconds stay far below SECONDS_BELOW and ms far above it.
    latest_s = (time.time() + FUTURE_YEARS * 366 * 86400)
    assert latest_s < SECONDS_BELOW < EARLIEST_MS
    assert as_timestamp_ms(EARLIEST_MS // 1000, "t") == EARLIEST_MS
    assert as_timestamp_ms(EARLIEST_MS, "t") == EARLIEST_MS


@pytest.mark.parametrize("value", [
    0, 1, -1, 86_400_000,                       # 1970, read as ms or s
    EARLIEST_MS - 1, "1989-12-31T23:59:59Z",    # just before 1990
    SECONDS_BELOW - 1, SECONDS_BELOW,           # the year 5138 in s; 1973 in ms
    1_669_373_726_576_000,                      # microseconds
    32_503_680_000_000, "3000-01-01",           # the year 3000
    2**63 - 1, 2**64 - 1, -(2**63), 1e308,
    "0" * 10_000, "0" * 5_000 + "1",            # past int()'s digit limit (hypothesis found it)
])
def test_time_stamps_outside_1990_to_the_near_future_are_refused(value):
    with pytest.raises(CoercionError) as caught:
        as_timestamp_ms(value, "created")
    assert caught.value.reason == f"time stamp not between 1990 and {FUTURE_YEARS} years from now"


def test_the_upper_bound_moves_with_the_clock():
    soon = int((time.time() + (FUTURE_YEARS - 1) * 366 * 86400) * 1000)
    assert as_timestamp_ms(soon, "t") == soon
    with pytest.raises(CoercionError):
        as_timestamp_ms(int((time.time() + (FUTURE_YEARS + 1) * 366 * 86400) * 1000), "t")


@pytest.mark.parametrize("value", [
    "yesterday", "2022-13-01", "2022-02-30T00:00:00Z", "25/11/2022", "0x1F", "NaN", "Infinity",
    "1e400", "1e12", "9" * 5000, "１２３", True, False, [MS_2022], {"ms": MS_2022}, float("nan"),
])
def test_garbage_is_refused_and_the_reason_does_not_quote_it(value):
    with pytest.raises(CoercionError) as caught:
        as_timestamp_ms(value, "created")
    assert str(value)[:6] not in caught.value.reason


# ------------------------------------------------------------------ birth dates

@pytest.mark.parametrize("value, year", [
    ("1978-12-28", 1978), ("1978-12-28T00:00:00Z", 1978), ("19781228", 1978),
    ("28/12/1978", 1978), ("1978/12/28", 1978), ("28.12.1978", 1978), ("28-12-1978", 1978),
    ("12/28/1978", 1978),   # MM/DD/YYYY
    ("05/06/1978", 1978),   # 5 June or May 6: either way 1978, and only the year is kept
    ("1978", 1978), (" 1961-7-3 ", 1961), (None, None), ("", None),
])
def test_every_written_form_of_a_birth_date(value, year):
    assert birth_year(value) == year


@pytest.mark.parametrize("value", [
    "31/31/1978", "1978-02-30", "30.02.1978", "yesterday", "1978abc", "1849-01-01",
    f"{date.today().year + 1}-01-01", 19781228, 1978.0, True, ["1978-12-28"], {"y": 1978},
])
def test_birth_dates_that_cannot_be_read_are_refused_without_quoting_them(value):
    with pytest.raises(CoercionError) as caught:
        birth_year(value)
    assert str(value) not in str(caught.value) and str(value) not in caught.value.reason


def test_a_patient_fields_value_is_described_never_quoted():
    assert describe_value("28/12/1978", private=True) == "text shaped '99/99/9999'"
    assert describe_value("Hong Gildong", private=True) == "text of 12 character(s)"
    assert describe_value(19781228, private=True) == "a number"
    assert describe_value({"name": "Hong"}, private=True) == "an object of 1 key(s)"
    # Other fields: digits and date punctuation are shown, anything with letters is not.
    assert describe_value("2022-13-01") == "'2022-13-01'"
    assert describe_value("Hong Gildong") == "text of 12 character(s)"
    assert describe_value(-5) == "-5"


def test_field_issues_name_the_nested_path():
    issues = FieldIssues()
    assert issues.take(as_timestamp_ms, {"created": "soon"}, "created") is None
    assert issues.take(birth_year_coercion, {"birth": "31/31/1978"}, "birth", path="subject.birth", private=True) is None
    assert [(i.field, i.value) for i in issues] == [("created", "text of 4 character(s)"),
                                                    ("subject.birth", "text shaped '99/99/9999'")]


def birth_year_coercion(value, field):
    return birth_year(value)


# ------------------------------------------------------------------ the transform

PID = "6a1f0c3e-5d7b-4f8e-9a2c-b1d0e3f4a5b6"


def project(**changes):
    record = {
        "_id": PID, "sk": "project", "region": "eu-central-1", "name": "case-7", "patientId": "pt-77",
        "count": 3, "size": 1024, "subject": {"name": "Hong Gildong", "birth": "1978-12-28"},
        "istrash": False, "created": MS_2022, "updated": MS_2022,
    }
    record.update(changes)
    return record


def transform(records=(), files=()):
    batch = transform_projects([FetchedProject(PID, None, list(records), list(files))], account="lab", pseudonyms=KEY)
    frames, rejected, issues = {}, list(batch.rejected), []
    for name, buffer in batch.buffers.items():
        frames[name], bad = split_valid(buffer, partial(redact, pseudonyms=KEY))
        rejected += bad
        issues += buffer.row_issues()
    return frames, rejected, issues


def test_an_unreadable_field_loads_null_and_the_row_loads():
    frames, rejected, issues = transform([project(
        subject={"name": ["Hong", "Gildong"], "birth": "31/31/1978"}, created="last tuesday",
        updated="2023-03-04T05:06:07", size="12kB", istrash="maybe", status="open")])
    assert not rejected
    row = frames["projects"].row(0, named=True)
    assert row["name"] == "case-7" and row["region"] == "eu-central-1" and row["file_count"] == 3
    assert row["subject_birth_year"] is row["subject_pseudonym"] is row["created_at"] is None
    assert row["size_bytes"] is row["is_trash"] is row["status_code"] is None
    assert row["updated_at"] == datetime(2023, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
    assert {(i.table, i.record_key, i.issue.field) for i in issues} == {
        ("projects", f"{PID}/project", field)
        for field in ("subject.name", "subject.birth", "created", "size", "istrash", "status")}
    text = repr(issues)
    assert "31/31/1978" not in text and "Hong" not in text and "Gildong" not in text


def test_a_row_whose_key_cannot_be_read_is_quarantined_whole_with_its_issues():
    files = [
        {"filetype": "maxilla", "name": "m.stl", "size": 5, "downloadExpired": "soon"},
        {"filetype": {"kind": "mandible"}, "name": "d.stl", "size": "big"},  # key unreadable
    ]
    frames, rejected, issues = transform([project()], files)
    assert frames["files"]["name"].to_list() == ["m.stl"]
    [(located)] = issues
    assert (located.record_key, located.issue.field) == (f"{PID}/files/maxilla/m.stl", "downloadExpired")
    [quarantined] = rejected
    assert quarantined.table == "files"
    assert any(r.startswith("filetype: expected text") for r in quarantined.reasons)
    assert any(r.startswith("size: expected an integer") for r in quarantined.reasons)


def test_a_memo_with_unreadable_fields_keeps_its_comments():
    memo = {"_id": PID, "sk": "memo:1", "content": "x", "created": "1e999", "isarchive": "no",
            "comments": [{"content": "c", "created": MS_2022 // 1000}]}
    frames, rejected, issues = transform([project(), memo])
    assert not rejected
    assert frames["memos"]["created_at"].to_list() == [None]
    assert frames["memo_comments"]["created_at"].to_list() == [datetime.fromtimestamp(MS_2022 // 1000, timezone.utc)]
    assert {i.issue.field for i in issues} == {"created", "isarchive"}


def test_the_cursor_reads_every_written_form_of_updated():
    assert project_cursor({"updated": MS_2022 // 1000}) == str(MS_2022 // 1000 * 1000)
    assert project_cursor({"updated": "2022-11-25T10:55:26.576Z"}) == str(MS_2022)
    assert project_cursor({"updated": 7}) is None


# ------------------------------------------------------------------ end to end

TOKEN = "tok-FIELDS-5c1e"
CLIENT_ID = "client-FIELDS-9b"


class PatchedDataset(RayteamsDataset):
    """The simulator's dataset with some records' fields replaced, in every answer."""

    def __init__(self, config: DatasetConfig, changes: dict[tuple[int, str], dict]) -> None:
        super().__init__(config)
        ids = self.project_ids()
        self.changes = {(ids[i], sk): fields for (i, sk), fields in changes.items()}

    def _patch(self, record: dict) -> dict:
        return {**record, **self.changes.get((record.get("_id"), record.get("sk")), {})}

    def project_list(self):
        return [self._patch(r) for r in super().project_list()]

    def project_info(self, project_id):
        record = super().project_info(project_id)
        return None if record is None else self._patch(record)

    def aggregate(self, project_id):
        records = super().aggregate(project_id)
        return None if records is None else [self._patch(r) for r in records]

    def sub_resource(self, project_id, kind):
        records = super().sub_resource(project_id, kind)
        return None if records is None else [self._patch(r) for r in records]


SECONDS = 1_700_000_000  # 2023-11-14T22:13:20Z
ODD_BIRTHS = ("28/12/1978", "31/31/1961", "07.03.1990", "12/28/1985")


def patched_dataset() -> PatchedDataset:
    base = RayteamsDataset(DatasetConfig(seed=41, n_projects=12))
    order_sk = next(r["sk"] for r in base.aggregate(base.project_ids()[0]) if r["sk"].startswith("order:"))
    history_sk = next(r["sk"] for r in base.aggregate(base.project_ids()[1]) if r["sk"].startswith("his:"))
    return PatchedDataset(base.config, {
        (0, "project"): {"subject": {"name": "Hong Gildong", "birth": ODD_BIRTHS[0]}, "created": SECONDS,
                         "updated": "2024-02-03T04:05:06", "size": "a lot"},
        (1, "project"): {"subject": {"name": "Kim Minji", "birth": ODD_BIRTHS[1]}, "created": 32_503_680_000_000},
        (2, "project"): {"created": str(SECONDS), "updated": "2024-02-03T13:05:06+09:00", "count": {"n": 3}},
        (0, order_sk): {"subject": {"name": "Hong Gildong", "birth": ODD_BIRTHS[2]}, "created": "not a time"},
        (1, history_sk): {"created": "2023-05-06T07:08:09Z"},
        (3, "project"): {"subject": {"name": "Lee Jiwoo", "birth": ODD_BIRTHS[3]}},
    })


def warehouse_text(db: Path) -> str:
    """Every value of every table, as text."""
    with duckdb.connect(str(db), read_only=True) as con:
        names = con.execute("SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
        return "\n".join(repr(con.execute(f'SELECT * FROM "{s}"."{t}"').fetchall()) for s, t in names)


@pytest.mark.usefixtures("prefect_harness")
async def test_sync_loads_rows_with_unreadable_fields_and_keeps_the_issues(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    dataset = patched_dataset()
    ids = dataset.project_ids()
    db = tmp_path / "w.duckdb"
    async with running_simulator(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as base_url:
        first = await sync_rayteams(base_url=base_url, db_path=str(db), batch_size=5)
        again = await sync_rayteams(base_url=base_url, db_path=str(db), batch_size=5)
        refreshed = await sync_rayteams(base_url=base_url, db_path=str(db), batch_size=5, mode="full_refresh")
    assert first["status"] == again["status"] == refreshed["status"] == "success"
    assert first["rows_rejected"] == 0
    # The cursor reads `updated` in seconds and ISO forms too: nothing changed, nothing refetched.
    assert again["units_unchanged"] == 12

    with duckdb.connect(str(db), read_only=True) as con:
        projects = {row[0]: row[1:] for row in con.execute(
            "SELECT project_id, name IS NOT NULL, subject_birth_year, created_at, updated_at, size_bytes, "
            "file_count FROM rayteams.projects").fetchall()}
        issues = con.execute(
            "SELECT unit_key, table_name, field, reason, value_description FROM pipeline.field_issues "
            "ORDER BY unit_key, seq").fetchall()
        [(rejected,)] = con.execute("SELECT count(*) FROM pipeline.rejected_records").fetchall()
        [(orders_created,)] = con.execute(
            "SELECT count(*) FROM rayteams.orders WHERE project_id = ? AND created_at IS NULL", [ids[0]]).fetchall()
        [(history_at,)] = con.execute(
            "SELECT max(created_at) FROM rayteams.histories WHERE project_id = ? "
            "AND created_at = TIMESTAMPTZ '2023-05-06 07:08:09+00'", [ids[1]]).fetchall()
    assert len(projects) == 12 and rejected == 0
    utc = timezone.utc
    # Readable fields load; unreadable ones are NULL.
    assert projects[ids[0]][:5] == (True, 1978, datetime.fromtimestamp(SECONDS, utc),
                                    datetime(2024, 2, 3, 4, 5, 6, tzinfo=utc), None)
    assert projects[ids[1]][:3] == (True, None, None)
    assert projects[ids[2]][2:4] == (datetime.fromtimestamp(SECONDS, utc), datetime(2024, 2, 3, 4, 5, 6, tzinfo=utc))
    assert projects[ids[2]][5] is None
    assert projects[ids[3]][1] == 1985
    assert orders_created == 1 and history_at is not None

    by_field = {(unit, table, field): (reason, value) for unit, table, field, reason, value in issues}
    assert len(issues) == len(by_field) == 5  # replaced by each sync, never added up
    assert by_field[(ids[0], "projects", "size")] == ("expected an integer", "text of 5 character(s)")
    assert by_field[(ids[1], "projects", "subject.birth")] == ("not a calendar date", "text shaped '99/99/9999'")
    assert by_field[(ids[1], "projects", "created")] == (
        f"time stamp not between 1990 and {FUTURE_YEARS} years from now", "32503680000000")
    assert by_field[(ids[2], "projects", "count")] == ("expected an integer", "an object of 1 key(s)")
    assert by_field[(ids[0], "orders", "created")][1] == "text of 10 character(s)"

    stored = warehouse_text(db) + db.read_bytes().decode("latin-1")
    births = {r["subject"]["birth"] for r in dataset.project_list()} | set(ODD_BIRTHS)
    assert not [b for b in births if b in stored], "a raw birth date is in the warehouse"
    assert "Hong Gildong" not in stored and "Kim Minji" not in stored


# ------------------------------------------------------------------ end to end: OpenProject

OP_KEY = "op-key-FIELDS-71c3"


def openproject_instance(hostile: bool) -> op_dataset.OpenProjectDataset:
    """The simulator's instance; ``hostile``: a project, a work package and a membership
    carry an unreadable date, a garbage number and links whose hrefs do not parse, and
    another work package names its project by an href without an id."""
    dataset = op_dataset.OpenProjectDataset(op_dataset.DatasetConfig(seed=43, n_projects=12, max_work_packages=6))
    if hostile:
        ids = dataset.project_ids()
        first, child = dataset.projects[ids[0]], dataset.projects[ids[5]]  # 5: has a visible parent
        child.project.update(createdAt="31/12/2023", public="n/a")
        child.project["_links"]["parent"] = {"href": "/api/v3/users/3", "title": "Ada Lovelace"}
        unreadable, unplaced = first.work_packages[:2]
        unreadable.update(startDate="2024-02-30", percentageDone="40%")
        unreadable["_links"].update(type={"href": "/api/v3/types/Bug", "title": "Bug"}, author="Ada Lovelace")
        unplaced["_links"]["project"] = {"href": "/api/v3/projects/first"}
        member = first.memberships[0]
        member["_links"]["roles"] = [{"href": "/api/v3/roles/lead", "title": "Lead"}, *member["_links"]["roles"]]
    return dataset


async def sync_instance(dataset: op_dataset.OpenProjectDataset, db: Path, **params) -> dict:
    options = op_simulator.SimulatorOptions(api_key=OP_KEY)
    async with op_simulator.running_simulator(dataset, options) as base_url:
        return await sync_openproject(base_url=base_url, db_path=str(db), page_size=5, batch_size=4, **params)


def differing_rows(db: Path, clean: Path) -> dict[str, set[tuple]]:
    """Per table, the keys of rows that differ from the clean warehouse's, either way."""
    out = {}
    with duckdb.connect(str(db), read_only=True) as con:
        con.execute(f"ATTACH '{clean}' AS clean (READ_ONLY)")
        for table in openproject.TABLES:
            keys = ", ".join(table.key)
            name = table.qualified_name
            rows = con.execute(f"(SELECT {keys} FROM (SELECT * FROM {name} EXCEPT SELECT * FROM clean.{name})) UNION "
                               f"(SELECT {keys} FROM (SELECT * FROM clean.{name} EXCEPT SELECT * FROM {name}))").fetchall()
            if rows:
                out[table.name] = set(rows)
    return out


@pytest.mark.usefixtures("prefect_harness")
async def test_openproject_sync_loads_records_with_unreadable_fields_and_links_and_keeps_the_issues(
        tmp_path, monkeypatch):
    # Issue 15, item 14: the project and the work package used to be quarantined whole.
    monkeypatch.setenv("OPENPROJECT_API_KEY", OP_KEY)
    dataset = openproject_instance(hostile=True)
    ids = dataset.project_ids()
    first, child = str(ids[0]), str(ids[5])
    unreadable, unplaced = (wp["id"] for wp in dataset.projects[ids[0]].work_packages[:2])
    member = dataset.projects[ids[0]].memberships[0]["id"]
    db, clean = tmp_path / "w.duckdb", tmp_path / "clean.duckdb"
    summary = await sync_instance(dataset, db)
    refreshed = await sync_instance(dataset, db, mode="full_refresh")
    await sync_instance(openproject_instance(hostile=False), clean)
    assert summary["status"] == refreshed["status"] == "success"
    assert summary["rows_rejected"] == refreshed["rows_rejected"] == 1

    # Every other row is as in a sync of the untouched instance; the custom values of the
    # work package that cannot be placed are inside its quarantined record.
    differing = differing_rows(db, clean)
    unplaced_wp = dataset.projects[ids[0]].work_packages[1]
    custom = [(name, "value") for name in unplaced_wp if name.startswith("customField")]
    custom += [(name, "link") for name in unplaced_wp["_links"] if name.startswith("customField")]
    assert custom and differing.pop("custom_values") == {
        ("default", first, "work_package", unplaced, name, kind) for name, kind in custom}
    assert differing == {
        "projects": {("default", child)},
        "work_packages": {("default", first, unreadable), ("default", first, unplaced)},
        "memberships": {("default", first, member)},
    }
    with duckdb.connect(str(db), read_only=True) as con:
        project = con.execute("SELECT name, created_at, public, parent_id, parent_title, updated_at IS NOT NULL "
                              "FROM openproject.projects WHERE project_id = ?", [child]).fetchone()
        wp = con.execute("SELECT subject, start_date, percentage_done, type_id, type_title, author_id, status_id "
                         "FROM openproject.work_packages WHERE id = ?", [unreadable]).fetchone()
        roles = con.execute("SELECT role_ids, role_titles FROM openproject.memberships WHERE id = ?", [member]).fetchone()
        issues = con.execute("SELECT unit_key, table_name, field, reason, value_description FROM pipeline.field_issues "
                             "WHERE source = 'openproject'").fetchall()
        rejected = con.execute("SELECT table_name, record_key, reasons FROM pipeline.rejected_records "
                               "WHERE source = 'openproject'").fetchall()
    assert project[0] is not None and project[1:5] == (None, None, None, None) and project[5]
    assert wp[0] is not None and wp[1:6] == (None, None, None, None, None) and wp[6] is not None
    role_ids, role_titles = (orjson.loads(text) for text in roles)
    assert len(role_ids) == len(role_titles) >= 2 and role_ids[0] is role_titles[0] is None
    assert None not in role_ids[1:] and None not in role_titles[1:]

    def text(value: str) -> str:
        return f"text of {len(value)} character(s)"

    # Replaced by each sync, never added up.
    assert sorted(issues) == sorted([
        (child, "projects", "createdAt", "expected an ISO 8601 date-time", "'31/12/2023'"),
        (child, "projects", "public", "expected a boolean", text("n/a")),
        (child, "projects", "_links.parent", "href is not a project, program or portfolio", text("/api/v3/users/3")),
        (first, "work_packages", "startDate", "expected a date YYYY-MM-DD", "'2024-02-30'"),
        (first, "work_packages", "percentageDone", "expected an integer", text("40%")),
        (first, "work_packages", "_links.type", "href does not end in an id", text("/api/v3/types/Bug")),
        (first, "work_packages", "_links.author", "expected a link object", text("Ada Lovelace")),
        (first, "memberships", "_links.roles[0]", "href does not end in an id", text("/api/v3/roles/lead")),
    ])
    # Which project a work package belongs to is no value: one that cannot be placed is quarantined whole.
    [(table, key, reasons)] = rejected
    assert (table, key) == ("work_packages", f"{first}/work_packages/{unplaced}")
    assert orjson.loads(reasons) == ["_links.project: href '/api/v3/projects/first' does not end in an id"]
