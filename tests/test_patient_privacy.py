"""Patient data fails closed: every text the warehouse keeps from a project is scrubbed of
that project's own patient names, birth dates and ids by value (in every usual written
form, in values and keys, at any depth, inside longer text), values under any key naming a
patient are pseudonymised, and links keep no query, fragment or user info.

Unit tests run the transform and validation split on hand-written records; the end-to-end
test serves hostile projects from an aiohttp server of its own on 127.0.0.1, syncs them
into a DuckDB file with the real flow and searches the file, its replica and every table."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest
from aiohttp import web

from pwh.flows.prefect_flows import sync_rayteams
from pwh.schemas.validate import split_valid
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.transforms.rayteams import FetchedProject, transform_projects
from pwh.transforms.redact import (
    MARKER,
    Redactor,
    patient_identifiers,
    redact_unknown_source,
)
from pwh.warehouse.replica import replica_path

KEY = Pseudonymizer(b"privacy-test-key-0123456789")
PID = "0b7c2a51-7d0e-4c1e-9a55-3f1f3c1d2e01"
NAME, BIRTH, PATIENT_ID = "Kim Minji", "1978-12-28", "PT-55821"
BIRTH_MS = int(datetime(1978, 12, 28, tzinfo=timezone.utc).timestamp() * 1000)
BIRTH_KST_MS = BIRTH_MS - 9 * 3_600_000  # midnight in Seoul
NAME_FORMS = ("Kim Minji", "KIM MINJI", "Minji Kim", "Kim  Minji", "kim\tminji", "KimMinji", "MINJIKIM",
              "Kim, Minji", "Minji", "KIM")
BIRTH_FORMS = ("1978-12-28", "19781228", "1978/12/28", "28/12/1978", "12/28/1978", "28.12.1978",
               "1978.12.28", "78.12.28", "781228", "28 Dec 1978", "December 28, 1978", "Dec. 28th 1978",
               "1978년 12월 28일", "1978-12-28T00:00:00Z", "1978-12-28T09:30:00+09:00", str(BIRTH_MS),
               str(BIRTH_KST_MS), str(BIRTH_MS // 1000))


def subject_record(**more):
    record = {"_id": PID, "sk": "project", "name": "case-2211", "patientId": PATIENT_ID,
              "subject": {"name": NAME, "birth": BIRTH}, "created": 1661924655726, "updated": 1669373726576}
    record.update(more)
    return record


ISSUES = "(field issues)"  # the rows pipeline.field_issues would get, as one more frame


def run(records, files=(), listed=None, pid=PID):
    batch = transform_projects([FetchedProject(pid, listed, list(records), list(files))], account="lab", pseudonyms=KEY)
    frames, rejected, issues = {}, list(batch.rejected), []
    for name, buffer in batch.buffers.items():
        frame, bad = split_valid(buffer, Redactor(KEY), batch.unit_redactors)
        frames[name] = frame
        rejected.extend(bad)
        issues.extend(f"{i.record_key} {i.issue}" for i in buffer.row_issues())
    frames[ISSUES] = pl.DataFrame({"issue": issues}, schema={"issue": pl.Utf8})
    return frames, rejected


def everything(frames, rejected) -> str:
    text = orjson.dumps([frame.to_dicts() for frame in frames.values()], default=str).decode()
    return text + "".join(r.raw_json + r.record_key + "".join(r.reasons) for r in rejected)


def assert_no_identifier(stored: str, names=NAME_FORMS, births=BIRTH_FORMS, ids=(PATIENT_ID,)) -> None:
    folded = stored.casefold()
    for form in (*names, *ids):
        assert form.casefold() not in folded, f"{form!r} survived"
    for form in births:
        assert form not in stored, f"{form!r} survived"


# ------------------------------------------------------------------ by value


@pytest.mark.parametrize("form", NAME_FORMS + BIRTH_FORMS + (PATIENT_ID, PATIENT_ID.lower()))
def test_every_written_form_is_scrubbed_wherever_a_project_keeps_text(form):
    """The form inside longer text in a memo, a comment, an order memo, a history body, an
    unmodelled field, a key, a file name, an unknown record kind and a quarantined record."""
    text = f"patient {form} called (re: {form})"
    records = [
        subject_record(referral={"note": text}),
        {"_id": PID, "sk": "memo:1669263126159", "content": f"<p>{text}</p>", "created": 1669263126159,
         "comments": [{"contents": text, "created": 1669263126160}]},
        {"_id": PID, "sk": "order:1669346270408", "memo": text, "workflow": [{"step": text}],
         "product": {"productname": "Aligner", "extra": text}, "created": 1669346270408},
        {"_id": PID, "sk": "his:1669263126161", "updateType": "RAY_LINK_PROJECT_ADDMEMO",
         "data": {"content": text, text: "as a key", "deep": [[{"x": text}]]}, "created": 1669263126161},
        {"_id": PID, "sk": "attachments:1669263126162", "name": f"{form}.png", "size": 10, "created": 1669263126162},
        {"_id": PID, "sk": "scan:1669263126163", "comment": text, "nested": {text: {"k": [text]}}},
        {"_id": PID, "sk": "attachments:1669263126164", "size": -1, "note": text},  # quarantined by pandera
        {"_id": PID, "sk": "memo:1669263126165", "created": text},  # loads NULL with a field issue
    ]
    frames, rejected = run(records, files=[{"filetype": "face", "name": f"{form}.obj", "size": 1, "note": text}])
    assert len(rejected) == 1
    assert frames[ISSUES].height >= 1
    assert_no_identifier(everything(frames, rejected), names=(form,) if form in NAME_FORMS else (),
                         births=(form,) if form in BIRTH_FORMS else (),
                         ids=(form,) if form.casefold() == PATIENT_ID.casefold() else ())
    assert MARKER in frames["memos"]["content_html"][0]


def test_text_without_the_patient_is_kept_as_it_came():
    memo = "Aligner B ready; call Dr. Kimberly on 2022-11-24 (order 4411)"
    frames, _ = run([
        subject_record(note="tray kit 2/3"),
        {"_id": PID, "sk": "memo:1", "content": memo, "created": 1669263126159},
        {"_id": PID, "sk": "attachments:2", "name": "scan_upper.stl", "size": 10, "created": 1669263126162},
    ])
    assert frames["memos"]["content_html"].to_list() == [memo]
    assert frames["attachments"]["name"].to_list() == ["scan_upper.stl"]
    project = frames["projects"].row(0, named=True)
    assert project["name"] == "case-2211"
    assert orjson.loads(project["extra"]) == {"note": "tray kit 2/3"}


def test_an_old_name_recorded_in_a_change_is_scrubbed_though_its_keys_are_innocent():
    records = [
        subject_record(),
        {"_id": PID, "sk": "his:1", "updateType": "RAY_LINK_PROJECT_UPDATE",
         "data": {"field": "subject.name", "before": "Lee Sora", "after": NAME}},
        {"_id": PID, "sk": "his:2", "updateType": "RAY_LINK_PROJECT_UPDATE",
         "data": {"changes": [{"old": "Park Haneul", "new": "Lee Sora"}]}},  # found through Lee Sora
        {"_id": PID, "sk": "his:3", "updateType": "RAY_LINK_PROJECT_UPDATE",
         "data": {"key": "patientBirth", "from": "1979-01-05", "to": BIRTH}},
        {"_id": PID, "sk": "memo:4", "content": "formerly SORA LEE, before that Haneul Park, born 05.01.1979"},
    ]
    frames, rejected = run(records)
    assert_no_identifier(everything(frames, rejected),
                         names=("Lee Sora", "Sora", "Haneul", "Park"), births=("1979-01-05", "05.01.1979"))


def test_hangul_names_are_scrubbed_with_particles_spacing_and_given_name():
    records = [
        {"_id": PID, "sk": "project", "subject": {"name": "박서연", "birth": "1990-03-05"}},
        {"_id": PID, "sk": "memo:1", "content": "박서연 환자 1990년 3월 5일생; 서연씨, 박 서연님께 연락"},
    ]
    frames, rejected = run(records)
    stored = everything(frames, rejected)
    for form in ("박서연", "서연", "1990년 3월 5일"):
        assert form not in stored
    assert "환자" in frames["memos"]["content_html"][0]


# ------------------------------------------------------------------ by key


@pytest.mark.parametrize("shape", [
    {"patient": {"name": "Park Jisoo", "birth": "1980-01-02"}},
    {"patient_name": "Park Jisoo"}, {"PatientName": "Park Jisoo"}, {"patient-name": ["Park Jisoo"]},
    {"patientBirth": "1980-01-02"}, {"dob": "02/01/1980"}, {"DOB": 315619200000}, {"birthday": "1980.01.02"},
    {"DATE_OF_BIRTH": "19800102"}, {"Patient Name": {"first": "Jisoo", "last": "Park"}},
    {"guardian": {"lastName": "Park", "firstName": "Jisoo"}}, {"환자이름": "Park Jisoo"},
    {"생년월일": "1980-01-02"}, {"ssn": "800102-2345678"}, {"rrn": "800102-2345678"},
    {"meta": {"Subject": {"Name": "Park Jisoo", "Birth": "1980-01-02"}}},
])
@pytest.mark.parametrize("place", ["project", "unknown", "history", "order"])
def test_values_under_any_key_naming_a_patient_never_land_raw(shape, place):
    """The values never land raw, and the identifiers they carry are scrubbed by value from
    the project's free text too."""
    carried = orjson.dumps(shape).decode()
    names = ("Park Jisoo", "Jisoo", "Park") if "Jisoo" in carried else ()
    births = ("1980-01-02", "02/01/1980", "1980.01.02", "19800102", "315619200000", "2 Jan 1980") \
        if any(form in carried for form in ("1980", "315619200000")) else ()
    ids = ("800102-2345678",) if "2345678" in carried else ()
    record = {
        "project": subject_record(**shape),
        "unknown": {"_id": PID, "sk": "scan:1", **shape},
        "history": {"_id": PID, "sk": "his:1", "data": shape},
        "order": {"_id": PID, "sk": "order:1", "treatments": [shape]},
    }[place]
    records = [subject_record(), record] if place != "project" else [record]
    records.append({"_id": PID, "sk": "memo:9", "content": f"{' '.join(names)} b. {', '.join(births)} {' '.join(ids)}"})
    frames, rejected = run(records)
    assert_no_identifier(everything(frames, rejected), names=names, births=births, ids=ids)


