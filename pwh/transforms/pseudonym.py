"""Patient identifiers never land raw: names and patient ids become keyed pseudonyms
(HMAC-SHA256 with a secret key), birth dates become a birth year.

The key comes from ``PWH_PSEUDONYM_KEY`` (read inside the flow, never a flow parameter)
or a key file beside the warehouse (``pwh.settings.choose_key``). A keyed hash, unlike a
plain one, cannot be reversed by hashing a list of likely names. The warehouse records the
key's fingerprint and refuses another key (pwh/warehouse/pseudonym_keys.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import date
from typing import Any

from pwh.settings import KEY_VARIABLE
from pwh.transforms.coerce import CoercionError

EARLIEST_BIRTH_YEAR = 1850
# The written forms of a birth date: (pattern, order of its groups). Only the year is kept,
# but the day and month must make a date, so garbage with four digits in it is not a year.
_BIRTH_FORMS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^(\d{4})$"), "Y"),
    (re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ]\S*)?$"), "YMD"),  # ISO date, or date-time
    (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), "YMD"),
    (re.compile(r"^(\d{4})/(\d{1,2})/(\d{1,2})$"), "YMD"),
    (re.compile(r"^(\d{1,2})\.(\d{1,2})\.(\d{4})$"), "DMY"),
    # DD/MM/YYYY or MM/DD/YYYY (also with -): which one cannot be told, and need not be,
    # as long as one of them is a date.
    (re.compile(r"^(\d{1,2})[/-](\d{1,2})[/-](\d{4})$"), "DMY|MDY"),
)

# The same patient recurs within a project (project, orders, groups), rarely across many.
CACHE_SIZE = 4096


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError(f"{KEY_VARIABLE} must be at least 16 bytes")
        self._key = key
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(<key hidden>)"

    def pseudonym(self, value: Any) -> str | None:
        """A stable 64-hex-digit pseudonym of a name or id (None stays None)."""
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        cached = self._cache.get(text)
        if cached is None:
            cached = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()  # bounded: a run's memory must not grow with the account
            self._cache[text] = cached
        return cached


def birth_year(value: Any) -> int | None:
    """The year of a birth date written YYYY-MM-DD (or an ISO date-time), YYYYMMDD,
    YYYY/MM/DD, DD.MM.YYYY, DD/MM/YYYY or MM/DD/YYYY (ambiguous, but only the year is
    kept), or YYYY alone; between 1850 and this year. None when there is no date; for
    anything else CoercionError, whose message never quotes the value (a birth date)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            # The documented form, most values, parsed in C (it also takes YYYYMMDD).
            return _checked_year(date.fromisoformat(text).year)
        except ValueError:
            pass
        for pattern, order in _BIRTH_FORMS:
            match = pattern.match(text)
            if match:
                return _year(match.groups(), order)
    raise CoercionError("subject.birth: expected a date such as YYYY-MM-DD or DD/MM/YYYY",
                        "expected a date such as YYYY-MM-DD or DD/MM/YYYY")


def _year(parts: tuple[str, ...], order: str) -> int:
    numbers = [int(p) for p in parts]
    readings = [dict(zip(reading, numbers)) for reading in order.split("|")]
    year = _checked_year(readings[0]["Y"])
    if order != "Y" and not any(_is_date(year, r["M"], r["D"]) for r in readings):
        raise CoercionError("subject.birth: not a calendar date", "not a calendar date")
    return year


_this_year = date.today().year


def _checked_year(year: int) -> int:
    """``year`` if between 1850 and this year (the clock is read again only for a year
    beyond the one last read, so a process running over New Year stays right)."""
    global _this_year
    if year > _this_year:
        _this_year = date.today().year
    if not EARLIEST_BIRTH_YEAR <= year <= _this_year:
        raise CoercionError(f"subject.birth: year not between {EARLIEST_BIRTH_YEAR} and this year",
                            f"year not between {EARLIEST_BIRTH_YEAR} and this year")
    return year


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True
