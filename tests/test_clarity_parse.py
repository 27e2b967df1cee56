"""Clarity XML → dicts → typed rows, over documents written here in the shapes of the real
captures (namespaces, unqualified list children, optional elements present and absent)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from pwh.flows.clarity_sync import ListingMark, watermark
from pwh.schemas.validate import split_valid
from pwh.sources.clarity.client import (
    ClarityApiError,
    ClarityNotFoundError,
    filter_params,
    format_timestamp,
    next_page_request,
    parse_project,
    parse_project_page,
    parse_timestamp,
    read_answer,
)
from pwh.sources.errors import ApiError, NotFoundError, TransientError
from pwh.sources.http import Answer
from pwh.sources.xml import MalformedXmlError, UnsafeXmlError, parse_xml
from pwh.transforms.clarity import FetchedProject, transform_projects, typed_udf_value
from pwh.warehouse.load import UnitState

NS = (
    'xmlns:udf="http://genologics.com/ri/userdefined" xmlns:ri="http://genologics.com/ri" '
    'xmlns:file="http://genologics.com/ri/file" xmlns:prj="http://genologics.com/ri/project"'
)

FULL = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<prj:project {NS} uri="https://lims.test/api/v2/projects/TST1" limsid="TST1">
    <name>Full &amp; complete</name>
    <open-date>2021-03-04</open-date>
    <close-date>2021-09-30</close-date>
    <invoice-date>2021-10-15</invoice-date>
    <researcher uri="https://lims.test/api/v2/researchers/42"/>
    <udf:type name="Sequencing Plan">
        <udf:field type="Numeric" name="Lanes" unit="lanes">8</udf:field>
        <field type="Boolean" name="Paired End">true</field>
    </udf:type>
    <udf:field type="String" name="Project Manager">Ada Byron</udf:field>
    <udf:field type="Text" name="Notes">line one
line two &lt;b&gt;</udf:field>
    <udf:field type="Boolean" name="Development Project">false</udf:field>
    <udf:field type="Numeric" name="Samples Quota" unit="samples">20.5</udf:field>
    <udf:field type="Date" name="Due Date">2021-12-01</udf:field>
    <udf:field type="URI" name="Data Link">https://data.test/x?a=1&amp;b=2</udf:field>
    <ri:externalid id="urn:crm:TST1" uri="https://crm.test/cases/1"/>
    <ri:externalid id="urn:erp:77" uri="https://erp.test/orders/77"/>
    <file:file limsid="TST1-40-1" uri="https://lims.test/api/v2/files/TST1-40-1"/>
    <file:file uri="https://lims.test/api/v2/files/TST1-40-2"/>
    <priority>High</priority>
</prj:project>
"""

MINIMAL = f"""<prj:project {NS} limsid="TST2" uri="https://lims.test/api/v2/projects/TST2">
<name>Bare</name>
<researcher uri="https://lims.test/api/v2/researchers/7"/>
</prj:project>"""


def page(links: list[str], next_uri: str | None = None, prev_uri: str | None = None) -> bytes:
    body = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
            '<prj:projects xmlns:prj="http://genologics.com/ri/project">']
    for limsid in links:
        body.append(f'  <project limsid="{limsid}" uri="https://lims.test/api/v2/projects/{limsid}">'
                    f"<name>N {limsid}</name></project>")
    if prev_uri:
        body.append(f'  <previous-page uri="{prev_uri}"/>')
    if next_uri:
        body.append(f'  <next-page uri="{next_uri}"/>')
    body.append("</prj:projects>")
    return "\n".join(body).encode()


def answer(body: bytes, status: int = 200, content_type: str = "application/xml;charset=UTF-8") -> Answer:
    return Answer(status, {"Content-Type": content_type}, body)


# --------------------------------------------------------------------------- parsing
def test_full_project_every_optional_element_present():
    p = parse_project(parse_xml(FULL.encode()))
    assert p["limsid"] == "TST1" and p["uri"].endswith("/projects/TST1")
    assert p["name"] == "Full & complete"
    assert (p["open_date"], p["close_date"], p["invoice_date"]) == ("2021-03-04", "2021-09-30", "2021-10-15")
    assert p["researcher_uri"] == "https://lims.test/api/v2/researchers/42"
    assert p["priority"] == "High"
    # UDT fields: qualified (Illumina's example) and unqualified (the XSD) are both read.
    assert p["udt"]["name"] == "Sequencing Plan"
    assert [(f["name"], f["type"], f["unit"], f["value"]) for f in p["udt"]["fields"]] == [
        ("Lanes", "Numeric", "lanes", "8"), ("Paired End", "Boolean", None, "true")]
    assert [u["type"] for u in p["udfs"]] == ["String", "Text", "Boolean", "Numeric", "Date", "URI"]
    assert p["udfs"][1]["value"] == "line one\nline two <b>"
    assert p["udfs"][5]["value"] == "https://data.test/x?a=1&b=2"
    assert p["external_ids"] == [{"id": "urn:crm:TST1", "uri": "https://crm.test/cases/1"},
                                 {"id": "urn:erp:77", "uri": "https://erp.test/orders/77"}]
    assert [f["limsid"] for f in p["files"]] == ["TST1-40-1", None]
    assert p["extra"] == []


