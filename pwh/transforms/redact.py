"""Raw JSON we keep (unmodelled fields, rejected records, unknown record kinds, free
text) passes through here first, so it carries no patient name, birth date, patient id,
credential or signed link. It fails closed, by three rules that do not depend on knowing
where a server puts things:

- by key: a key whose words name a patient, a person's name, a birth date or a national
  or chart number (``patient``, ``patientBirth``, ``PATIENT_NAME``, ``dob``, ``lastName``,
  ``환자``, …) keeps only a keyed pseudonym of each value (birth dates: the year); keys
  naming a credential or a download link (``token``, ``signature``, ``downloadUrl``) are
  dropped;
- by value: every string (keys too, at any depth, inside longer text) loses THIS
  project's own identifiers — the patient's names (whole, reordered, or any part of two
  or more letters, in any case and spacing), birth dates in every usual written form
  (``1978-12-28``, ``19781228``, ``28/12/1978``, ``12.28.78``, ``28 Dec 1978``,
  ``1978년 12월 28일``, epoch ms or s, ISO date-times) and patient ids — which
  :func:`patient_identifiers` collects from the project's records before any is redacted;
- links: every URL keeps only ``scheme://host/path``; its user info, query and fragment
  (where signatures, tokens and keys travel: S3, GCS, Azure SAS, CloudFront, OAuth) are cut,
  and so is any query string without a scheme. We cannot list every signature parameter
  name; we can keep only the part of a link that never is one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

import orjson

from pwh.transforms.pseudonym import Pseudonymizer

MARKER = "[redacted]"
MAX_DEPTH = 64
# Scrubbed texts remembered per redactor (short ones: ids, statuses, keys), bounded.
TEXT_CACHE_LENGTH, TEXT_CACHE_SIZE = 200, 4096

# ------------------------------------------------------------------ keys

_KEY_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_A-Za-z]+")
_DROP_PARTS = ("downloadlink", "downloadurl", "downloaduri", "signedurl", "signedlink", "presigned",
               "signature", "token", "password", "passwd", "secret", "credential", "apikey", "privatekey",
               "authorization", "cookie")
_BIRTH_PARTS = ("birth", "생년", "생일")
_BIRTH_WORDS = frozenset({"dob", "bday", "born"})
_ID_PARTS = ("patientid", "patientno", "patientnumber", "patientcode", "chartno", "chartnumber",
             "chartid", "medicalrecordnumber", "socialsecurity", "nationalid", "residentregistration",
             "주민", "환자번호", "차트번호")
_ID_WORDS = frozenset({"ssn", "rrn", "mrn", "nhs", "nin", "jumin"})
_PERSON_PARTS = ("patient", "firstname", "lastname", "fullname", "givenname", "familyname", "surname",
                 "middlename", "maidenname", "personname", "forename", "환자", "이름", "성명")

DROP, BIRTH, PATIENT_ID, PERSON, SUBJECT = "drop", "birth", "id", "person", "subject"


@lru_cache(maxsize=8192)
def key_kind(key: str) -> str | None:
    """What a key's name says its value is (None: nothing we know to be sensitive).
    Case, ``_ - . space`` and camelCase do not matter."""
    flat = _flat(key)
    words = {w.casefold() for w in _KEY_WORDS.findall(key)}
    if any(part in flat for part in _DROP_PARTS):
        return DROP
    if any(part in flat for part in _BIRTH_PARTS) or words & _BIRTH_WORDS:
        return BIRTH
    if any(part in flat for part in _ID_PARTS) or words & _ID_WORDS:
        return PATIENT_ID
    if any(part in flat for part in _PERSON_PARTS):
        return PERSON
    return None


# ------------------------------------------------------------------ links

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>\\`]+")
_QUERY = re.compile(r"\?[^\s\"'<>\\`?#]*=[^\s\"'<>\\`]*")
_URL_PARTS = re.compile(r"^([^:]+://)(?:[^/?#@]*@)?([^/?#]*)([^?#]*)")


def _link_base(match: re.Match[str]) -> str:
    parts = _URL_PARTS.match(match.group(0))
    return "".join(parts.groups()) if parts else MARKER


def strip_links(text: str) -> str:
    """``text`` with every URL cut to scheme://host/path and every query string removed."""
    if "://" in text:
        text = _URL.sub(_link_base, text)
    if "?" in text:
        text = _QUERY.sub("", text)
    return text


