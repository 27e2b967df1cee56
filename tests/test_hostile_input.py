"""Hostile input: arbitrary JSON thrown at the RAYTeams transform, validation and load.

The invariant: every record the API gave ends either as a row of its table or as a
rejected record (with reasons and its redacted raw JSON); none is lost, none counted
twice, nothing raises. The accounting, as the transform defines it:

- each entry of a project's records and files is one record; the list entry is one more
  record when no fetched record is the project record (``sk == "project"``);
- each comment of a memo that the transform accepted is one more record (a row of
  ``memo_comments`` or a rejection) when ``comments`` is an array (anything else is a
  field issue of the memo); the comments of a memo the transform rejects travel inside
  that memo's raw JSON and are not counted separately;
- a field that cannot be read is a field issue of a row that loads, not a rejection; the
  issues of a row that validation rejects become reasons of its rejection.

Values are only what orjson can parse out of an answer: null, booleans, integers in
[-2**63, 2**64), finite floats, valid Unicode text (NUL included, no lone surrogates),
arrays and objects up to 1024 levels deep.
"""

from __future__ import annotations

import copy
import itertools
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import partial
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwh.schemas import rayteams as tables
from pwh.schemas.rows import RejectedRecord
from pwh.schemas.validate import split_valid
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.transforms.rayteams import PROJECT_SK, FetchedProject, transform_projects
from pwh.transforms.redact import redact
from pwh.warehouse.connection import connect
from pwh.warehouse.load import replace_units
from pwh.warehouse.migrations import migrate

KEY = Pseudonymizer(b"hostile-input-key-0123456789")
REDACT = partial(redact, pseudonyms=KEY)
TABLE_NAMES = {t.name for t in tables.TABLES}
# Deterministic and self-contained: no example database, the same examples in CI.
HOSTILE = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------ JSON values

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),  # hypothesis' text never holds surrogates
)


def _huge_text(char: str, size: int) -> str:
    return char * size


def _nested(depth: int, kind: str, leaf: Any) -> Any:
    """A value ``depth`` levels deep, parsed by orjson (as an answer would be)."""
    opener, closer = ("[", "]") if kind == "list" else ('{"k":', "}")
    return orjson.loads(opener * depth + orjson.dumps(leaf).decode() + closer * depth)


nasty_scalars = st.one_of(
    # No lone surrogates: an answer's decoder replaces them with U+FFFD before any record
    # exists (pwh/sources/http.py::loads_json; tests/test_hostile_servers_http.py).
    st.builds(_huge_text, st.characters(exclude_categories=("Cs",)), st.integers(10_000, 300_000)),
    st.builds(lambda n: "9" * n, st.integers(4_000, 6_000)),  # digits beyond int() parsing limits
    st.sampled_from([
        "", " ", "\x00", "a\x00b", "\u202e\u200b", "null", "true", "NaN", "Infinity", "-0", "1e400",
        "1970-01-01", "2000-02-30", "9999-99-99", "0x1F", "１２３", "٣", "😀" * 3, "\ufeff", "\r\n",
        "-9223372036854775808", "9223372036854775808", "18446744073709551615",
    ]),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63), 2**64 - 1, 1e308, -1e-308, 0.5, -0.0, 1.0, 7258118400001]),
)
deep_values = st.builds(_nested, st.integers(65, 1024), st.sampled_from(["list", "dict"]), json_leaves)

json_values = st.recursive(
    st.one_of(json_leaves, nasty_scalars),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)
any_value = st.one_of(json_values, deep_values)

# ------------------------------------------------------------------ realistic records

_DATASET = RayteamsDataset(DatasetConfig(seed=5, n_projects=6, invalid_records=1))


