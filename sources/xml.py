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

A document that is not well formed (a body cut short, a proxy's HTML page) is a
:class:`MalformedXmlError`, which is transient like truncated JSON (``decode_json``): the
request is retried. A document that tries DTD or entity tricks is an
:class:`UnsafeXmlError`, permanent: retrying a hostile answer is pointless. Neither error
quotes the document, so no content of the answer (or of a file it pointed at) reaches a log.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from sources.errors import ResponseTooLargeError, SourceError, TransientError

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
        line, column = getattr(exc, "position", (0, 0))
        raise MalformedXmlError(
            f"answer is not well-formed XML ({size:,} bytes; error at line {line}, column {column})"
        ) from None


def namespace(tag: str) -> str | None:
    """``{http://ns}name`` → ``http://ns``; an unqualified tag → None."""
    return tag[1:].split("}", 1)[0] if tag.startswith("{") else None


def local_name(tag: str) -> str:
    """``{http://ns}name`` → ``name``."""
    return tag.rsplit("}", 1)[-1]
