"""RAYTeams records → typed rows, routed by the sk prefix.

Pure: records in, a :class:`TableBatch` out. Every documented type of a field is
accepted and normalised (numbers or numeric strings for time stamps, `content` or
`contents` for comment text, …). A field that cannot be read loads NULL with a field
issue; a record that cannot be placed (not an object, no sk, another project's) is
rejected with its reason; a record of an unknown kind goes to `other_records`. Nothing
is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pwh.schemas import rayteams as tables
from pwh.schemas.rows import FieldIssue
from pwh.transforms.coerce import (
    FieldIssues,
    as_bool,
    as_float,
    as_int,
    as_json,
    as_text,
    as_timestamp_ms,
    describe,
)
from pwh.transforms.frames import TableBatch
from pwh.transforms.pseudonym import Pseudonymizer, birth_year
from pwh.transforms.redact import UNCHANGED, RawScan, Redactor, patient_identifiers

PROJECT_SK = "project"
OWNER_GROUP_SK = "project:institute:owner"
# sk prefix → table, checked in order (the group prefix before any shorter one).
ROUTES: tuple[tuple[str, str], ...] = (
    ("project:institute:", "groups"),
    ("memo:", "memos"),
    ("attachments:", "attachments"),
    ("his:", "histories"),
    ("order:", "orders"),
)
# Columns whose text is not scrubbed of the project's patient identifiers: the unit key,
# the pseudonyms, and JSON made by the project's Redactor. Every other text is.
NOT_FREE_TEXT = frozenset({
    "account", "project_id", "patient_pseudonym", "subject_pseudonym",
    "extra", "data", "medical_records", "treatments", "workflow", "record",
})
SK_COLUMNS = frozenset({"sk", "memo_sk"})
# Parts of an sk or record key that say what a record is, never whose.
_KIND_PREFIXES = tuple(sorted((PROJECT_SK, "files/", *(p for p, _ in ROUTES)), key=len, reverse=True))
# The longest kind prefix an sk starts with, in one call (alternatives are tried in order).
_KIND_PREFIX = re.compile("|".join(map(re.escape, _KIND_PREFIXES))).match


@dataclass(frozen=True)
class FetchedProject:
    """One project's raw answers: the list entry, its sk-typed records, its files."""

    project_id: str
    listed: Mapping[str, Any] | None
    records: list[Any]
    files: list[Any]


def _birth_year(value: Any, field: str) -> int | None:
    return birth_year(value)


def _patient_id(record: Mapping[str, Any], issues: FieldIssues) -> str | int | None:
    """`patientId` as the pseudonymiser takes it (text or a number); anything else is an issue."""
    patient_id = record.get("patientId")
    if patient_id is not None and not isinstance(patient_id, (str, int)):
        issues.add("patientId", "expected text", patient_id, private=True)
        return None
    return patient_id


def route(sk: str) -> str:
    """The table a record of this sk belongs to."""
    if sk == PROJECT_SK:
        return "projects"
    routed = _ROUTE(sk)
    return _TABLE_OF_PREFIX[routed.group()] if routed else "other_records"


_ROUTE = re.compile("|".join(re.escape(prefix) for prefix, _ in ROUTES)).match  # tried in ROUTES' order
_TABLE_OF_PREFIX = dict(ROUTES)


def _is_object(value: Any) -> bool:
    # A record parsed from JSON is a dict: the ABC check (~10x slower) only for anything else.
    return type(value) is dict or isinstance(value, Mapping)