# ------------------------------------------------------------------ dates

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MON = r"(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_SEP = r"(?:\s*[-/.,]\s*|\s+)"
_ORD = r"(?:st|nd|rd|th)?"
# Every written form of a date we know, and digit runs (compact dates, epoch s and ms):
# the match is checked against the project's birth dates in Python.
_DATE_LIKE = re.compile(
    rf"(?<!\d)(?P<a>\d{{1,4}}){_SEP}(?P<b>\d{{1,2}}){_SEP}(?P<c>\d{{1,4}})(?!\d)"
    rf"|(?<!\d)(?P<ky>\d{{2,4}})\s*년\s*(?P<km>\d{{1,2}})\s*월\s*(?P<kd>\d{{1,2}})\s*일?"
    rf"|(?<!\d)(?P<dd>\d{{1,2}}){_ORD}[\s.,/-]*{_MON}[\s.,/-]*(?P<dy>\d{{4}}|\d{{2}})(?!\d)"
    rf"|(?<![A-Za-z]){_MON}[\s.,/-]*(?P<md>\d{{1,2}}){_ORD}[\s.,/-]*(?P<my>\d{{4}}|\d{{2}})(?!\d)"
    r"|(?<!\d)(?P<digits>\d{6,13})(?!\d)",
    re.IGNORECASE,
)
_HAS_DIGIT = re.compile(r"\d").search
_DIGIT_RUN = re.compile(r"\d+")
# Any moment of a birth day, in any time zone (UTC+14 to UTC-12), from its UTC midnight.
_EARLIEST_OFFSET_MS, _LATEST_OFFSET_MS = -14 * 3_600_000, 36 * 3_600_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _dates_of_epoch(value: float) -> set[tuple[int, int, int]]:
    """The calendar dates (any time zone) an epoch value can stand for, read as ms and as s."""
    out = set()
    for ms in (value, value * 1000):
        for offset in (-12 * 3_600_000, 0, 14 * 3_600_000):
            try:
                day = _EPOCH + timedelta(milliseconds=ms + offset)
            except (OverflowError, ValueError):
                continue
            if 1850 <= day.year <= 2200:
                out.add((day.year, day.month, day.day))
    return out


def _ymd(y: str, m: str, d: str) -> tuple[int, int, int] | None:
    year, month, day = int(y), int(m), int(d)
    if len(y) == 2:
        year += 1900  # a two-digit year stands for either century: compared modulo 100
    return (year, month, day) if 1 <= month <= 12 and 1 <= day <= 31 else None


def _candidates(match: re.Match[str], epochs: bool = True) -> set[tuple[int, int, int]]:
    """Every (year, month, day) a date-like match can be read as (digit runs as epoch
    values too, with ``epochs``)."""
    g = match.groupdict()
    if g["a"] is not None:
        a, b, c = g["a"], g["b"], g["c"]
        readings = ((a, b, c), (c, b, a), (c, a, b))  # Y-M-D, D-M-Y, M-D-Y
        return {ymd for y, m, d in readings if len(y) in (2, 4) if (ymd := _ymd(y, m, d))}
    if g["ky"] is not None:
        ymd = _ymd(g["ky"], g["km"], g["kd"])
        return {ymd} if ymd else set()
    if g["dd"] is not None or g["md"] is not None:
        month = str(_MONTHS.index(_month_of(match)) + 1)
        day, year = (g["dd"], g["dy"]) if g["dd"] is not None else (g["md"], g["my"])
        ymd = _ymd(year, month, day)
        return {ymd} if ymd else set()
    digits = g["digits"]
    out = set()
    if len(digits) in (6, 8):
        y = 4 if len(digits) == 8 else 2
        splits = ((digits[:y], digits[y:y + 2], digits[y + 2:]),  # YYYYMMDD
                  (digits[-y:], digits[2:4], digits[:2]),  # DDMMYYYY
                  (digits[-y:], digits[:2], digits[2:4]))  # MMDDYYYY
        out |= {ymd for s in splits if (ymd := _ymd(*s))}
    if epochs and len(digits) >= 8:
        out |= _dates_of_epoch(int(digits))
    return out


