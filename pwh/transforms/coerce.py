"""Tolerant-but-honest coercions: accept every documented type of a field, normalise it,
and raise :class:`CoercionError` for anything else. A transform keeps the row with the
field NULL and records a :class:`FieldIssue` (:class:`FieldIssues`); only a record that
cannot be placed or keyed is rejected.

Polars' own constructors are not strict (``"123" -> 123``, ``1.9 -> 1``, ``True -> 1``), so
values are coerced here, explicitly, before a frame is built.
"""

from __future__ import annotations

import math
import re
import reprlib
import time
from collections.abc import Callable, Mapping
from datetime import date as Date
from datetime import datetime, timezone
from typing import Any

import orjson

from pwh.schemas.rows import FieldIssue

_INT_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")
_NUMBER_TEXT = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
# Epoch milliseconds between 1970 and 2200 (ISO date-times of the other sources).
_MAX_EPOCH_MS = 7_258_118_400_000
INT64_MAX = 2**63 - 1
_ONE_MS = datetime.resolution * 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Time stamps are believed between 1990-01-01 and 10 years from now; outside, a value is
# garbage or a unit mistake, and loading it would put a row in 1970 or 5138 silently.
EARLIEST_MS = 631_152_000_000  # 1990-01-01T00:00:00Z
FUTURE_YEARS = 10
_YEAR_MS = 31_557_600_000  # 365.25 days
# A number below 1e11 is epoch seconds, above it milliseconds: inside the believed range
# seconds are at most ~2.1e9 and milliseconds at least ~6.3e11, so the two never meet.
SECONDS_BELOW = 100_000_000_000
_EIGHT_DIGITS = re.compile(r"^\d{8}$")  # YYYYMMDD: as a number it would be 1970, outside the range
# Text shown as it is in a value description: digits and the punctuation of numbers and
# dates only (no letters but the T and Z of ISO 8601), so never a name.
_SHOWABLE_TEXT = re.compile(r"^[0-9TZ:.,+\-/ ]{0,40}$")
_DIGIT = re.compile(r"\d")