def test_patient_keys_keep_a_joinable_pseudonym_and_the_birth_year():
    frames, _ = run([subject_record(patient={"name": "Park Jisoo", "birth": "1980-01-02"}, dob=315619200000)])
    extra = orjson.loads(frames["projects"]["extra"][0])
    assert extra == {"patient": {"name": KEY.pseudonym("Park Jisoo"), "birth": 1980}, "dob": 1980}


def test_a_project_name_or_file_name_that_is_not_the_patient_is_not_touched():
    frames, _ = run([subject_record(fileName="maxilla_v2.stl", title="Name of case")],
                    files=[{"filetype": "maxilla", "name": "maxilla_v2.stl", "size": 3}])
    extra = orjson.loads(frames["projects"]["extra"][0])
    assert extra == {"fileName": "maxilla_v2.stl", "title": "Name of case"}
    assert frames["files"]["name"].to_list() == ["maxilla_v2.stl"]


# ------------------------------------------------------------------ links

SIGNED = [
    ("https://bucket.s3.ap-northeast-2.amazonaws.com/p/a.stl?X-Amz-Algorithm=AWS4&X-Amz-Credential=AKIAQX&X-Amz-Signature=f00dfeed",
     "https://bucket.s3.ap-northeast-2.amazonaws.com/p/a.stl", ("AKIAQX", "f00dfeed", "X-Amz")),
    ("https://d111.cloudfront.net/v.mp4?Expires=1700000000&Signature=cfsig~abc&Key-Pair-Id=K2JCJMDEHXQW5F",
     "https://d111.cloudfront.net/v.mp4", ("cfsig", "K2JCJMDEHXQW5F")),
    ("https://storage.googleapis.com/b/o.png?X-Goog-Signature=googsig0&X-Goog-Credential=svc%40p",
     "https://storage.googleapis.com/b/o.png", ("googsig0", "svc%40p")),
    ("https://acct.blob.core.windows.net/c/b.zip?sv=2022-11-02&sp=r&sig=azsig%2Bx%3D",
     "https://acct.blob.core.windows.net/c/b.zip", ("azsig",)),
    ("https://api.example/cb#access_token=implicit0tok&state=1", "https://api.example/cb", ("implicit0tok",)),
    ("ftp://user:hunter2pw@files.example/x.zip", "ftp://files.example/x.zip", ("hunter2pw",)),
    ("HTTPS://Host.Example:8443/a/b?token=tok0value", "HTTPS://Host.Example:8443/a/b", ("tok0value",)),
]


