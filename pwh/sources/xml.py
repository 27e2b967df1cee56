"""Parsing XML answers safely: XML from a server is untrusted input.

Every XML answer of every source goes through :func:`parse_xml`, which refuses, before
anything is expanded or fetched:

- any document type declaration (``<!DOCTYPE …>``): no internal subset, so no entity
  declarations, so no billion laughs or quadratic blow-up; no external DTD either;
- entity declarations and external entity references (belt and braces: refused again by
  defusedxml even if a DTD were ever let through);
- documents larger than ``max_bytes``.

Built on defusedxml (``forbid_dtd``, ``forbid_entities``, ``forbid_external``) over the
standard library's expat: nothing is resolved from the network or the file system.

A character XML cannot carry (a control character, bytes not in the declared encoding, a
reference to either) becomes U+FFFD: one bad character does not lose the answer. A
document that is not well formed otherwise (a body cut short, a proxy's HTML page) is a
:class:`MalformedXmlError`, which is transient like truncated JSON (``decode_json``): the
request is retried. A document that tries DTD or entity tricks is an
:class:`UnsafeXmlError`, permanent: retrying a hostile answer is pointless. Neither error
quotes the document, so no content of the answer (or of a file it pointed at) reaches a log.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from pwh.sources.errors import ResponseTooLargeError, SourceError, TransientError

__all__ = [
    "DEFAULT_MAX_XML_BYTES",
    "Element",
    "MalformedXmlError",
    "UnsafeXmlError",
    "local_name",
    "namespace",
    "parse_xml",
]

Element = ET.Element
DEFAULT_MAX_XML_BYTES = 64 * 1024 * 1024


class UnsafeXmlError(SourceError):
    """The document declares a DTD or entities, or references external entities: refused
    unparsed. Permanent (not retried)."""


class MalformedXmlError(TransientError):
    """The document is not well-formed XML (cut short, an HTML error page, garbage):
    retried, like a truncated JSON answer."""


def parse_xml(body: bytes | str, *, max_bytes: int = DEFAULT_MAX_XML_BYTES) -> Element:
    """The root element of ``body``, parsed with DTDs, entity declarations and external
    entities forbidden."""
    size = len(body)
    if size > max_bytes:
        raise ResponseTooLargeError(f"XML document of {size:,} bytes exceeds the {max_bytes:,}-byte cap")
    try:
        return SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        # The class name says which trick (DTDForbidden, EntitiesForbidden,
        # ExternalReferenceForbidden); the exception's own text would quote system ids.
        raise UnsafeXmlError(
            f"XML answer refused: {type(exc).__name__} (DTDs and entities are not accepted)"
        ) from None
    except ET.ParseError as exc:
        repaired = _with_bad_characters_replaced(body)
        if repaired is not None:
            try:
                return SafeET.fromstring(repaired, forbid_dtd=True, forbid_entities=True, forbid_external=True)
            except DefusedXmlException as unsafe:
                raise UnsafeXmlError(
                    f"XML answer refused: {type(unsafe).__name__} (DTDs and entities are not accepted)"
                ) from None
            except ET.ParseError:
                pass  # not a matter of characters: cut short, or not XML
        line, column = getattr(exc, "position", (0, 0))
        raise MalformedXmlError(
            f"answer is not well-formed XML ({size:,} bytes; error at line {line}, column {column})"
        ) from None


# Characters XML 1.0 does not allow (control characters, lone surrogates, U+FFFE/FFFF),
# and character references to them.
_BAD_CHARACTER = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CHARACTER_REFERENCE = re.compile(r"&#(x[0-9A-Fa-f]{1,8}|[0-9]{1,10});")
_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]{0,200}?encoding\s*=\s*[\"']([A-Za-z0-9._-]{1,40})[\"']")


def _with_bad_characters_replaced(body: bytes | str) -> str | None:
    """``body`` with every character XML cannot carry (bytes not in the declared encoding,
    control characters, references to either) as U+FFFD, so that one bad character does
    not make a whole answer unreadable (and then retried forever); None for an unknown
    declared encoding. Runs only after the parser refused the answer."""
    if isinstance(body, bytes):
        declared = _DECLARED_ENCODING.match(body)
        try:
            text = body.decode(declared.group(1).decode() if declared else "utf-8", "replace")
        except LookupError:
            return None
    else:
        text = body
    return _CHARACTER_REFERENCE.sub(_checked_reference, _BAD_CHARACTER.sub("\ufffd", text))


def _checked_reference(match: re.Match[str]) -> str:
    number = match.group(1)
    code = int(number[1:], 16) if number[0] == "x" else int(number)
    allowed = code in (0x9, 0xA, 0xD) or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or 0x10000 <= code <= 0x10FFFF
    return match.group(0) if allowed else "\ufffd"


def namespace(tag: str) -> str | None:
    """``{http://ns}name`` → ``http://ns``; an unqualified tag → None."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def local_name(tag: str) -> str:
    """``{http://ns}name`` → ``name``."""
    return tag.rsplit("}", 1)[-1]