def test_minimal_project_every_optional_element_absent():
    p = parse_project(parse_xml(MINIMAL.encode()))
    assert p["name"] == "Bare"
    for key in ("open_date", "close_date", "invoice_date", "priority", "udt"):
        assert p[key] is None, key
    assert p["udfs"] == p["files"] == p["external_ids"] == p["extra"] == []


def test_unknown_child_elements_are_kept_not_dropped():
    body = MINIMAL.replace("</prj:project>", '<sample-count kind="x">3</sample-count></prj:project>')
    p = parse_project(parse_xml(body.encode()))
    assert p["extra"] == [{"tag": "sample-count", "attributes": {"kind": "x"}, "text": "3"}]


def test_list_pages_with_and_without_next_page():
    first = page(["A1", "A2"], next_uri="https://internal:8080/api/v2/projects?start-index=2&amp;name=X&amp;name=Y")
    links, nxt = parse_project_page(parse_xml(first))
    assert [link["limsid"] for link in links] == ["A1", "A2"] and links[0]["name"] == "N A1"
    # The link's query, duplicates and order kept; its host is not used.
    assert nxt == (("start-index", "2"), ("name", "X"), ("name", "Y"))
    last = page(["A3"], prev_uri="https://internal:8080/api/v2/projects?start-index=0")
    links, nxt = parse_project_page(parse_xml(last))
    assert [link["limsid"] for link in links] == ["A3"] and nxt is None
    empty = page([])
    assert parse_project_page(parse_xml(empty)) == ([], None)


def test_next_page_elsewhere_than_the_project_list_is_refused():
    with pytest.raises(ClarityApiError):
        next_page_request("https://lims.test/api/v2/samples?start-index=500")
    with pytest.raises(ClarityApiError):
        next_page_request(None)


def test_wrong_root_element_is_an_api_error():
    with pytest.raises(ClarityApiError):
        parse_project(parse_xml(page(["A1"])))
    with pytest.raises(ClarityApiError):
        parse_project_page(parse_xml(MINIMAL.encode()))


# --------------------------------------------------------------------------- answers and errors
EXCEPTION = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
             b'<exc:exception xmlns:exc="http://genologics.com/ri/exception" category="BAD" code="400">'
             b"<message>Invalid   open-date:\n 2021-13-45</message><suggested-actions>Fix it</suggested-actions>"
             b"</exc:exception>")


def test_exception_documents_become_typed_errors_with_their_code_not_their_message():
    with pytest.raises(ClarityApiError) as info:
        read_answer(answer(EXCEPTION, 400))
    assert str(info.value) == "HTTP 400 Clarity exception 400 (BAD)"  # the server's <message> is not kept
    assert info.value.status == 400 and info.value.code == "400" and info.value.category == "BAD"
    # An exception document with status 200 is an error too, not data.
    with pytest.raises(ApiError, match="HTTP 200 Clarity exception 400"):
        read_answer(answer(EXCEPTION, 200))
    not_found = EXCEPTION.replace(b'code="400"', b'code="404"').replace(b"Invalid", b"No such project")
    with pytest.raises(ClarityNotFoundError) as info:
        read_answer(answer(not_found, 404))
    assert "404" in str(info.value) and "No such project" not in str(info.value)
    assert issubclass(ClarityNotFoundError, NotFoundError)


def test_error_status_without_an_exception_document():
    with pytest.raises(ClarityNotFoundError):
        read_answer(answer(b"<html>gone</html>", 404, "text/html"))
    with pytest.raises(ClarityApiError) as info:
        read_answer(answer(b"nope", 403, "text/plain"))
    assert info.value.status == 403