def _templates() -> dict[str, list[dict]]:
    by_kind: dict[str, list[dict]] = {"project": [], "file": [], "comment": []}
    for pid in _DATASET.project_ids():
        for record in _DATASET.aggregate(pid) or []:
            kind = record["sk"].split(":")[0] if record["sk"] != PROJECT_SK else "project"
            if record["sk"].startswith("project:institute:"):
                kind = "group"
            by_kind.setdefault(kind, []).append(record)
            for comment in record.get("comments") or []:
                by_kind["comment"].append(comment)
        by_kind["file"].extend((_DATASET.files(pid) or {}).get("files", []))
    by_kind["comment"].append({"contents": "<p>ok</p>", "created": "1661924655726", "groupId": "g"})
    return by_kind


TEMPLATES = _templates()
RECORD_KINDS = sorted(k for k in TEMPLATES if k not in ("file", "comment"))
SK_VARIANTS = st.one_of(
    st.sampled_from([
        "project", "memo:", "memo:1", "memo:abc", "memo", "MEMO:1", "order:", "order:1:2", "order",
        "his:", "his:1", "attachments:", "attachments:😀", "project:institute:owner", "project:institute:",
        "project:institute", "scan:1", "unknown", "", " ", ":", "\x00", "memo:\x00",
    ]),
    st.text(max_size=12),
    st.builds(lambda prefix, rest: prefix + rest,
              st.sampled_from(["memo:", "order:", "his:", "attachments:", "project:institute:", "x:"]),
              st.text(max_size=12)),
    json_leaves,
)


@st.composite
def mutated(draw, kind: str, pid: str, depth: int = 0) -> Any:
    """A realistic record of ``kind`` with some fields dropped, retyped, nulled, inflated
    or nested, extra keys added, and its sk or _id varied."""
    record = copy.deepcopy(draw(st.sampled_from(TEMPLATES[kind])))
    if "_id" in record:
        record["_id"] = draw(st.sampled_from([pid, pid, pid, None, "someone-else", 7]))
    fields = sorted(record)
    for name in draw(st.lists(st.sampled_from(fields), max_size=len(fields), unique=True)) if fields else []:
        action = draw(st.sampled_from(["drop", "null", "value", "nasty", "deep"]))
        if action == "drop":
            record.pop(name)
        elif action == "null":
            record[name] = None
        elif action == "value":
            record[name] = draw(json_values)
        elif action == "nasty":
            record[name] = draw(nasty_scalars)
        else:
            record[name] = draw(deep_values)
    for name, value in draw(st.dictionaries(st.text(max_size=12), json_values, max_size=3)).items():
        record[name] = value
    if draw(st.booleans()) and kind not in ("file", "comment"):
        record["sk"] = draw(SK_VARIANTS)
    if kind == "memo" and depth == 0 and draw(st.booleans()):
        record["comments"] = draw(st.lists(
            st.one_of(mutated("comment", pid, depth=1), json_values), max_size=4))
    return record


@st.composite
def records_of(draw, pid: str) -> list[Any]:
    realistic = st.sampled_from(RECORD_KINDS).flatmap(lambda kind: mutated(kind, pid))
    arbitrary = st.one_of(
        json_values,
        st.dictionaries(st.text(max_size=10), any_value, max_size=6),
        st.builds(lambda sk, rest: {**rest, "sk": sk}, SK_VARIANTS,
                  st.dictionaries(st.text(max_size=10), any_value, max_size=6)),
    )
    return draw(st.lists(st.one_of(realistic, realistic, arbitrary), max_size=10))


@st.composite
def fetched_projects(draw) -> list[FetchedProject]:
    pids = draw(st.lists(
        st.one_of(st.uuids().map(str), st.text(min_size=1, max_size=40)), min_size=1, max_size=3, unique=True))
    projects = []
    for pid in pids:
        listed = draw(st.one_of(st.none(), mutated("project", pid)))
        files = draw(st.lists(st.one_of(mutated("file", pid), mutated("file", pid), json_values), max_size=5))
        projects.append(FetchedProject(pid, listed, draw(records_of(pid)), files))
    return projects


# ------------------------------------------------------------------ the accounting


