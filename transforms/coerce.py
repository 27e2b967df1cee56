"""Tolerant-but-honest coercions: accept every documented type of a field, normalise it,
and raise :class:`CoercionError` (which becomes a rejection reason) for anything else.

Polars' own constructors are not strict (``"123" -> 123``, ``1.9 -> 1``, ``True -> 1``), so
values are coerced here, explicitly, before a frame is built.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable, Mapping
from datetime import date as Date
from datetime import datetime, timezone
from typing import Any

import orjson

_INT_TEXT = re.compile(r"^\s*[+-]?\d+\s*$")
_NUMBER_TEXT = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$")
# Epoch milliseconds between 1970 and 2200: a seconds value or garbage falls outside.
_MAX_EPOCH_MS = 7_258_118_400_000
INT64_MAX = 2**63 - 1
_ONE_MS = datetime.resolution * 1000


class CoercionError(ValueError):
    """A value that is none of the types its field is documented with."""


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


def as_text(value: Any, field: str) -> str | None:
    """Strings as they are; numbers (a field the docs type as Number but show as text,
    or the reverse) as their decimal text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise CoercionError(f"{field}: expected text, got boolean {value}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    raise CoercionError(f"{field}: expected text, got {describe(value)}")


def as_int(value: Any, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise CoercionError(f"{field}: expected an integer, got boolean {value}")
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
            raise CoercionError(f"{field}: integer {describe(value)} out of range")
        result = int(sign + digits)
    else:
        raise CoercionError(f"{field}: expected an integer, got {describe(value)}")
    if abs(result) > INT64_MAX:
        raise CoercionError(f"{field}: integer {describe(value)} out of range")
    return result


def as_float(value: Any, field: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise CoercionError(f"{field}: expected a number, got boolean {value}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        result = float(value)
    elif isinstance(value, str) and _NUMBER_TEXT.match(value):
        result = float(value)
    else:
        raise CoercionError(f"{field}: expected a number, got {describe(value)}")
    if not math.isfinite(result):
        raise CoercionError(f"{field}: number {describe(value)} is not finite")
    return result


def as_bool(value: Any, field: str) -> bool | None:
    """Booleans, or the strings "true"/"false" (a field documented as String, shown as bool)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise CoercionError(f"{field}: expected a boolean, got {describe(value)}")


def as_epoch_ms(value: Any, field: str) -> int | None:
    """Epoch milliseconds given as a number or a numeric string."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip() == "":
        return None
    try:
        ms = as_int(value, field)
    except CoercionError:
        raise CoercionError(f"{field}: expected epoch milliseconds, got {describe(value)}") from None
    if ms is None or not 0 <= ms <= _MAX_EPOCH_MS:
        raise CoercionError(f"{field}: {describe(value)} is not epoch milliseconds between 1970 and 2200")
    return ms


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
                raise CoercionError(f"{field}: date-time {describe(value)} has no UTC offset")
            ms = (parsed - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _ONE_MS
            if 0 <= ms <= _MAX_EPOCH_MS:
                return ms
            raise CoercionError(f"{field}: {describe(value)} is not between 1970 and 2200")
    raise CoercionError(f"{field}: expected an ISO 8601 date-time, got {describe(value)}")


def as_date(value: Any, field: str) -> Date | None:
    """An ISO date, YYYY-MM-DD."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return Date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise CoercionError(f"{field}: expected a date YYYY-MM-DD, got {describe(value)}")


def as_object(value: Any, field: str) -> dict | None:
    if value is None or isinstance(value, dict):
        return value
    raise CoercionError(f"{field}: expected an object, got {type(value).__name__}")


def as_json(value: Any) -> str | None:
    """JSON text for a JSON column (None stays NULL)."""
    if value is None:
        return None
    return orjson.dumps(value).decode()


class FieldErrors(list[str]):
    """Collects every reason a record cannot load, instead of stopping at the first."""

    def take(self, coerce: Callable[[Any, str], Any], record: Mapping[str, Any], field: str) -> Any:
        try:
            return coerce(record.get(field), field)
        except CoercionError as exc:
            self.append(str(exc))
            return None

    def nested(self, record: Mapping[str, Any], field: str) -> Mapping[str, Any]:
        try:
            return as_object(record.get(field), field) or {}
        except CoercionError as exc:
            self.append(str(exc))
            return {}