def _month_of(match: re.Match[str]) -> str:
    # casefold, not lower: the pattern ignores case as Unicode does (``ſep`` is ``sep``).
    month = re.search(_MON, match.group(0), re.IGNORECASE)
    assert month is not None  # called only on matches of a written month (_MON)
    return month.group(1).casefold()


def birth_dates(value: Any) -> set[tuple[int, int, int]]:
    """The dates a birth value can be read as, in any written form we know."""
    if isinstance(value, bool) or value is None:
        return set()
    if isinstance(value, (int, float)):
        return _dates_of_epoch(value) if abs(value) < 1e15 else set()
    if not isinstance(value, str):
        return set()
    out: set[tuple[int, int, int]] = set()
    for match in _DATE_LIKE.finditer(value):
        out |= _candidates(match)
    return out


def _year_of(value: Any) -> int | None:
    dates = birth_dates(value)
    years = {y for y, _, _ in dates}
    return years.pop() if len(years) == 1 else None


# ------------------------------------------------------------------ names

_WORD = re.compile(r"[^\W_]+")
_NAME_SPLIT = re.compile(r"[\W_]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+|[^\W\d_A-Za-z]+")


# Hangul, Han, kana: scripts written without spaces between name and particle.
_unspaced_script = re.compile("[\u1100-\u11ff\u2e80-\u9fff\uac00-\ud7af]").search