def expected_inputs(projects: list[FetchedProject]) -> list[tuple[str, Any]]:
    """(project id, record) for every record of the batch, before comments."""
    inputs = []
    for project in projects:
        records = list(project.records)
        has_project = any(isinstance(r, Mapping) and r.get("sk") == PROJECT_SK for r in records)
        if not has_project and project.listed is not None:
            records.insert(0, project.listed)
        inputs += [(project.project_id, r) for r in (*records, *project.files)]
    return inputs


def transform_and_split(projects: list[FetchedProject], account: str = "lab"):
    batch = transform_projects(projects, account=account, pseudonyms=KEY)
    frames, rejected, issues = {}, list(batch.rejected), []
    for name, buffer in batch.buffers.items():
        frame, bad = split_valid(buffer, REDACT, batch.unit_redactors)
        assert frame.height + len(bad) == len(buffer), name  # validation loses nothing either
        assert not Counter(r.record_key for r in bad) - Counter(buffer.keys)
        # Issues are kept for rows that load only, no more rows than load.
        located = buffer.row_issues()
        assert len({(i.unit_key, i.record_key) for i in located}) <= frame.height, name
        frames[name] = frame
        rejected.extend(bad)
        issues.extend(located)
    return batch, frames, rejected, issues


def check_accounting(projects: list[FetchedProject], account: str = "lab"):
    batch, frames, rejected, issues = transform_and_split(projects, account)
    inputs = expected_inputs(projects)
    # Comments of a memo that made it into the memos buffer are records of their own.
    for memo in batch.buffers["memos"].raws:
        comments = memo.get("comments")
        if isinstance(comments, list):
            inputs += [(None, c) for c in comments]

    expected = Counter(id(record) for _, record in inputs)
    buffered = Counter(id(raw) for buffer in batch.buffers.values() for raw in buffer.raws)
    # Every row of every table comes from an input record, none more often than it was given.
    assert not buffered - expected, "a row that no input record explains"
    # The rest were rejected by the transform, one rejection each.
    assert len(inputs) - sum(buffered.values()) == len(batch.rejected)
    # And in the end: loaded rows + rejected records = records given.
    assert sum(f.height for f in frames.values()) + len(rejected) == len(inputs)

    pids = {p.project_id for p in projects}
    for record in rejected:
        assert isinstance(record, RejectedRecord)
        assert record.table in TABLE_NAMES and record.unit_key in pids
        assert record.reasons and all(isinstance(r, str) and r for r in record.reasons)
        orjson.loads(record.raw_json)  # valid JSON text
    # A memo the transform rejected carries its comments in its raw JSON.
    carried = Counter(
        len(raw["comments"]) for raw in (orjson.loads(r.raw_json) for r in batch.rejected if r.table == "memos")
        if isinstance(raw, dict) and isinstance(raw.get("comments"), list)
    )
    in_buffer = {id(m) for m in batch.buffers["memos"].raws}
    unbuffered = Counter(
        len(r["comments"]) for _, r in inputs
        if isinstance(r, Mapping) and id(r) not in in_buffer and isinstance(r.get("sk"), str)
        and r["sk"].startswith("memo:") and isinstance(r.get("comments"), list) and r["comments"]
    )
    assert not unbuffered - carried, "comments of a rejected memo went missing"
    for located in issues:
        assert located.table in TABLE_NAMES and located.unit_key in pids
        assert located.issue.field and located.issue.reason and located.issue.value
    return frames, rejected, issues


@HOSTILE
@given(fetched_projects())
def test_every_record_is_loaded_or_rejected_never_lost(projects):
    check_accounting(projects)


@HOSTILE
@given(st.lists(st.one_of(json_values, deep_values), max_size=8), st.lists(json_values, max_size=4))
def test_fully_arbitrary_values_as_records_and_files(records, files):
    check_accounting([FetchedProject("p-1", None, records, files)])