@pytest.mark.parametrize("url, kept, secrets", SIGNED)
@pytest.mark.parametrize("key", ["DownloadLink", "downloadUrl", "url", "href", "preview", "link_to_scan"])
def test_links_keep_no_query_fragment_or_user_info_under_any_key(url, kept, secrets, key):
    frames, rejected = run([
        subject_record(**{key: url}),
        {"_id": PID, "sk": "memo:1", "content": f'<a href="{url}">scan</a> or {url} (expires soon)'},
        {"_id": PID, "sk": "scan:1", "assets": [{key: url}]},
    ])
    stored = everything(frames, rejected)
    for secret in secrets:
        assert secret not in stored
    assert f'<a href="{kept}">scan</a> or {kept} (expires soon)' == frames["memos"]["content_html"][0]


def test_a_query_string_without_a_scheme_is_dropped_too():
    frames, _ = run([subject_record(thumb="/files/t.png?token=abc0secret&x=1", note="see ?sig=zz0sig")])
    assert orjson.loads(frames["projects"]["extra"][0]) == {"thumb": "/files/t.png", "note": "see "}


# ------------------------------------------------------------------ other sources


def test_sources_without_patient_subjects_get_the_key_and_link_rules():
    raw = {"subject": "Work package title", "patientName": "Kim Minji", "dob": "1978-12-28",
           "assignee": {"lastName": "Kim"}, "attachment": "https://op.example/a?token=t0k",
           "apiToken": "secret0value"}
    assert redact_unknown_source(raw) == {
        "subject": "Work package title", "patientName": MARKER, "dob": 1978,
        "assignee": {"lastName": MARKER}, "attachment": "https://op.example/a",
    }


