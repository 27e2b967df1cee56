"""The RAYTeams transform on hand-written records: every documented quirk, routing by sk,
patient data, and nothing dropped."""

from __future__ import annotations

import json
from functools import partial

import polars as pl
import pytest

from pwh.schemas.validate import split_valid
from pwh.transforms.pseudonym import Pseudonymizer, birth_year
from pwh.transforms.rayteams import FetchedProject, route, transform_projects
from pwh.transforms.redact import redact

KEY = Pseudonymizer(b"unit-test-key-0123456789")
PID = "fb3ac626-181e-4387-a9c3-c263e4e57c4e"


def project_record(**changes):
    record = {
        "_id": PID, "sk": "project", "region": "ap-northeast-2", "name": "project-1110201",
        "patientId": "patient-110202", "projecttype": "DENTALAVATAR", "count": 15, "size": 39449461,
        "ownerGroupId": "62d901cdcf70d0a2cf6c5d6e", "labId": "62dfdb179a4e3409ba649869",
        "lastUpdateGroupId": "62d901cdcf70d0a2cf6c5d6e", "status": {"code": "custom", "text": "Request Confirm"},
        "subject": {"name": "Tester Kim", "birth": "1978-12-28"}, "istrash": True, "isarchive": False,
        "created": 1661924655726, "updated": 1669373726576,
    }
    record.update(changes)
    return record


def run(records=(), files=(), listed=None):
    batch = transform_projects([FetchedProject(PID, listed, list(records), list(files))], account="lab", pseudonyms=KEY)
    frames, rejected = {}, list(batch.rejected)
    for name, buffer in batch.buffers.items():
        frame, bad = split_valid(buffer, partial(redact, pseudonyms=KEY), batch.unit_redactors)
        frames[name] = frame
        rejected.extend(bad)
    return frames, rejected


def only_row(frame: pl.DataFrame) -> dict:
    assert frame.height == 1, frame
    return frame.row(0, named=True)


@pytest.mark.parametrize(
    "sk, table",
    [("project", "projects"), ("memo:1", "memos"), ("attachments:1", "attachments"), ("his:1", "histories"),
     ("order:1", "orders"), ("project:institute:owner", "groups"), ("project:institute:16692", "groups"),
     ("scan:1", "other_records"), ("projectx", "other_records"), ("memo", "other_records")],
)
def test_records_are_routed_by_sk_prefix(sk, table):
    assert route(sk) == table


def test_project_with_documented_types_and_example_types_normalises_the_same():
    as_in_example, _ = run([project_record()])
    as_in_table, _ = run([project_record(name=1110201, istrash="true", created="1661924655726", updated="1669373726576")])
    a, b = only_row(as_in_example["projects"]), only_row(as_in_table["projects"])
    assert b["name"] == "1110201" and a["name"] == "project-1110201"
    assert a["is_trash"] is b["is_trash"] is True
    assert a["created_at"] == b["created_at"] and a["updated_at"] == b["updated_at"]
    assert str(a["created_at"]) == "2022-08-31 05:44:15.726000+00:00"
    assert a["file_count"] == 15 and a["size_bytes"] == 39449461


def test_count_documented_as_boolean_gives_no_count_rather_than_a_wrong_one():
    frames, rejected = run([project_record(count=True)])
    assert not rejected and only_row(frames["projects"])["file_count"] is None


def test_patient_name_and_birth_date_never_land_raw():
    frames, _ = run([project_record()])
    row = only_row(frames["projects"])
    assert row["subject_birth_year"] == 1978
    assert row["subject_pseudonym"] == KEY.pseudonym("Tester Kim") and len(row["subject_pseudonym"]) == 64
    assert row["patient_pseudonym"] == KEY.pseudonym("patient-110202")
    text = frames["projects"].write_csv()
    assert "Tester Kim" not in text and "1978-12-28" not in text and "patient-110202" not in text


def test_pseudonyms_depend_on_the_key():
    other = Pseudonymizer(b"another-key-0123456789ab")
    assert other.pseudonym("Tester Kim") != KEY.pseudonym("Tester Kim")
    assert KEY.pseudonym("Tester Kim") == KEY.pseudonym("Tester Kim")


def test_memo_comments_accept_content_and_contents():
    memo = {"_id": PID, "sk": "memo:1667454117029", "content": "<p>Test Message</p>\n", "created": "1667454117029",
            "groupId": "g1", "comments": [
                {"content": "<p>Reply A</p>\n", "created": 1667454126923, "groupId": "g1"},
                {"contents": "<p>Reply B</p>\n", "created": "1667454126999", "groupId": "g2"}]}
    frames, rejected = run([memo])
    assert not rejected
    assert only_row(frames["memos"])["comment_count"] == 2
    comments = frames["memo_comments"].sort("position")
    assert comments["content_html"].to_list() == ["<p>Reply A</p>\n", "<p>Reply B</p>\n"]
    assert comments["memo_sk"].to_list() == ["memo:1667454117029"] * 2


def test_history_data_is_kept_as_json_whatever_its_shape():
    frames, _ = run([
        {"_id": PID, "sk": "his:1", "updateType": "RAY_LINK_PROJECT_ADDMEMO", "created": 1669272896105,
         "data": {"content": "<p>test pos</p>\n", "type": "create"}},
        {"_id": PID, "sk": "his:2", "updateType": "RAY_LINK_PROJECT_ADDCOMMENT", "created": 1669272914390,
         "data": {"sk": "memo:1669272894365", "data": {"content": "<p>test comment</p>\n"}}},
    ])
    data = {r["sk"]: json.loads(r["data"]) for r in frames["histories"].iter_rows(named=True)}
    assert data["his:2"]["data"]["content"] == "<p>test comment</p>\n"
    assert data["his:1"]["type"] == "create"


