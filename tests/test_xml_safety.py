"""The hardened XML parser refuses DTD and entity tricks without reading a file or
expanding anything, and tells malformed (transient) answers from hostile (permanent) ones."""

from __future__ import annotations

import sys
import time
import tracemalloc

import pytest

from pwh.sources.errors import ResponseTooLargeError, SourceError, TransientError
from pwh.sources.xml import (
    MalformedXmlError,
    UnsafeXmlError,
    local_name,
    namespace,
    parse_xml,
)

SECRET = "TOP-SECRET-5c1d9e-do-not-leak"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<prj:project xmlns:prj="http://genologics.com/ri/project" limsid="X1"><name>&lol9;</name></prj:project>
"""

# Files opened while a test parses: an audit hook sees every open() of the process.
_opened: list[str] = []
_watching = False


def _audit(event: str, args: tuple) -> None:
    if _watching and event == "open" and args and isinstance(args[0], (str, bytes)):
        _opened.append(str(args[0]))


sys.addaudithook(_audit)


def _parse_watching_files(body: bytes) -> tuple[Exception | None, list[str]]:
    global _watching
    _opened.clear()
    _watching = True
    try:
        parse_xml(body)
        error = None
    except Exception as exc:  # noqa: BLE001 - the test inspects it
        error = exc
    finally:
        _watching = False
    return error, list(_opened)


def test_billion_laughs_is_refused_quickly_without_expanding(tmp_path):
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(UnsafeXmlError) as info:
            parse_xml(BILLION_LAUGHS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 1.0
    assert peak < 2 * 1024 * 1024, f"parsing took {peak:,} bytes at peak"
    assert isinstance(info.value, SourceError) and not isinstance(info.value, TransientError)
    assert "lol" not in str(info.value)


@pytest.mark.parametrize(
    "template",
    [
        # Classic XXE: an external general entity naming a local file.
        '<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY xxe SYSTEM "file://{path}">]>\n'
        '<prj:project xmlns:prj="http://genologics.com/ri/project"><name>&xxe;</name></prj:project>',
        # Parameter entity pulling the file into the DTD.
        '<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY % x SYSTEM "file://{path}"> %x;]>\n<p/>',
        # External DTD.
        '<?xml version="1.0"?>\n<!DOCTYPE p SYSTEM "file://{path}">\n<p>&secret;</p>',
    ],
    ids=["external-entity", "parameter-entity", "external-dtd"],
)
def test_xxe_is_refused_without_reading_the_file(tmp_path, template):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    body = template.format(path=secret_file).encode()
    error, opened = _parse_watching_files(body)
    assert isinstance(error, UnsafeXmlError), error
    assert not any("secret.txt" in path for path in opened), f"the parser opened {opened}"
    assert SECRET not in str(error) and str(secret_file) not in str(error)
    assert error.__cause__ is None and SECRET not in repr(error.__context__)


def test_the_file_watch_sees_an_open(tmp_path):
    # Control for the test above: the audit hook does notice a file being read.
    global _watching
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(SECRET)
    _opened.clear()
    _watching = True
    try:
        secret_file.read_text()
    finally:
        _watching = False
    assert any("secret.txt" in path for path in _opened)


def test_internal_entity_without_external_reference_is_refused_too():
    body = b'<!DOCTYPE p [<!ENTITY a "expanded">]><p>&a;</p>'
    with pytest.raises(UnsafeXmlError):
        parse_xml(body)


@pytest.mark.parametrize(
    "body",
    [
        b'<prj:projects xmlns:prj="http://genologics.com/ri/project"><project limsid="A1"',  # cut short
        b"<html><body><h1>502 Bad Gateway</h1><hr></body></html>",  # HTML, not XML
        b"",
        b"<p>&undeclared;</p>",  # an entity with no DTD: not well formed
    ],
    ids=["truncated", "html", "empty", "undeclared-entity"],
)
def test_malformed_xml_is_transient(body):
    with pytest.raises(MalformedXmlError) as info:
        parse_xml(body)
    assert isinstance(info.value, TransientError)


def test_size_cap():
    with pytest.raises(ResponseTooLargeError):
        parse_xml(b"<a>" + b"x" * 1000 + b"</a>", max_bytes=100)


def test_well_formed_answer_with_declaration_and_namespaces_parses():
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<prj:project xmlns:udf="http://genologics.com/ri/userdefined" '
        'xmlns:prj="http://genologics.com/ri/project" limsid="ADM1">'
        "<name>Caf\u00e9 &amp; &lt;lab&gt;</name>"
        '<udf:field type="Numeric" name="Amount">3.4</udf:field></prj:project>'
    ).encode()
    root = parse_xml(body)
    assert local_name(root.tag) == "project" and namespace(root.tag) == "http://genologics.com/ri/project"
    assert root.find("name").text == "Caf\u00e9 & <lab>"
    field = root.find("{http://genologics.com/ri/userdefined}field")
    assert field.get("type") == "Numeric" and field.text == "3.4"
    assert namespace("name") is None and local_name("name") == "name"