class PatientIdentifiers:
    """One project's patient identifiers, in the forms the text scrub looks for."""

    def __init__(self) -> None:
        self.words: set[str] = set()  # casefolded name parts and joined parts (spaced scripts)
        self.fragments: list[str] = []  # name parts of unspaced scripts: matched inside words
        self.ids: set[str] = set()
        self.numbers: set[int] = set()
        self.births: set[tuple[int, int, int]] = set()
        self._birth_md: set[tuple[int, int]] = set()
        self._birth_ms: list[tuple[int, int]] = []  # epoch ms a birth day spans, in any time zone
        self.parts: set[str] = set()  # casefolded name parts of two characters or more
        self._needles: tuple[str, ...] | None = None
        self._traces: _Traces | None = None
        self._added: set[tuple[str, type, Any]] = set()  # a project repeats its subject: added once

    def _first_time(self, kind: str, value: Any) -> bool:
        """Whether ``value`` is new as a ``kind`` (adding one again changes nothing)."""
        seen = (kind, type(value), value)
        try:
            if seen in self._added:
                return False
        except TypeError:  # not hashable (never from JSON): added every time
            return True
        self._added.add(seen)
        return True

    def __bool__(self) -> bool:
        return bool(self.words or self.fragments or self.ids or self.births)

    def add_name(self, name: Any) -> None:
        if isinstance(name, bool) or name is None:
            return
        if isinstance(name, (int, float)):
            self.add_id(name)
            return
        if not self._first_time(PERSON, name):
            return
        text = str(name).strip()
        if not text:
            return
        self._needles = self._traces = None
        parts = [p for p in _NAME_SPLIT.split(text) if p]
        if _unspaced_script(text):
            for part in parts:
                # A Korean name is often written without a space: 김민지 is 김 + 민지 (or 남궁 + 민수).
                pieces = {part, part[1:], part[2:]} if len(part) >= 3 else {part}
                self.fragments.extend(p for p in pieces if len(p) >= 2 and p not in self.fragments)
        folded = [p.casefold() for p in parts]
        self.parts.update(p for p in folded if len(p) >= 2)
        self.words |= self.parts
        if 1 < len(folded) <= 4:
            # "KimMinji", "MINJIKIM": the parts joined, in either order.
            self.words.add("".join(folded))
            self.words.add("".join(reversed(folded)))
        self.fragments.sort(key=len, reverse=True)
        if any(map(str.isdigit, text)):
            self.add_id(text)  # an id written under a name key: removed whole as well

    def add_id(self, value: Any) -> None:
        if isinstance(value, bool) or value is None or not self._first_time(PATIENT_ID, value):
            return
        if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
            self.numbers.add(int(value))
        text = str(int(value) if isinstance(value, float) and value.is_integer() else value).strip()
        if len(text) >= 3:
            self.ids.add(text)
        self._needles = self._traces = None

    def add_birth(self, value: Any) -> None:
        if not self._first_time(BIRTH, value):
            return
        self._traces = None
        dates = birth_dates(value)
        if not dates and isinstance(value, str) and value.strip():
            self.add_id(value)  # unreadable as a date: removed as it is written
        self.births |= dates
        self._birth_md |= {(m, d) for _, m, d in dates}
        for year, month, day in dates:
            try:
                midnight = (datetime(year, month, day, tzinfo=timezone.utc) - _EPOCH) // timedelta(milliseconds=1)
            except ValueError:  # 31 February: no such day, no epoch
                continue
            self._birth_ms.append((midnight + _EARLIEST_OFFSET_MS, midnight + _LATEST_OFFSET_MS))

    # -- matching -----------------------------------------------------------------------
    def mentioned_in(self, text: str) -> bool:
        """Whether a text holds any name part or id, as a substring in any case (every
        joined or reordered form of a name holds its parts)."""
        if self._needles is None:
            self._needles = _fewest({*self.parts, *(f.casefold() for f in self.fragments),
                                     *(i.casefold() for i in self.ids)})
        if not self._needles:
            return False
        return any(map(text.casefold().__contains__, self._needles))

    def absent_from(self, folded_json: str) -> bool:
        """Whether the text scrub would change no string of a value, told from the value's
        JSON (casefolded) alone: it holds no trace any identifier's every written form leaves
        (a name part or id as it is escaped in JSON; a birth date's two-digit year, day and
        month; the leading digits every epoch of a birth day shares). False when unsure."""
        traces = self._traces
        if traces is None:
            traces = self._traces = _Traces(self)
        if not traces.usable or any(map(folded_json.__contains__, traces.needles)):
            return False
        return not (self.births and self._may_hold_date(folded_json, traces))

    def may_hold_birth(self, text: str) -> bool:
        """Whether a text may hold a birth date, in a written form or as an epoch (False:
        it holds none of the traces every such form leaves)."""
        traces = self._traces
        if traces is None:
            traces = self._traces = _Traces(self)
        return any(map(text.__contains__, traces.epochs)) or self._may_hold_date(text.casefold(), traces)

    @staticmethod
    def _may_hold_date(folded: str, traces: _Traces) -> bool:
        ascii_only = folded.isascii()
        if not ascii_only and _NON_ASCII_DIGIT(folded):
            return True  # a date in other digits: only the regex reads it
        for year, day, month, month_name in traces.dates:
            # A month name in other letters (``ſep``) is matched by the regex, not by a substring.
            if year in folded and day in folded and (month in folded or month_name in folded or not ascii_only):
                return True
        return False

    def is_birth(self, ymd: tuple[int, int, int]) -> bool:
        year, month, day = ymd
        if (month, day) not in self._birth_md:
            return False
        return any(b == ymd or (year < 2000 and b[1:] == (month, day) and b[0] % 100 == year % 100)
                   for b in self.births)

    def is_birth_number(self, value: float) -> bool:
        """Whether a number is a birth day's epoch, in ms or in s."""
        for lo, hi in self._birth_ms:
            if lo <= value < hi or lo <= value * 1000 < hi:
                return True
        return False


def _scrub_word(identifiers: PatientIdentifiers, match: re.Match[str]) -> str:
    word = match.group(0)
    if word.casefold() in identifiers.words:
        return MARKER
    parts = _CAMEL.findall(word)
    if len(parts) > 1 and any(p.casefold() in identifiers.words for p in parts):
        return "".join(MARKER if p.casefold() in identifiers.words else p for p in parts)
    return word


def _scrub_date(identifiers: PatientIdentifiers, match: re.Match[str]) -> str:
    digits = match.group("digits")
    if digits is not None and len(digits) >= 8 and identifiers.is_birth_number(int(digits)):
        return MARKER
    return MARKER if any(identifiers.is_birth(c) for c in _candidates(match, epochs=False)) else match.group(0)