@pytest.mark.parametrize("depth", [64, 65, 254, 255, 1024])
def test_deep_nesting_in_every_json_column(depth):
    deep = _nested(depth, "list", "leaf")
    pid = "p"
    records = [
        {"_id": pid, "sk": "his:1", "updateType": "x", "created": 1, "data": deep},
        {"_id": pid, "sk": "order:1", "medicalRecords": deep, "treatments": _nested(depth, "dict", 1),
         "workflow": deep, "created": 1, "product": {"deep": deep}},
        {"_id": pid, "sk": "scan:1", "payload": deep},
        {"_id": pid, "sk": "memo:1", "created": deep, "comments": [deep]},
        {"_id": pid, "sk": "project", "subject": {"name": "N", "birth": "1990-01-01", "more": deep}},
    ]
    frames, rejected, _ = check_accounting([FetchedProject(pid, None, records, [deep])])
    # The memo loads (its unreadable `created` is a field issue); its comment is no object.
    assert {r.record_key for r in rejected} == {"p/memo:1/comments/0", "p/files/0"}
    assert frames["histories"].height == frames["orders"].height == frames["other_records"].height == 1


# ------------------------------------------------------------------ into DuckDB

_accounts = itertools.count()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    con = connect(tmp_path_factory.mktemp("hostile") / "w.duckdb")
    migrate(con)
    yield con
    con.close()


@settings(HOSTILE, max_examples=12)
@given(projects=fetched_projects())
def test_whatever_the_transform_accepts_loads_into_duckdb(warehouse, projects):
    account = f"hostile-{next(_accounts)}"
    frames, rejected, issues = check_accounting(projects, account)
    pids = [p.project_id for p in projects]
    inserted = replace_units(
        warehouse, source="rayteams", account=account, run_id="hostile", tables=tables.TABLES,
        cursors=dict.fromkeys(pids), frames=frames, rejected=rejected, issues=issues,
        now=datetime.now(timezone.utc),
    )
    for table in tables.TABLES:
        stored = warehouse.execute(
            f"SELECT count(*) FROM {table.qualified_name} WHERE account = ?", [account]
        ).fetchall()[0][0]
        assert stored == inserted[table.name] == frames[table.name].height
    quarantined = warehouse.execute(
        "SELECT count(*) FROM pipeline.rejected_records WHERE account = ?", [account]
    ).fetchall()[0][0]
    assert quarantined == len(rejected)
    [(stored_issues,)] = warehouse.execute(
        "SELECT count(*) FROM pipeline.field_issues WHERE account = ?", [account]).fetchall()
    assert stored_issues == len(issues)


def test_awkward_strings_load_as_they_came(warehouse):
    """NUL characters, a 1 MB string, astral and bidi characters survive into DuckDB."""
    awkward = ["a\x00b", "x" * 1_000_000, "😀\u202e\u200b\ufeff", "\r\n\t", "１２３"]
    pid = "awkward\x00project"
    records = [
        {"_id": pid, "sk": "project", "name": awkward[0], "region": awkward[1], "projecttype": awkward[2],
         "labId": awkward[3], "ownerGroupId": awkward[4], "subject": {"name": "y" * 1_000_000}},
        {"_id": pid, "sk": "scan:\x00", "note": awkward},
    ]
    frames, rejected, _ = check_accounting([FetchedProject(pid, None, records, [])], "awkward")
    assert not rejected
    replace_units(
        warehouse, source="rayteams", account="awkward", run_id="awkward", tables=tables.TABLES,
        cursors={pid: None}, frames=frames, rejected=[], now=datetime.now(timezone.utc),
    )
    row = warehouse.execute(
        "SELECT project_id, name, region, project_type, lab_id, owner_group_id FROM rayteams.projects "
        "WHERE account = 'awkward'"
    ).fetchall()
    assert row == [(pid, *awkward)]
    [(record,)] = warehouse.execute("SELECT record FROM rayteams.other_records WHERE account = 'awkward'").fetchall()
    assert orjson.loads(record)["note"] == awkward


