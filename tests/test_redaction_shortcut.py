"""The redaction's shortcut changes nothing: a record whose JSON shows no trace of its
project's patient identifiers, keys or links is spared the walks (``Redactor.for_raw``,
``RawScan``), and what is kept of it is exactly what the whole redaction keeps. Each
property compares the two on values built from the pieces the rules look for: names in
every case and joined, birth dates in every written form and as epoch numbers (ms and s,
before and after 1970), ids as text and numbers, links and queries, escapes, digits of
other scripts, floats JSON and Python write differently, keys naming a patient, a
credential or a recorded change."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pwh.transforms.rayteams
from pwh.transforms.coerce import as_text
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.transforms.rayteams import FetchedProject, transform_projects
from pwh.transforms.redact import RawScan, Redactor, patient_identifiers

KEY = Pseudonymizer(b"shortcut-test-key-0123456789")
PROPERTY = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = ["Kim Minji", "Patient Han 7d8bf6", "O'Brien-Smith", "김민지", "Zoë Ångström", "Li"]
BIRTHS = ["1978-12-28", "1955-04-26", "1970-01-01", "2004-02-29", "28/12/1978", "1969-12-31"]
IDS = ["PT-55821", "patient-864953", 42, 73310, "a/b c", "x\"y"]


def _epoch_ms(birth: str) -> int:
    day = datetime.strptime(birth, "%d/%m/%Y" if "/" in birth else "%Y-%m-%d").replace(tzinfo=timezone.utc)
    return int(day.timestamp() * 1000)


@st.composite
def patients(draw) -> dict[str, Any]:
    return {"name": draw(st.sampled_from(NAMES)), "birth": draw(st.sampled_from(BIRTHS)),
            "id": draw(st.sampled_from(IDS))}


def _pieces(patient: dict[str, Any]) -> st.SearchStrategy:
    name, birth, ms = patient["name"], patient["birth"], _epoch_ms(patient["birth"])
    y, m, d = (int(p) for p in (birth.split("-") if "-" in birth else reversed(birth.split("/"))))
    forms = [
        name, name.upper(), name.lower(), name.replace(" ", ""), name.split()[-1], " ".join(reversed(name.split())),
        f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{m}/{d}/{y % 100:02d}", f"{y}{m:02d}{d:02d}",
        f"{d} {['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'][m - 1]} {y}",
        f"{y}년 {m}월 {d}일", str(ms), str(ms // 1000), str(ms + 9 * 3_600_000), f"{y % 100:02d}.{m}.{d}",
        str(patient["id"]), str(patient["id"]).upper(),
    ]
    other = ["case-2211", "Order Received", "<p>ok</p>\n", "1641001206477", "2024-05-06", "12", "28", "4",
             "https://h.example/x?sig=abc", "?a=b", "//h/x", "\x01", "\t", "\"", "\\", "١٩٧٨", "ſep", "e-5",
             "Dec", "78", "patient", "subject", "-", "/", " ", ""]
    return st.sampled_from(forms + other)


@st.composite
def texts(draw, patient: dict[str, Any]) -> str:
    return "".join(draw(st.lists(_pieces(patient), max_size=4)))


KEYS = ["note", "before", "after", "to", "value", "subject", "patientId", "dob", "downloadUrl", "field",
        "name", "created", "data", "x"]


@st.composite
def values(draw, patient: dict[str, Any]) -> Any:
    ms = _epoch_ms(patient["birth"])
    leaves = st.one_of(
        texts(patient), st.none(), st.booleans(),
        st.sampled_from([ms, -ms, ms // 1000, float(ms), ms + 0.5, 1e-05, 1e16, 1.5e17, 0.5, 42, 42.0, 73310,
                         1641001206477, 7]),
        st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False),
    )
    keys = st.one_of(st.sampled_from(KEYS), texts(patient))
    return draw(st.recursive(leaves, lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)), max_leaves=10))


def _strings(value: Any, depth: int = 0) -> list[str]:
    """Every text of a value (keys too), and numbers as a column takes them."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [*_strings(k, depth), *_strings(v, depth + 1)]]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v, depth + 1)]
    if isinstance(value, str):
        return [value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [as_text(value, "x")]
    return []


@PROPERTY
@given(st.data())
def test_the_shortcut_keeps_exactly_what_the_whole_redaction_keeps(data):
    patient = data.draw(patients())
    value = data.draw(values(patient))
    subject = {"sk": "project", "patientId": patient["id"], "subject": {"name": patient["name"], "birth": patient["birth"]}}
    records = [subject, value]
    identifiers = patient_identifiers(records)
    whole = Redactor(KEY, identifiers)
    shortcut = whole.for_raw(RawScan(value))
    assert shortcut(value) == whole(value)
    for text in _strings(value):
        assert shortcut.text(text) == whole.text(text), text


class _Unread:
    """A scan that reads nothing: every record takes the whole redaction and every walk."""

    folded, changes, links = None, True, True

    def __init__(self, value: Any) -> None:
        pass


@PROPERTY
@given(st.data())
def test_a_transform_with_the_shortcut_equals_one_without(data):
    patient = data.draw(patients())
    records = [{"_id": "p1", "sk": "project", "name": data.draw(texts(patient)), "patientId": patient["id"],
                "subject": {"name": patient["name"], "birth": patient["birth"]}, "extra": data.draw(values(patient))}]
    for sk in ("memo:1", "his:2", "order:3", "attachments:4", "scan:5"):
        records.append({"_id": "p1", "sk": sk, "content": data.draw(texts(patient)), "data": data.draw(values(patient)),
                        "memo": data.draw(texts(patient)), "name": data.draw(texts(patient)),
                        "comments": [{"content": data.draw(texts(patient))}], "more": data.draw(values(patient))})
    files = [{"filetype": data.draw(texts(patient)), "name": data.draw(texts(patient)), "more": data.draw(values(patient))}]
    fetched = [FetchedProject("p1", None, records, files)]
    fast = transform_projects(fetched, account="a", pseudonyms=KEY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pwh.transforms.rayteams, "RawScan", _Unread)
        whole = transform_projects(fetched, account="a", pseudonyms=KEY)
    for name, buffer in fast.buffers.items():
        assert buffer.columns == whole.buffers[name].columns, name
        assert buffer.keys == whole.buffers[name].keys, name
        assert buffer.issues == whole.buffers[name].issues, name
    assert fast.rejected == whole.rejected


@pytest.mark.parametrize("value, text", [
    # A birth date in Arabic-Indic digits: the date regex reads them, a digit substring does not.
    ({"note": "born ٢٨/١٢/١٩٧٨"}, "born ٢٨/١٢/١٩٧٨"),
    # A float orjson writes 0.00001 and a column as "1e-05": the id is only in the latter.
    ({"value": 1e-05}, as_text(1e-05, "x")),
])
def test_what_json_does_not_show_as_a_column_reads_takes_the_whole_redaction(value, text):
    subject = {"sk": "project", "patientId": "1e-05", "subject": {"name": "Kim Minji", "birth": "1978-12-28"}}
    whole = Redactor(KEY, patient_identifiers([subject, value]))
    assert whole.text(text) != text  # the whole redaction scrubs it
    shortcut = whole.for_raw(RawScan(value))
    assert shortcut.text(text) == whole.text(text)
    assert shortcut(value) == whole(value)