class CoercionError(ValueError):
    """A value that is none of the types its field is documented with. ``reason`` says why
    without quoting the value (the message, for rejection reasons, quotes it bounded)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


def _refuse(field: str, reason: str, value: Any) -> CoercionError:
    return CoercionError(f"{field}: {reason}, got {describe(value)}", reason)


# Bounded repr for messages: a huge string need not be copied whole.
_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = 60, 60, 60


def describe(value: Any) -> str:
    """A short description of a value for a rejection reason. Objects and arrays are
    described by their size only: their content may hold patient data (reasons are
    stored unredacted), and repr() of one nested 1,000 levels deep (orjson parses up to
    1,024) raises RecursionError."""
    if isinstance(value, dict):
        return f"an object of {len(value)} key(s)"
    if isinstance(value, (list, tuple)):
        return f"an array of {len(value)} item(s)"
    text = _REPR.repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def describe_value(value: Any, private: bool = False) -> str:
    """What a value that could not be read looked like, for ``pipeline.field_issues``,
    failing closed: text is quoted only when it is made of digits and date punctuation
    (never a name), else described by its length; a patient field (``private``) is never
    quoted: at most its shape, digits shown as 9 (``99/99/9999``)."""
    if isinstance(value, str):
        if _SHOWABLE_TEXT.match(value):
            return f"text shaped {_DIGIT.sub('9', value)!r}" if private else repr(value)
        return f"text of {len(value)} character(s)"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and private:
        return "a number"
    return describe(value)


def as_text(value: Any, field: str) -> str | None:
    """Strings as they are; numbers (a field the docs type as Number but show as text,
    or the reverse) as their decimal text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise _refuse(field, "expected text", value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    raise _refuse(field, "expected text", value)


def as_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _refuse(field, "expected an integer", value)
    if isinstance(value, int):
        result = value
    elif isinstance(value, float) and value.is_integer():
        result = int(value)
    elif isinstance(value, str) and _INT_TEXT.match(value):
        # More than 19 significant digits never fits 64 bits; int() of thousands of
        # digits raises ValueError (Python's int_max_str_digits), not a rejection.
        text = value.strip()
        sign = "-" if text.startswith("-") else ""
        digits = text.lstrip("+-").lstrip("0") or "0"
        if len(digits) > 19:
            raise _refuse(field, "integer out of the 64-bit range", value)
        result = int(sign + digits)
    else:
        raise _refuse(field, "expected an integer", value)
    if abs(result) > INT64_MAX:
        raise _refuse(field, "integer out of the 64-bit range", value)
    return result


def as_float(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _refuse(field, "expected a number", value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str) and _NUMBER_TEXT.match(value):
        result = float(value)
    else:
        raise _refuse(field, "expected a number", value)
    if not math.isfinite(result):
        raise _refuse(field, "number is not finite", value)
    return result


def as_bool(value: Any, field: str) -> bool | None:
    """Booleans, or the strings "true"/"false" (a field documented as String, shown as bool)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _refuse(field, "expected a boolean", value)


def latest_ms() -> int:
    """The latest time stamp believed: now plus FUTURE_YEARS."""
    return int(time.time() * 1000) + FUTURE_YEARS * _YEAR_MS


_latest_seen = latest_ms()


def believed_ms(ms: int) -> bool:
    """Whether ``ms`` lies in 1990 .. now + FUTURE_YEARS. The bound only grows, so the one
    last read serves until a value exceeds it (the clock is read again only then)."""
    global _latest_seen
    if ms < EARLIEST_MS:
        return False
    if ms > _latest_seen:
        _latest_seen = latest_ms()
    return ms <= _latest_seen


def as_timestamp_ms(value: Any, field: str) -> int | None:
    """A time stamp in any of its written forms, as epoch milliseconds: epoch milliseconds
    or seconds (told apart by magnitude, see SECONDS_BELOW) as a number or numeric text;
    an ISO 8601 date or date-time, with or without an offset (without one it is UTC), or
    YYYYMMDD. Outside 1990 .. now + FUTURE_YEARS it is refused. Empty text is no value."""
    if type(value) is int and believed_ms(value):
        return value  # the documented form, most values: no further checks on the hot path
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _EIGHT_DIGITS.match(text) or not _NUMBER_TEXT.match(text):
            ms = _iso_ms(text)
            if ms is None:
                raise _refuse(field, "expected epoch milliseconds or seconds, or an ISO 8601 date or date-time", value)
        else:
            ms = _epoch_number_ms(text)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        ms = _epoch_number_ms(value)
    else:
        raise _refuse(field, "expected epoch milliseconds or seconds, or an ISO 8601 date or date-time", value)
    if ms is None or not believed_ms(ms):
        raise _refuse(field, f"time stamp not between 1990 and {FUTURE_YEARS} years from now", value)
    return ms


def _epoch_number_ms(value: float | str) -> int | None:
    """Epoch seconds or milliseconds (by magnitude) as milliseconds; None when beyond any
    believable time (too many digits, not finite)."""
    if isinstance(value, str):
        digits = value.strip().lstrip("+-").split(".")[0].lstrip("0")
        if len(digits) > 19 or len(value) > 64 or "e" in value.lower():
            # int()/float() of thousands of digits (leading zeros too) is slow or raises;
            # an exponent is no written form of a time stamp.
            return None
        value = int(value) if _INT_TEXT.match(value) else float(value)
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) >= 2**62:
            return None
        return round(value * 1000) if abs(value) < SECONDS_BELOW else round(value)
    return value * 1000 if abs(value) < SECONDS_BELOW else value


def _iso_ms(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return (parsed - _EPOCH) // _ONE_MS


def as_iso_datetime_ms(value: Any, field: str) -> int | None:
    """An ISO 8601 date-time with an offset or ``Z`` (``2014-05-21T08:51:20.396Z``,
    ``2015-07-06T13:28:14+00:00``) as epoch milliseconds; a time without an offset is
    ambiguous and refused."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            parsed = None
        if parsed is not None:
            if parsed.tzinfo is None:
                raise _refuse(field, "date-time has no UTC offset", value)
            ms = (parsed - _EPOCH) // _ONE_MS
            if 0 <= ms <= _MAX_EPOCH_MS:
                return ms
            raise _refuse(field, "not between 1970 and 2200", value)
    raise _refuse(field, "expected an ISO 8601 date-time", value)


def as_date(value: Any, field: str) -> Date | None:
    """An ISO date, YYYY-MM-DD."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return Date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _refuse(field, "expected a date YYYY-MM-DD", value)


def as_object(value: Any, field: str) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise _refuse(field, "expected an object", value)


def as_json(value: Any) -> str | None:
    """JSON text for a JSON column (None stays NULL)."""
    if value is None:
        return None
    return orjson.dumps(value).decode()


def as_json_text(value: Any, field: str) -> str | None:
    """:func:`as_json` of a field's value, refusing one orjson cannot write: nested deeper
    than its 254 levels (it reads 1,024) or an integer beyond 64 bits."""
    try:
        return as_json(value)
    except TypeError:  # orjson.JSONEncodeError is one
        raise _refuse(field, "cannot be stored as JSON (nested too deep or a number too large)", value) from None


class FieldIssues(list[FieldIssue]):
    """Collects the fields of a record that could not be read; the record still loads."""

    def take(self, coerce: Callable[[Any, str], Any], record: Mapping[str, Any], field: str,
             *, path: str | None = None, private: bool = False) -> Any:
        """``record[field]`` coerced, or None with an issue (named ``path`` when given,
        for a field of a nested object)."""
        value = record.get(field)
        try:
            return coerce(value, field)
        except CoercionError as exc:
            self.add(path or field, exc.reason, value, private=private)
            return None

    def nested(self, record: Mapping[str, Any], field: str) -> Mapping[str, Any]:
        value = record.get(field)
        if value is None or isinstance(value, dict):
            return value or {}
        self.add(field, "expected an object", value)
        return {}

    def add(self, field: str, reason: str, value: Any, *, private: bool = False) -> None:
        self.append(FieldIssue(field, reason, describe_value(value, private)))