def test_identifiers_are_collected_per_project():
    """One project's patient is not another's: each project's text loses only its own."""
    other = "1d7c2a51-7d0e-4c1e-9a55-3f1f3c1d2e02"
    batch = transform_projects([
        FetchedProject(PID, None, [subject_record(note="Lee Sora visited")], []),
        FetchedProject(other, None, [{"_id": other, "sk": "project", "subject": {"name": "Lee Sora"},
                                      "note": "Kim Minji visited"}], []),
    ], account="lab", pseudonyms=KEY)
    notes = {r["project_id"]: orjson.loads(r["extra"])["note"] for r in batch.buffers["projects"].frame().to_dicts()}
    assert notes == {PID: "Lee Sora visited", other: "Kim Minji visited"}
    assert patient_identifiers([subject_record()]).births == {(1978, 12, 28)}


# ------------------------------------------------------------------ end to end

TOKEN, CLIENT_ID = "tok-PRIVACY-55a1", "client-PRIVACY-2b"
P1, P2, P3 = PID, "1a0e0e0e-0000-4000-8000-000000000002", "1a0e0e0e-0000-4000-8000-000000000003"
SIGNATURES = ("deadbeefsig", "AKIAPRIVACY", "cf0sig", "goog0sig", "file0sig", "X-Amz-Signature", "Key-Pair-Id")


def _hostile_projects() -> dict[str, tuple[dict, list[dict], list[dict]]]:
    """Three projects: a Latin-script patient everywhere a server can put her, a Hangul one,
    and one without patient text (its content must survive as it came)."""
    listed1 = {"_id": P1, "sk": "project", "name": "case-2211", "patientId": PATIENT_ID, "updated": 1669373726576,
               "subject": {"name": NAME, "birth": BIRTH}, "created": 1661924655726}
    records1 = [
        {**listed1, "patient": {"name": NAME, "birth": BIRTH}, "patient_name": "KIM MINJI",
         "patientBirth": BIRTH_MS, "PatientName": "Minji Kim", "referral": "for Kim  Minji (28.12.1978)",
         "DownloadLink": "https://bucket.s3.amazonaws.com/x.stl?X-Amz-Signature=deadbeefsig&X-Amz-Credential=AKIAPRIVACY"},
        {"_id": P1, "sk": "memo:1669263126159", "content": f"patient {NAME} born {BIRTH} called", "created": 1669263126159,
         "comments": [{"contents": "MINJI KIM 19781228", "created": 1669263126160}, {"content": "dob 12/28/1978"}]},
        {"_id": P1, "sk": "his:1669263126161", "updateType": "RAY_LINK_PROJECT_UPDATE", "created": 1669263126161,
         "data": {"field": "subject.name", "before": "Lee Sora", "after": NAME}},
        {"_id": P1, "sk": "his:1669263126162", "updateType": "RAY_LINK_PROJECT_UPDATE", "created": 1669263126162,
         "data": {"old": "Sora Lee", "new": "Kim Minji"}},
        {"_id": P1, "sk": "order:1669346270408", "created": 1669346270408, "patientId": PATIENT_ID,
         "subject": {"name": NAME, "birth": BIRTH}, "memo": "call Ms. Kim Minji re 28 Dec 1978",
         "treatments": [{"note": "Minji: upper arch"}], "downloadUrl": "https://cdn.example/o.zip?Signature=cf0sig&Key-Pair-Id=K2"},
        {"_id": P1, "sk": "scan:1669263126163", "owner": {"fullName": NAME, "dob": "28/12/1978"},
         "preview": {"href": "https://storage.googleapis.com/b/o?X-Goog-Signature=goog0sig"}, "label": f"{BIRTH_MS}"},
        {"_id": P1, "sk": "attachments:1669263126164", "name": "Kim_Minji_1978-12-28.png", "size": 10,
         "created": 1669263126164},
        {"_id": P1, "sk": "attachments:1669263126165", "name": "KimMinji.txt", "size": -5, "note": "birth 1978.12.28"},
        {"_id": P1, "sk": "memo:1669263126166", "created": "Kim Minji 1978-12-28"},
    ]
    files1 = [{"filetype": "maxilla", "name": "maxilla.stl", "size": 1, "downloadExpired": 1669263126100,
               "downloadLink": "https://x.example/y?X-Amz-Signature=file0sig", "meta": {"patient": NAME}}]
    listed2 = {"_id": P2, "sk": "project", "name": "case-2212", "updated": 1669373726576,
               "subject": {"name": "박서연", "birth": "1990-03-05"}}
    records2 = [listed2, {"_id": P2, "sk": "memo:1669263126170", "content": "박서연 환자 1990년 3월 5일생, 서연씨 연락",
                          "comments": [{"content": "박 서연 19900305"}]}]
    listed3 = {"_id": P3, "sk": "project", "name": "case-2213", "updated": 1669373726576,
               "subject": {"name": "Choi Yuna", "birth": "2001-07-09"}}
    records3 = [listed3, {"_id": P3, "sk": "memo:1669263126180", "content": "Aligner B ready for pickup"}]
    return {P1: (listed1, records1, files1), P2: (listed2, records2, []), P3: (listed3, records3, [])}