# ------------------------------------------------------------------ patient identifiers

MARK = "Patient Zz-MARKER Kimlee"
BIRTH = "1961-07-23"
BIRTH_FORMS = (BIRTH, "19610723", "23/07/1961", "07/23/1961", "23.07.1961", "1961년 7월 23일", "23 Jul 1961")
SIGNATURE = "SIGMARK0a1b2c"


def _identifier_shapes(mark: str, birth: str) -> st.SearchStrategy:
    """The documented patient fields (subject.name, subject.birth, patientId, patientName)
    and keys only named like them, holding the identifier in odd shapes, anywhere in a
    record; the same identifiers again in free text beside them (scrubbed by value); and
    signed links."""
    subject = st.sampled_from([
        {"name": mark, "birth": birth}, {"name": {"full": mark}}, {"name": [mark]},
        [{"name": mark, "birth": birth}], [[{"name": mark}]], {"name": mark, "more": {"name": mark}},
    ])
    direct = st.sampled_from([
        {"patientId": mark}, {"patientId": [mark]}, {"patientName": {"x": mark}}, {"patient_id": mark},
        {"patient": {"name": mark, "birth": birth}}, {"PATIENT_NAME": mark}, {"patient-birth": birth},
        {"DOB": birth}, {"guardian": {"lastName": mark, "firstName": [mark]}}, {"Subject": [mark]},
        {"subjectInfo": {"fullName": mark}}, {"환자": {"이름": mark, "생년월일": birth}},
        {"change": {"field": "subject.name", "before": mark, "after": "Someone Else"}},
    ])
    by_value = st.sampled_from([f"re {mark.upper()}, born " + form for form in BIRTH_FORMS]).map(
        lambda text: {"patient": {"name": mark, "birth": birth}, "note": text, text: "a key", "deep": [{"memo": text}]})
    links = st.sampled_from([
        {"DownloadUrl": f"https://h.example/x?X-Amz-Signature={SIGNATURE}"},
        {"href": f"//h.example/x?sig={SIGNATURE}"},
        {"note": f"<a href='https://h.example/x?token={SIGNATURE}'>file</a>"},
        {"links": [{"url": f"https://user:{SIGNATURE}@h.example/x"}]},
    ])
    placed = st.one_of(subject.map(lambda s: {"subject": s}), direct, by_value, links)
    return st.recursive(placed, lambda inner: st.one_of(
        st.builds(lambda v: {"data": v}, inner), st.builds(lambda v: [v], inner),
        st.builds(lambda v: {"subject": {"extra": v}}, inner)), max_leaves=3)


@HOSTILE
@given(
    st.lists(st.tuples(st.sampled_from(RECORD_KINDS), _identifier_shapes(MARK, BIRTH)), min_size=1, max_size=5),
    st.data(),
)
def test_patient_identifiers_never_survive_in_any_shape(placements, data):
    pid = "p-ident"
    records = []
    for kind, shape in placements:
        record = copy.deepcopy(data.draw(st.sampled_from(TEMPLATES[kind])))
        record["_id"] = pid
        field = data.draw(st.sampled_from(
            ["subject", "patientId", "data", "extra_field", "medicalRecords", "product", "created", "name"]))
        record[field] = shape
        records.append(record)
    frames, rejected, issues = check_accounting([FetchedProject(pid, None, records, [])])
    stored = orjson.dumps([frame.to_dicts() for frame in frames.values()], default=str).decode()
    stored += "".join(r.raw_json + "".join(r.reasons) for r in rejected)
    stored += "".join(str(located.issue) for located in issues)
    assert MARK.casefold() not in stored.casefold(), "a patient identifier survived"
    for form in BIRTH_FORMS:
        assert form not in stored, f"a full birth date survived ({form})"
    assert SIGNATURE not in stored, "a signed link survived"