def test_orders_get_product_and_status_columns_and_keep_the_rest_as_json():
    order = {"_id": PID, "sk": "order:1669346270408", "ownerGroupId": "o", "labId": "l", "status": "node_1",
             "statusName": "Wait Response", "statusType": "INPROGRESS",
             "product": {"currency": "원", "discount": "10", "price": 360000, "productname": "Aligner B", "sku": "x1"},
             "patientId": "NEW-0003", "subject": {"name": "Order Patient", "birth": "1981-12-12"}, "memo": "m",
             "medicalRecords": {"a": 1}, "treatments": [{"t": 1}], "workflow": {"w": 1},
             "created": 1669346270408, "updated": 1669399728318, "newField": {"kept": True}}
    frames, rejected = run([order])
    assert not rejected
    row = only_row(frames["orders"])
    assert row["order_id"] == f"{PID}-1669346270408"
    assert (row["status_type"], row["status_name"], row["product_name"]) == ("INPROGRESS", "Wait Response", "Aligner B")
    assert row["product_price"] == 360000.0 and row["product_discount"] == "10" and row["product_currency"] == "원"
    assert json.loads(row["treatments"]) == [{"t": 1}]
    assert json.loads(row["extra"]) == {"newField": {"kept": True}, "product": {"sku": "x1"}}
    assert row["subject_birth_year"] == 1981
    assert "Order Patient" not in frames["orders"].write_csv()


def test_groups_flag_the_owner():
    frames, _ = run([
        {"_id": PID, "sk": "project:institute:owner", "group_id": "g1", "name": "KO-0005", "patientId": "NEW-0003"},
        {"_id": PID, "sk": "project:institute:1669263126159", "group_id": "g2", "name": "KO-0005", "patientId": "NEW-0003"},
    ])
    owners = dict(frames["groups"].select("group_id", "is_owner").iter_rows())
    assert owners == {"g1": True, "g2": False}


def test_files_one_row_each_with_size_and_expiry_but_never_the_link():
    files = [
        {"filetype": "mandible", "name": "mandible.obj", "size": 25129108,
         "downloadLink": "https://files.example/mandible?X-Amz-Signature=abc", "downloadExpired": 1669263126100},
        {"filetype": "face", "name": "face.obj", "size": 29108,
         "downloadLink": "https://files.example/face?sig=def", "downloadExpired": "1669263332159"},
    ]
    frames, rejected = run(files=files)
    assert not rejected
    assert frames["files"].sort("name")["size_bytes"].to_list() == [29108, 25129108]
    assert frames["files"]["download_expires_at"].null_count() == 0
    assert "X-Amz-Signature" not in frames["files"].write_csv() and "sig=def" not in frames["files"].write_csv()


def test_unknown_kind_lands_in_other_records_redacted():
    frames, _ = run([{"_id": PID, "sk": "scan:1669", "subject": {"name": "Sabine Scanlon"}, "downloadLink": "https://x/s"}])
    row = only_row(frames["other_records"])
    assert row["kind"] == "scan"
    assert "Sabine Scanlon" not in row["record"] and "https://x/s" not in row["record"]


def test_bad_records_are_rejected_with_every_reason_and_nothing_is_dropped():
    records = [
        {"_id": PID, "sk": "attachments:1", "size": -5, "created": "yesterday", "name": "a.png"},
        {"_id": PID, "sk": "attachments:2", "size": 10, "created": 1669272938428},
        {"_id": PID, "sk": "attachments:2", "size": 11, "created": 1669272938429},  # duplicate key
        {"_id": "someone-else", "sk": "memo:1"},
        {"sk": 17},
        "not an object",
    ]
    frames, rejected = run(records)
    assert frames["attachments"]["size_bytes"].to_list() == [10]
    by_key = {}
    for r in rejected:
        by_key.setdefault(r.record_key, []).append(r)
    reasons_1 = by_key[f"{PID}/attachments:1"][0].reasons
    assert any("created" in r for r in reasons_1)
    assert len(rejected) == 5  # 1 bad attachment, 1 duplicate, 1 foreign record, 2 unreadable
    assert any("duplicate key" in reason for r in by_key[f"{PID}/attachments:2"] for reason in r.reasons)


def test_per_resource_strategy_takes_the_project_record_from_the_list():
    listed = project_record()
    frames, _ = run([{"_id": PID, "sk": "memo:1", "content": "x", "created": 1}], listed=listed)
    assert only_row(frames["projects"])["project_id"] == PID
    # When the aggregate answer holds the project record, the list entry is not used twice.
    frames, _ = run([project_record(name="fresh")], listed=listed)
    assert only_row(frames["projects"])["name"] == "fresh"


@pytest.mark.parametrize("value, year", [("1978-12-28", 1978), ("1978", 1978), (None, None), ("", None)])
def test_birth_year(value, year):
    assert birth_year(value) == year


@pytest.mark.parametrize("value", ["yesterday", 19781228, "0001-01-01"])
def test_birth_year_refuses_what_is_not_a_date(value):
    with pytest.raises(ValueError):
        birth_year(value)