def test_html_page_with_200_and_cut_xml_are_transient_but_a_dtd_is_not():
    with pytest.raises(TransientError):
        read_answer(answer(b"<!DOCTYPE html><html></html>", 200, "text/html"))
    with pytest.raises(MalformedXmlError):
        read_answer(answer(FULL.encode()[: len(FULL) // 2]))
    hostile = b'<!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>' + MINIMAL.encode()
    with pytest.raises(UnsafeXmlError):
        read_answer(answer(hostile))


# --------------------------------------------------------------------------- typing
@pytest.mark.parametrize(
    ("declared", "text", "number", "boolean", "day", "error"),
    [
        ("Numeric", "20", 20.0, None, None, False),
        ("Numeric", " 3.5e1 ", 35.0, None, None, False),
        ("Numeric", "n/a", None, None, None, True),
        ("Numeric", "NaN", None, None, None, True),
        ("Boolean", "true", None, True, None, False),
        ("Boolean", "FALSE", None, False, None, False),
        ("Boolean", "yes", None, None, None, True),
        ("Date", "2021-12-01", None, None, date(2021, 12, 1), False),
        ("Date", "31/12/2020", None, None, None, True),
        ("Date", "2021-02-30", None, None, None, True),
        ("String", "anything 12", None, None, None, False),
        ("Text", "multi\nline", None, None, None, False),
        ("URI", "https://x.test/a", None, None, None, False),
        ("Numeric", None, None, None, None, False),
        ("Color", "red", None, None, None, True),
        (None, "x", None, None, None, True),
    ],
)
def test_typed_udf_values(declared, text, number, boolean, day, error):
    typed = typed_udf_value(declared, text)
    assert (typed.number, typed.boolean, typed.day) == (number, boolean, day)
    assert (typed.error is not None) == error


def _transform(*bodies: str):
    fetched = []
    for body in bodies:
        p = parse_project(parse_xml(body.encode()))
        fetched.append(FetchedProject(p["limsid"], None, p))
    return transform_projects(fetched, account="lab")


def test_transform_full_and_minimal_projects():
    batch, parse_errors = _transform(FULL, MINIMAL)
    assert parse_errors == 0 and batch.rejected == []
    projects, _ = split_valid(batch.buffers["projects"], lambda x: x)
    rows = {r["project_limsid"]: r for r in projects.to_dicts()}
    full = rows["TST1"]
    assert full["open_date"] == date(2021, 3, 4) and full["invoice_date"] == date(2021, 10, 15)
    assert full["researcher_id"] == "42" and full["udt_name"] == "Sequencing Plan" and full["priority"] == "High"
    assert full["udf_count"] == 8 and full["file_count"] == 2 and full["extra"] is None
    bare = rows["TST2"]
    assert bare["open_date"] is None and bare["udt_name"] is None and bare["udf_count"] == 0
    udfs, bad = split_valid(batch.buffers["project_udfs"], lambda x: x)
    assert bad == []
    by_name = {r["name"]: r for r in udfs.to_dicts()}
    assert by_name["Lanes"]["scope"] == "udt" and by_name["Lanes"]["udt_name"] == "Sequencing Plan"
    assert by_name["Lanes"]["value_number"] == 8.0 and by_name["Lanes"]["unit"] == "lanes"
    assert by_name["Samples Quota"]["scope"] == "project" and by_name["Samples Quota"]["udt_name"] is None
    assert by_name["Samples Quota"]["value_number"] == 20.5
    assert by_name["Development Project"]["value_bool"] is False
    assert by_name["Due Date"]["value_date"] == date(2021, 12, 1)
    assert by_name["Data Link"]["value_text"] == "https://data.test/x?a=1&b=2"
    assert sorted(r["position"] for r in udfs.to_dicts()) == list(range(8))
    files, _ = split_valid(batch.buffers["project_files"], lambda x: x)
    assert sorted(files["file_limsid"].to_list()) == ["TST1-40-1", "TST1-40-2"]  # the 2nd from its uri
    ids, _ = split_valid(batch.buffers["project_external_ids"], lambda x: x)
    assert sorted(ids["external_id"].to_list()) == ["urn:crm:TST1", "urn:erp:77"]


def test_unparseable_udf_keeps_its_text_and_is_counted_not_rejected():
    body = FULL.replace(">20.5<", ">twenty<").replace(">2021-12-01<", "><")
    batch, parse_errors = _transform(body)
    assert parse_errors == 1 and batch.rejected == []
    udfs, bad = split_valid(batch.buffers["project_udfs"], lambda x: x)
    by_name = {r["name"]: r for r in udfs.to_dicts()}
    quota = by_name["Samples Quota"]
    assert quota["value_text"] == "twenty" and quota["value_number"] is None and "twenty" in quota["parse_error"]
    due = by_name["Due Date"]  # an empty element: no text, nothing to parse, no error
    assert due["value_text"] is None and due["value_date"] is None and due["parse_error"] is None


def test_project_with_a_bad_date_loads_it_null_with_a_field_issue():
    # Issue 15, item 14: the project used to be quarantined whole for one unreadable date.
    batch, _ = _transform(FULL.replace("2021-09-30", "30.09.2021"))
    assert batch.rejected == []
    projects, bad = split_valid(batch.buffers["projects"], lambda x: x)
    assert bad == [] and projects["close_date"].to_list() == [None]
    assert projects["open_date"].to_list() == [date(2021, 3, 4)]
    [located] = batch.buffers["projects"].row_issues()
    assert (located.record_key, located.issue.field, located.issue.reason, located.issue.value) == (
        "TST1", "close-date", "expected a date YYYY-MM-DD", "'30.09.2021'")
    assert len(batch.buffers["project_udfs"]) == 8


def test_udf_without_a_name_is_rejected_and_duplicates_keep_the_first():
    body = MINIMAL.replace(
        "</prj:project>",
        '<udf:field type="String">orphan</udf:field>'
        '<udf:field type="String" name="Dup">first</udf:field>'
        '<udf:field type="String" name="Dup">second</udf:field></prj:project>',
    )
    batch, _ = _transform(body)
    assert [r.record_key for r in batch.rejected] == ["TST2/project/#0"]
    udfs, bad = split_valid(batch.buffers["project_udfs"], lambda x: x)
    assert udfs["value_text"].to_list() == ["first"]
    assert len(bad) == 1 and "duplicate key" in bad[0].reasons[0]


# --------------------------------------------------------------------------- filters, watermark
def test_filter_params_pass_through_and_validate():
    assert filter_params(["A", "B"], "2020-01-31", ["udf.Project Type=RNA=Seq", "udt.name=Plan"]) == [
        ("name", "A"), ("name", "B"), ("open-date", "2020-01-31"),
        ("udf.Project Type", "RNA=Seq"), ("udt.name", "Plan")]
    for bad in (dict(open_date="2020-1-31"), dict(open_date="2020-02-30"), dict(udf=["Project Type=x"]),
                dict(udf=["udf.X"])):
        with pytest.raises(ValueError):
            filter_params(**bad)


def test_watermark_is_latest_listing_minus_overlap():
    t1 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    t2 = t1 + timedelta(hours=2)
    first = ListingMark(t1, "aaaa0001", 2, None).cursor()
    second = ListingMark(t2, "bbbb0002", 1, t1 - timedelta(minutes=5)).cursor()
    known = {
        "A": UnitState(first, False),
        "B": UnitState(second, False),
        "C": UnitState("not a time", False),
        "D": UnitState(None, True),
    }
    assert watermark(known, timedelta(minutes=5)) == t2 - timedelta(minutes=5)
    assert watermark({}, timedelta(minutes=5)) is None
    assert watermark({"C": UnitState("garbage", False)}, timedelta(0)) is None
    assert second == "2026-01-01T14:00:00Z~bbbb0002~1~2026-01-01T11:55:00Z"
    assert ListingMark.parse(second) == ListingMark(t2, "bbbb0002", 1, t1 - timedelta(minutes=5))
    assert ListingMark.parse("2026-01-01T12:00:00Z") == ListingMark(t1, "", None, None)
    assert parse_timestamp(format_timestamp(t1)) == t1 and format_timestamp(t1) == "2026-01-01T12:00:00Z"


def test_watermark_reopens_the_window_of_a_listing_not_loaded_whole():
    t1 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    t2 = t1 + timedelta(hours=2)
    window = t1 - timedelta(minutes=5)
    done = ListingMark(t1, "aaaa0001", 1, None).cursor()
    # The second listing named three projects; only two were loaded (one failed).
    partial = ListingMark(t2, "bbbb0002", 3, window).cursor()
    known = {"A": UnitState(done, False), "B": UnitState(partial, False), "C": UnitState(partial, False)}
    assert watermark(known, timedelta(minutes=5)) == window
    # A complete list that was not loaded whole is read whole again.
    crashed = ListingMark(t2, "cccc0003", 5, None).cursor()
    assert watermark({"A": UnitState(done, False), "B": UnitState(crashed, False)}, timedelta(0)) is None