# ------------------------------------------------------------------ quick checks on raw JSON
# Most raw JSON a project keeps (unmodelled fields, a history's data, an order's
# treatments) holds no trace of its patient and no key or link a rule changes: reading it
# once as JSON (orjson, in C) tells so, and spares it the redacting walk and the
# per-string scrub. Every check errs towards the walk. (The collecting walk learns the
# keys no rule reads from here.)

_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d").search
# Only JSON's own types are read as JSON (any other object is repr()'d by the walk).
_PLAIN_JSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS
# Keys no rule reads (neither collected from nor redacted): known after the first sight, bounded.
_INERT_KEYS: set[str] = set()
_INERT_KEYS_SIZE = 8192
# Floats orjson and Python (a column takes a float as text) write alike: from 1e-4 to 1e16
# (``1e-05`` is ``0.00001`` to orjson, 1e16 ``10000000000000000`` as a column's integer).
_PLAIN_FLOATS = (1e-4, 1e16)


def _json_form(text: str) -> str | None:
    """``text`` as it appears inside a JSON string (None: orjson cannot write it)."""
    try:
        return orjson.dumps(text).decode()[1:-1]
    except TypeError:
        return None


def _fewest(needles: set[str]) -> tuple[str, ...]:
    """The needles a text holds one of exactly when it holds one of ``needles``: a needle
    holding a shorter one is dropped (a text that holds it holds the shorter)."""
    kept: list[str] = []
    for needle in sorted(needles, key=len):
        for shorter in kept:  # a plain loop: a generator per needle cost 3x (twice per project)
            if shorter in needle:
                break
        else:
            kept.append(needle)
    return tuple(kept)


def _shared_prefix(low: int, high: int) -> str:
    """The leading characters every number from ``low`` to ``high`` is written with
    (integers, and floats written without an exponent, between them)."""
    a, b = str(low), str(high)
    if len(a) != len(b):
        return ""
    n = 0
    while n < len(a) and a[n] == b[n]:
        n += 1
    return a[:n]


