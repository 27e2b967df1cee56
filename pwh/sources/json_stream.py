"""A large JSON object whose bulk is one array member, read element by element.

A project list is one answer: ``{"status": "success", "data": [...]}`` with an entry per
project (~0.5 KB each). Parsed whole, 200,000 entries are ~400 MB of Python objects at
once, on top of the ~100 MB body. Here the object is walked by the standard library's C
scanner (``JSONDecoder.raw_decode``, which says where each value ends): every member but
the array is parsed as usual, the array's elements are only delimited, and each element
is parsed when it is taken (:class:`StreamedArray`), so the caller can turn it into what it
keeps and let it go. Each value is parsed by :func:`pwh.sources.http.loads_json`, as a whole
answer is: the same values, the same leniency.

Anything but that plain shape (not an object, the array member repeated, a syntax error,
nesting deeper than the scanner goes) returns None: the caller parses the body whole, so
odd answers keep exactly the behaviour (and errors) they had."""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

# Only where a value ends matters here (it is parsed again by the caller's parser):
# numbers and constants stay text, so none is refused or converted.
_DELIMITER = json.JSONDecoder(parse_float=str, parse_int=str, parse_constant=str)
_SPACE = re.compile(r"[ \t\n\r]*")


@dataclass(frozen=True)
class StreamedArray:
    """The elements of a JSON array, parsed one at a time as they are iterated."""

    text: str
    spans: array[int]  # start, end, start, end, … of each element in ``text``
    parse: Callable[[bytes], Any]

    def __len__(self) -> int:
        return len(self.spans) // 2

    def __iter__(self) -> Iterator[Any]:
        spans = self.spans
        for i in range(0, len(spans), 2):
            yield self.parse(self.text[spans[i]:spans[i + 1]].encode("utf-8", "surrogatepass"))


def stream_member(body: bytes, member: str, parse: Callable[[bytes], Any]) -> dict[str, Any] | None:
    """The JSON object in ``body`` with its ``member`` (an array) as a :class:`StreamedArray`
    and every other member parsed by ``parse``; None when the body is not that plain
    shape (see the module's docstring)."""
    text = body.decode("utf-8", "replace")  # as loads_json reads a body that is not UTF-8
    try:
        return _walk(text, member, parse)
    except (ValueError, IndexError, RecursionError):
        return None


def _walk(text: str, member: str, parse: Callable[[bytes], Any]) -> dict[str, Any] | None:
    members: dict[str, Any] = {}
    i = _skip(text, 0)
    if text[i] != "{":
        return None
    i = _skip(text, i + 1)
    if text[i] == "}":
        return None
    while True:
        if text[i] != '"':
            return None
        key, i = _DELIMITER.raw_decode(text, i)
        i = _skip(text, i)
        if text[i] != ":":
            return None
        i = _skip(text, i + 1)
        if key in members:
            return None  # a repeated member: the whole parse decides which copy counts
        if key == member and text[i] == "[":
            spans, i = _elements(text, i)
            members[key] = StreamedArray(text, spans, parse)
        else:
            _, end = _DELIMITER.raw_decode(text, i)
            members[key] = parse(text[i:end].encode("utf-8", "surrogatepass"))
            i = end
        i = _skip(text, i)
        if text[i] == "}":
            break
        if text[i] != ",":
            return None
        i = _skip(text, i + 1)
    if _skip(text, i + 1) != len(text) or not isinstance(members.get(member), StreamedArray):
        return None
    return members


def _elements(text: str, i: int) -> tuple[array[int], int]:
    """The spans of the array's elements starting at ``text[i] == "["``, and the index past it."""
    spans = array("q")
    i = _skip(text, i + 1)
    if text[i] == "]":
        return spans, i + 1
    while True:
        _, end = _DELIMITER.raw_decode(text, i)
        spans.append(i)
        spans.append(end)
        i = _skip(text, end)
        if text[i] == "]":
            return spans, i + 1
        if text[i] != ",":
            raise ValueError(f"expected ',' or ']' at {i}")
        i = _skip(text, i + 1)


def _skip(text: str, i: int) -> int:
    match = _SPACE.match(text, i)
    return i if match is None else match.end()