class _ProjectTransform:
    def __init__(self, account: str, pseudonyms: Pseudonymizer) -> None:
        self.account = account
        self.pseudonyms = pseudonyms
        self.redact = Redactor(pseudonyms)
        self.batch = TableBatch.for_tables(tables.TABLES)

    # -- shared pieces -------------------------------------------------------------------
    def _extra(self, record: Mapping[str, Any], modelled: frozenset[str], **more: Any) -> str | None:
        # Most records hold modelled fields only: a set comparison tells so without a copy.
        rest = {} if record.keys() <= modelled else {k: v for k, v in record.items() if k not in modelled}
        rest.update((k, v) for k, v in more.items() if v)
        return self._raw_json(rest) if rest else None

    def _raw_json(self, part: Any) -> str | None:
        """Raw JSON kept (unmodelled fields, a history's data, an order's treatments …),
        redacted by the cheapest redactor that gives the same result (Redactor.for_raw):
        most parts hold no trace of the patient and no key or link a rule changes."""
        if not isinstance(part, (dict, list)):
            return as_json(self.redact(part))
        scan = RawScan(part)
        redact = self.redact.for_raw(scan)
        # Unchanged: the JSON the scan wrote is the one kept (not written twice).
        return scan.text if redact is UNCHANGED else as_json(redact(part))

    def _subject(self, record: Mapping[str, Any], issues: FieldIssues) -> dict[str, Any]:
        subject = issues.nested(record, "subject")
        name = subject.get("name")
        if name is not None and not isinstance(name, (str, int)):
            issues.add("subject.name", "expected text", name, private=True)
            name = None
        year = issues.take(_birth_year, subject, "birth", path="subject.birth", private=True)
        patient_id = _patient_id(record, issues)
        return {
            "patient_pseudonym": self.pseudonyms.pseudonym(patient_id),
            "subject_pseudonym": self.pseudonyms.pseudonym(name),
            "subject_birth_year": year,
        }

    def _add(self, table: str, project_id: str, key: str, row: dict[str, Any],
             raw: Any, issues: Iterable[FieldIssue]) -> None:
        scrubbed_key = self._scrub_key(project_id, key)
        text = self.redact.text
        for column, value in row.items():
            if isinstance(value, str) and column not in NOT_FREE_TEXT:
                if column not in SK_COLUMNS:
                    row[column] = text(value)
                elif key == f"{project_id}/{value}":  # the key is this sk's: scrubbed once, above
                    row[column] = scrubbed_key[len(project_id) + 1:]
                else:
                    row[column] = self._scrub_sk(value)
        row["account"] = self.account
        row["project_id"] = project_id
        # An issue describes digit-and-punctuation values as they are: a birth date typed
        # into another field would show; scrubbed like every other text.
        scrubbed = [replace(i, field=text(i.field), value=text(i.value)) for i in issues] if issues else ()
        self.batch.buffers[table].append(row, raw, project_id, scrubbed_key, scrubbed)

    def _scrub_sk(self, sk: str) -> str:
        """An sk without patient identifiers; its documented kind prefix kept as it is."""
        kind = _KIND_PREFIX(sk)
        if kind is None:
            return self.redact.text(sk)
        prefix = kind.group()
        return prefix + self.redact.text(sk[len(prefix):])

    def _scrub_key(self, project_id: str, key: str) -> str:
        """``<project id>/<sk>…`` without patient identifiers."""
        unit = f"{project_id}/"
        return unit + self._scrub_sk(key[len(unit):]) if key.startswith(unit) else self.redact.text(key)

    # -- one project -----------------------------------------------------------------------
    def project(self, fetched: FetchedProject) -> None:
        pid = fetched.project_id
        records = list(fetched.records)
        has_project_record = any(_is_object(r) and r.get("sk") == PROJECT_SK for r in records)
        if not has_project_record and fetched.listed is not None:
            # The per-resource strategy does not fetch /info: the list entry is the project record.
            records.insert(0, fetched.listed)
        # The project's patient identifiers, gathered before any of its records is kept.
        identifiers = patient_identifiers([fetched.listed, *records, *fetched.files])
        self.redact = Redactor(self.pseudonyms, identifiers)
        # For records validation quarantines later: a redactor without this one's text cache,
        # so a batch holds its projects' identifiers only.
        self.batch.unit_redactors[pid] = Redactor(self.pseudonyms, identifiers)
        first_rejected = len(self.batch.rejected)
        for record in records:
            self.record(pid, record)
        for position, file in enumerate(fetched.files):
            self.file(pid, position, file)
        # Reasons may quote a value (``created: … got 'Kim …'``): scrubbed like the rest.
        text = self.redact.text
        self.batch.rejected[first_rejected:] = [
            replace(r, record_key=self._scrub_key(pid, r.record_key), reasons=tuple(text(reason) for reason in r.reasons))
            for r in self.batch.rejected[first_rejected:]
        ]

    def record(self, pid: str, record: Any) -> None:
        if not _is_object(record):
            self.batch.reject("other_records", pid, f"{pid}/?", [f"record is a {type(record).__name__}, not an object"], record, self.redact)
            return
        sk = record.get("sk")
        if not isinstance(sk, str) or not sk:
            self.batch.reject("other_records", pid, f"{pid}/?", ["record has no sk (text) to say what it is"], record, self.redact)
            return
        key = f"{pid}/{sk}"
        owner = record.get("_id")
        if owner is not None and owner != pid:
            self.batch.reject(route(sk), pid, key, [f"_id {describe(owner)} is not the project it was fetched for"], record, self.redact)
            return
        getattr(self, route(sk))(pid, sk, key, record)

    # -- one builder per table ------------------------------------------------------------
    _PROJECT_FIELDS = frozenset({
        "_id", "sk", "region", "name", "patientId", "projecttype", "count", "size", "ownerGroupId",
        "labId", "lastUpdateGroupId", "status", "subject", "istrash", "isarchive", "created", "updated",
    })

    def projects(self, pid: str, sk: str, key: str, r: Mapping[str, Any]) -> None:
        e = FieldIssues()
        status = e.nested(r, "status")
        count = r.get("count")
        row = {
            "region": e.take(as_text, r, "region"),
            "name": e.take(as_text, r, "name"),
            "project_type": e.take(as_text, r, "projecttype"),
            **self._subject(r, e),
            # `count` is documented as Boolean but shown as a number: a boolean carries no count.
            "file_count": None if isinstance(count, bool) else e.take(as_int, r, "count"),
            "size_bytes": e.take(as_int, r, "size"),
            "owner_group_id": e.take(as_text, r, "ownerGroupId"),
            "lab_id": e.take(as_text, r, "labId"),
            "last_update_group_id": e.take(as_text, r, "lastUpdateGroupId"),
            "status_code": e.take(as_text, status, "code", path="status.code"),
            "status_text": e.take(as_text, status, "text", path="status.text"),
            "is_trash": e.take(as_bool, r, "istrash"),
            "is_archive": e.take(as_bool, r, "isarchive"),
            "created_at": e.take(as_timestamp_ms, r, "created"),
            "updated_at": e.take(as_timestamp_ms, r, "updated"),
            "extra": self._extra(r, self._PROJECT_FIELDS),
        }
        self._add("projects", pid, key, row, r, e)

    _MEMO_FIELDS = frozenset({"_id", "sk", "content", "created", "groupId", "comments", "isarchive"})
    _COMMENT_FIELDS = frozenset({"content", "contents", "created", "groupId"})

    def memos(self, pid: str, sk: str, key: str, r: Mapping[str, Any]) -> None:
        e = FieldIssues()
        comments = r.get("comments") or []
        if not isinstance(comments, list):
            e.add("comments", "expected an array", comments)
            comments = None
        row = {
            "sk": sk,
            "content_html": e.take(as_text, r, "content"),
            "created_at": e.take(as_timestamp_ms, r, "created"),
            "group_id": e.take(as_text, r, "groupId"),
            "is_archive": e.take(as_bool, r, "isarchive"),
            "comment_count": None if comments is None else len(comments),
            "extra": self._extra(r, self._MEMO_FIELDS),
        }
        self._add("memos", pid, key, row, r, e)
        for position, comment in enumerate(comments or ()):
            self.comment(pid, sk, position, comment)

    def comment(self, pid: str, memo_sk: str, position: int, c: Any) -> None:
        key = f"{pid}/{memo_sk}/comments/{position}"
        if not _is_object(c):
            self.batch.reject("memo_comments", pid, key, [f"comment is a {type(c).__name__}, not an object"], c, self.redact)
            return
        e = FieldIssues()
        # The table calls the text `contents`, the example `content`: take whichever is there.
        text_field = "content" if c.get("content") is not None else "contents"
        row = {
            "memo_sk": memo_sk,
            "position": position,
            "content_html": e.take(as_text, c, text_field),
            "created_at": e.take(as_timestamp_ms, c, "created"),
            "group_id": e.take(as_text, c, "groupId"),
            "extra": self._extra(c, self._COMMENT_FIELDS),
        }
        self._add("memo_comments", pid, key, row, c, e)

    _ATTACHMENT_FIELDS = frozenset({"_id", "sk", "filetype", "name", "size", "created", "downloadLink"})

    def attachments(self, pid: str, sk: str, key: str, r: Mapping[str, Any]) -> None:
        e = FieldIssues()
        row = {
            "sk": sk,
            "file_type": e.take(as_text, r, "filetype"),
            "name": e.take(as_text, r, "name"),
            "size_bytes": e.take(as_int, r, "size"),
            "created_at": e.take(as_timestamp_ms, r, "created"),
            "extra": self._extra(r, self._ATTACHMENT_FIELDS),
        }
        self._add("attachments", pid, key, row, r, e)

    _HISTORY_FIELDS = frozenset({"_id", "sk", "updateType", "created", "data"})

    def histories(self, pid: str, sk: str, key: str, r: Mapping[str, Any]) -> None:
        e = FieldIssues()
        row = {
            "sk": sk,
            "update_type": e.take(as_text, r, "updateType"),
            "created_at": e.take(as_timestamp_ms, r, "created"),
            "data": self._raw_json(r.get("data")),
            "extra": self._extra(r, self._HISTORY_FIELDS),
        }
        self._add("histories", pid, key, row, r, e)

    _ORDER_FIELDS = frozenset({
        "_id", "sk", "ownerGroupId", "labId", "status", "statusName", "statusType", "product",
        "patientId", "subject", "memo", "medicalRecords", "treatments", "workflow", "created", "updated",
    })
    _PRODUCT_FIELDS = frozenset({"productname", "price", "currency", "discount"})

    def orders(self, pid: str, sk: str, key: str, r: Mapping[str, Any]) -> None:
        e = FieldIssues()
        product = e.nested(r, "product")
        unmodelled_product = {k: v for k, v in product.items() if k not in self._PRODUCT_FIELDS}
        row = {
            "sk": sk,
            # An order id is `<project id>-<created ts>` (the ts of its sk).
            "order_id": f"{pid}-{sk.split(':', 1)[1]}",
            "owner_group_id": e.take(as_text, r, "ownerGroupId"),
            "lab_id": e.take(as_text, r, "labId"),
            "status": e.take(as_text, r, "status"),
            "status_name": e.take(as_text, r, "statusName"),
            "status_type": e.take(as_text, r, "statusType"),
            "product_name": e.take(as_text, product, "productname", path="product.productname"),
            "product_price": e.take(as_float, product, "price", path="product.price"),
            "product_currency": e.take(as_text, product, "currency", path="product.currency"),
            "product_discount": e.take(as_text, product, "discount", path="product.discount"),
            **self._subject(r, e),
            "memo": e.take(as_text, r, "memo"),
            "medical_records": self._raw_json(r.get("medicalRecords")),
            "treatments": self._raw_json(r.get("treatments")),
            "workflow": self._raw_json(r.get("workflow")),
            "created_at": e.take(as_timestamp_ms, r, "created"),
            "updated_at": e.take(as_timestamp_ms, r, "updated"),
            "extra": self._extra(r, self._ORDER_FIELDS, product=unmodelled_product),
        }
        self._add("orders", pid, key, row, r, e)

    _GROUP_FIELDS = frozenset({"_id", "sk", "group_id", "name", "patientId"})

    def groups(self, pid: str, sk: str, key: str, r: Mapping[str, Any]) -> None:
        e = FieldIssues()
        patient_id = _patient_id(r, e)
        row = {
            "sk": sk,
            "group_id": e.take(as_text, r, "group_id"),
            "is_owner": sk == OWNER_GROUP_SK,
            "name": e.take(as_text, r, "name"),
            "patient_pseudonym": self.pseudonyms.pseudonym(patient_id),
            "extra": self._extra(r, self._GROUP_FIELDS),
        }
        self._add("groups", pid, key, row, r, e)

    def other_records(self, pid: str, sk: str, key: str, r: Mapping[str, Any]) -> None:
        row = {"sk": sk, "kind": sk.split(":", 1)[0], "record": as_json(self.redact(dict(r)))}
        self._add("other_records", pid, key, row, r, [])

    _FILE_FIELDS = frozenset({"filetype", "name", "size", "downloadLink", "downloadExpired"})

    def file(self, pid: str, position: int, f: Any) -> None:
        if not _is_object(f):
            self.batch.reject("files", pid, f"{pid}/files/{position}", [f"file is a {type(f).__name__}, not an object"], f, self.redact)
            return
        e = FieldIssues()
        row = {
            "file_type": e.take(as_text, f, "filetype"),
            "name": e.take(as_text, f, "name"),
            "size_bytes": e.take(as_int, f, "size"),
            # The signed link is a credential: only its expiry is kept.
            "download_expires_at": e.take(as_timestamp_ms, f, "downloadExpired"),
            "extra": self._extra(f, self._FILE_FIELDS),
        }
        key = f"{pid}/files/{row['file_type']}/{row['name']}"
        self._add("files", pid, key, row, f, e)


def transform_projects(
    fetched: Iterable[FetchedProject], *, account: str, pseudonyms: Pseudonymizer
) -> TableBatch:
    """Rows for every RAYTeams table from a batch of fetched projects."""
    transform = _ProjectTransform(account, pseudonyms)
    for project in fetched:
        transform.project(project)
    return transform.batch