class _Traces:
    """What every written form of a project's identifiers leaves in a value's casefolded
    JSON (see :meth:`PatientIdentifiers.absent_from`)."""

    def __init__(self, found: PatientIdentifiers) -> None:
        forms = {*found.parts, *(f.casefold() for f in found.fragments), *(i.casefold() for i in found.ids),
                 *(str(n) for n in found.numbers)}
        needles = [_json_form(form) for form in forms]
        # A number written with an exponent, or text orjson cannot write: no trace to look for.
        self.usable = None not in needles and all(abs(n) < _PLAIN_FLOATS[1] for n in found.numbers)
        epochs = set()
        for lo, hi in found._birth_ms:  # as ms, and as s (the scrub reads both)
            epochs.add(_shared_prefix(lo - 1, hi + 1))
            epochs.add(_shared_prefix(lo // 1000 - 1, hi // 1000 + 2))
        self.epochs = tuple(epochs)
        self.needles = _fewest({*(n for n in needles if n is not None), *epochs})
        self.dates = tuple({(f"{y % 100:02d}", str(d), str(m), _MONTHS[m - 1]) for y, m, d in found.births})


class RawScan:
    """One raw value's JSON, read once: its text as ``orjson.dumps`` writes it (kept
    when no rule changes the value), its casefolded text (None: not plain JSON, the whole
    redaction needed), and whether the key and link rules could change it (a key naming a
    patient, a subject or a credential, a link or a query)."""

    __slots__ = ("text", "folded", "changes", "links")

    def __init__(self, value: Any) -> None:
        try:
            # Plain JSON types only (the options refuse the others): the text is then
            # exactly what orjson writes for the value without options.
            text = orjson.dumps(value, option=_PLAIN_JSON).decode()
        except TypeError:
            text = None
        self.text = text
        keys: set[Any] = set()
        if text is None or not _gather_keys(value, keys, 0):
            self.folded, self.changes, self.links = None, True, True
            return
        self.folded = text.casefold()
        self.links = "://" in text or "?" in text
        self.changes = self.links
        if keys <= _INERT_KEYS:
            return
        keys -= _INERT_KEYS
        self.changes |= any(_key_redacted(key) for key in keys)
        if len(_INERT_KEYS) + len(keys) > _INERT_KEYS_SIZE:
            _INERT_KEYS.clear()
        _INERT_KEYS.update(key for key in keys if not _key_redacted(key) and not _key_marks(key))


def _gather_keys(value: Any, keys: set[Any], depth: int) -> bool:
    """Every key of the objects in ``value`` into ``keys``. False if nested deeper than
    the walks go (:data:`MAX_DEPTH`) or holding a float its JSON does not show as Python
    writes it."""
    if depth >= MAX_DEPTH:
        return False
    low, high = _PLAIN_FLOATS
    if isinstance(value, dict):
        keys.update(value)
        value = value.values()
    elif not isinstance(value, (list, tuple)):
        return not (type(value) is float and value and not low <= abs(value) < high)
    for item in value:
        if isinstance(item, _CONTAINERS):
            if not _gather_keys(item, keys, depth + 1):
                return False
        elif type(item) is float and item and not low <= abs(item) < high:
            return False
    return True


def _key_redacted(key: Any) -> bool:
    """Whether a redaction rule changes what is under ``key`` (a subject, a patient's or a
    credential's key)."""
    return isinstance(key, str) and (key_kind(key) is not None or _flat(key).startswith("subject"))


def _key_marks(key: Any) -> bool:
    """Whether the collecting walk collects what is under ``key`` (or the object it is in)."""
    return isinstance(key, str) and (key in _CHANGE_SPELLINGS or _inner_kind(key, None) is not None)


# ------------------------------------------------------------------ collecting

_CHANGE_KEYS = frozenset({"before", "after", "old", "new", "from", "to", "previous", "prev", "current",
                          "oldvalue", "newvalue", "was", "now", "original", "value"})
# The spellings a server may use, for a set intersection per object (the collecting walk
# sees every object of a project).
_CHANGE_SPELLINGS = frozenset(
    form for word in (*_CHANGE_KEYS, "oldValue", "newValue", "old_value", "new_value")
    for form in (word, word.capitalize(), word.upper())
)


def patient_identifiers(records: Iterable[Any]) -> PatientIdentifiers:
    """Every patient identifier a project's records hold: what sits under a subject or a
    key naming a patient, a person's name or a birth date, at any depth; and both sides of
    a recorded change (``before``/``after``, ``old``/``new``, …) whose one side is such an
    identifier or whose field is named like one (a name change under innocent keys)."""
    found = PatientIdentifiers()
    changes: list[Mapping[str, Any]] = []
    for record in records:
        _collect(record, None, found, changes, 0)
    pending = changes
    links_and_keys = Redactor(None)
    while pending:  # an old name found in one change can reveal the next one
        redactor = Redactor(None, found)
        still = []
        for change in pending:
            sides = [v for k, v in change.items() if _flat(k) in _CHANGE_KEYS]
            # The field it changes named like a patient's (``{"field": "subject.name", …}``).
            named = any(isinstance(v, str) and (key_kind(v) not in (None, DROP) or _flat(v).startswith("subject"))
                        for k, v in change.items() if isinstance(k, str) and _flat(k) not in _CHANGE_KEYS)
            if named or any(redactor(side) != links_and_keys(side) for side in sides):
                for side in sides:
                    _collect(side, BIRTH if birth_dates(side) else PERSON, found, [], 0)
            else:
                still.append(change)
        if len(still) == len(pending):
            break
        pending = still
    return found


@lru_cache(maxsize=8192)
def _flat(key: str) -> str:
    return re.sub(r"[\s_\-.]+", "", key).casefold()


@lru_cache(maxsize=8192)
def _inner_kind(key: str, kind: str | None) -> str | None:
    """What the value under ``key`` is, inside a value that is ``kind``."""
    named = key_kind(key)
    if kind is None:
        return SUBJECT if _flat(key).startswith("subject") else (None if named == DROP else named)
    if key == "birth" or named == BIRTH:
        return BIRTH
    return PATIENT_ID if named == PATIENT_ID else kind


def _collect(value: Any, kind: str | None, found: PatientIdentifiers,
             changes: list[Mapping[str, Any]], depth: int) -> None:
    # Every node of a project passes here: builtin type checks only (an ABC check such as
    # Mapping costs ~10x), and no call for a leaf nobody marked as the patient's.
    if isinstance(value, dict):
        if depth > MAX_DEPTH:
            return
        if kind is None:
            if not _CHANGE_SPELLINGS.isdisjoint(value):
                changes.append(value)
            if _INERT_KEYS.issuperset(value):  # no key here marks what is under it
                for item in value.values():
                    if isinstance(item, _CONTAINERS):
                        _collect(item, None, found, changes, depth + 1)
                return
        for key, item in value.items():
            inner = kind if kind == BIRTH or not isinstance(key, str) else _inner_kind(key, kind)
            if inner is not None or isinstance(item, _CONTAINERS):
                _collect(item, inner, found, changes, depth + 1)
    elif isinstance(value, _CONTAINERS):
        if depth > MAX_DEPTH:
            return
        for item in value:
            if kind is not None or isinstance(item, _CONTAINERS):
                _collect(item, kind, found, changes, depth + 1)
    elif kind in (PERSON, SUBJECT):
        found.add_name(value)
    elif kind == PATIENT_ID:
        found.add_id(value)
    elif kind == BIRTH:
        found.add_birth(value)


_CONTAINERS = (dict, list, tuple)


# ------------------------------------------------------------------ redacting

class Redactor:
    """Redacts raw JSON of one project (``identifiers``) or of a source without patient
    subjects (no identifiers: the key and link rules only). Without a pseudonymizer,
    values under patient keys become :data:`MARKER`. ``subjects``: a ``subject`` key holds
    the patient (RAYTeams; elsewhere, e.g. OpenProject, it is a title)."""

    def __init__(self, pseudonyms: Pseudonymizer | None, identifiers: PatientIdentifiers | None = None,
                 *, subjects: bool = True) -> None:
        self.pseudonyms = pseudonyms
        self.identifiers = identifiers if identifiers else None
        self.subjects = subjects
        self._texts: dict[str, str] = {}  # a project repeats its ids, statuses and keys
        self._rules_only: Redactor | None = None

    def __call__(self, value: Any) -> Any:
        return self._value(value, 0)

    def for_raw(self, scan: RawScan) -> Redactor:
        """The cheapest redactor that redacts the value ``scan`` read (and any part of it,
        and any text taken from it whole) exactly as this one does: this one; one with the
        key and link rules only (the value holds no trace of the identifiers); or none at
        all (no rule would change it either). A link cut can join two texts into an
        identifier: a value with a link keeps the identifiers' scrub."""
        if scan.folded is None:
            return self
        found = self.identifiers
        if found is not None and (scan.links or not found.absent_from(scan.folded)):
            return self
        if not scan.changes:
            return UNCHANGED
        if found is None:
            return self
        if self._rules_only is None:
            self._rules_only = Redactor(self.pseudonyms, subjects=self.subjects)
        return self._rules_only

    def text(self, text: str) -> str:
        """``text`` without links' secrets and without this project's identifiers."""
        done = self._texts.get(text)
        if done is None:
            done = self._scrub(text)
            if len(text) <= TEXT_CACHE_LENGTH:
                if len(self._texts) >= TEXT_CACHE_SIZE:
                    self._texts.clear()
                self._texts[text] = done
        return done

    def _scrub(self, text: str) -> str:
        text = strip_links(text)
        found = self.identifiers
        if found is None:
            return text
        if 8 < len(text) < 20 and text.isascii() and text.isdigit():  # sk time stamps, mostly
            return MARKER if text in found.ids or found.is_birth_number(int(text)) else text
        if found.mentioned_in(text):
            text = _WORD.sub(lambda m: _scrub_word(found, m), text)
            for fragment in found.fragments:
                text = text.replace(fragment, MARKER)
            for patient_id in found.ids:
                if patient_id.isdigit():
                    text = _DIGIT_RUN.sub(lambda m: MARKER if m.group(0) in found.ids else m.group(0), text)
                else:
                    for form in (patient_id, patient_id.upper(), patient_id.lower()):
                        text = text.replace(form, MARKER)
        if found.births and _HAS_DIGIT(text) and found.may_hold_birth(text):
            text = _DATE_LIKE.sub(lambda m: _scrub_date(found, m), text)
        return text

    def _text_key(self, key: Any) -> Any:
        return self.text(key) if isinstance(key, str) else key

    def _number(self, value: float) -> Any:
        found = self.identifiers
        if found is None:
            return value
        if value in found.numbers or found.is_birth_number(value):
            return MARKER
        return value

    def _value(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bool) or value is None:
            return value
        if isinstance(value, (int, float)):
            return self._number(value)
        if depth > MAX_DEPTH:
            return "<nesting too deep: truncated>"
        if isinstance(value, dict):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                kind = key_kind(key) if isinstance(key, str) else None
                if kind == DROP:
                    continue
                if self.subjects and _flat(key).startswith("subject"):
                    _put(out, key, self._subject(item, depth + 1))
                elif kind is None:
                    _put(out, self._text_key(key),
                         self.text(item) if isinstance(item, str) else self._value(item, depth + 1))
                else:
                    _put(out, self._text_key(key), self._sensitive(item, kind, depth + 1))
            return out
        if isinstance(value, (list, tuple)):
            return [self._value(item, depth + 1) for item in value]
        return self.text(repr(value))

    def _sensitive(self, value: Any, kind: str, depth: int) -> Any:
        """A value under a patient key: its structure is kept, each leaf becomes a keyed
        pseudonym (a birth date: its year), so it still joins and never reads."""
        if depth > MAX_DEPTH:
            return "<nesting too deep: truncated>"
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            for key, item in value.items():
                inner = key_kind(key) if isinstance(key, str) else None
                if inner != DROP:
                    _put(out, self._text_key(key), self._sensitive(item, inner if inner in (BIRTH,) else kind, depth + 1))
            return out
        if isinstance(value, (list, tuple)):
            return [self._sensitive(item, kind, depth + 1) for item in value]
        if isinstance(value, bool) or value is None:
            return value
        if kind == BIRTH:
            return _year_of(value)
        if self.pseudonyms is None:
            return MARKER
        return self.pseudonyms.pseudonym(value)

    def _subject(self, subject: Any, depth: int) -> Any:
        """A subject is documented as ``{name, birth}``: the patient. Whatever its shape
        (and under ``Subject``, ``subject_info``, …), every leaf in it is the patient's (a
        pseudonym; a birth date: its year)."""
        if isinstance(subject, Mapping):
            out: dict[Any, Any] = {}
            for key, item in subject.items():
                if key == "name" and not isinstance(item, (Mapping, list)):
                    _put(out, "name_pseudonym", self._sensitive(item, PERSON, depth))
                elif key == "birth" and not isinstance(item, (Mapping, list)):
                    _put(out, "birth_year", self._sensitive(item, BIRTH, depth))
                elif key_kind(key) != DROP:
                    kind = BIRTH if key == "birth" or key_kind(key) == BIRTH else PERSON
                    _put(out, self._text_key(key), self._sensitive(item, kind, depth + 1))
            return out
        return self._sensitive(subject, PERSON, depth)


class _Unchanged(Redactor):
    """The redaction of a value no rule changes (see :meth:`Redactor.for_raw`)."""

    def __init__(self) -> None:
        super().__init__(None)

    def __call__(self, value: Any) -> Any:
        return value

    def text(self, text: str) -> str:
        return text


UNCHANGED = _Unchanged()


def _put(out: dict[Any, Any], key: Any, value: Any) -> None:
    """Two keys that redact to the same text both stay: the later one is numbered."""
    if key in out:
        n = 2
        while f"{key}#{n}" in out:
            n += 1
        key = f"{key}#{n}"
    out[key] = value


def redact(value: Any, pseudonyms: Pseudonymizer | None = None,
           identifiers: PatientIdentifiers | None = None) -> Any:
    """``value`` redacted by the key and link rules, and by ``identifiers`` when given."""
    return Redactor(pseudonyms, identifiers)(value)


def redact_unknown_source(value: Any) -> Any:
    """The redaction of sources without patient subjects: keys and links only."""
    return _NO_SUBJECT(value)


_NO_SUBJECT = Redactor(None, subjects=False)