async def _serve(projects) -> web.AppRunner:
    def envelope(data) -> web.Response:
        return web.Response(body=orjson.dumps({"status": "success", "data": data}), content_type="application/json")

    async def project_list(_request):
        return envelope([listed for listed, _, _ in projects.values()])

    async def project(request):
        return envelope(projects[request.match_info["pid"]][1])

    async def files(request):
        return envelope({"files": projects[request.match_info["pid"]][2]})

    app = web.Application()
    app.router.add_get("/v1.0/project", project_list)
    app.router.add_get("/v1.0/project/{pid}", project)
    app.router.add_get("/v1.0/file/{pid}", files)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


@pytest.mark.usefixtures("prefect_harness")
async def test_hostile_projects_leave_no_patient_identifier_in_the_warehouse_or_its_replica(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    runner = await _serve(_hostile_projects())
    port = runner.addresses[0][1]
    db = tmp_path / "w.duckdb"
    try:
        summary = await sync_rayteams(base_url=f"http://127.0.0.1:{port}/v1.0", db_path=str(db), batch_size=2)
    finally:
        await runner.cleanup()
    # Quarantined: the attachment of size -5; the memo whose `created` is the patient's name
    # and birth date loads with a field issue (searched below like every other table).
    assert summary["status"] == "success" and summary["rows_rejected"] == 1

    con = duckdb.connect(str(db))
    assert con.execute("SELECT count(*) FROM pipeline.field_issues WHERE field = 'created'").fetchone()[0] == 1
    con.execute("CHECKPOINT")
    tables = con.execute("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
    cells = []
    for schema, table in tables:
        cells += [str(cell) for row in con.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall() for cell in row]
    memo3 = con.execute("SELECT content_html FROM rayteams.memos WHERE project_id = ?", [P3]).fetchall()
    con.close()
    assert memo3 == [("Aligner B ready for pickup",)]  # no patient in it: kept as it came
    assert len(cells) > 100
    text = "\n".join(cells)

    names = (*NAME_FORMS, "Lee Sora", "Sora Lee", "박서연", "서연")
    births = (*BIRTH_FORMS, "1990년 3월 5일", "19900305", "1990-03-05")
    files = [db, replica_path(db), Path(f"{db}.wal")]
    assert replica_path(db).exists()
    raw = b"".join(path.read_bytes() for path in files if path.exists())
    for form in (*names, PATIENT_ID, *births, *SIGNATURES):
        assert form.casefold() not in text.casefold(), f"{form!r} found in a table"
        assert form.encode() not in raw and form.lower().encode() not in raw, f"{form!r} found in a warehouse file"
    assert os.environ["PWH_PSEUDONYM_KEY"].encode() not in raw
