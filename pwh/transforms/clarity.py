"""Clarity LIMS projects (parsed XML, text as sent) → typed rows.

Pure: parsed projects in, a :class:`TableBatch` out. A project whose own fields cannot
be read (a date that is not a date) is rejected with every reason; its UDFs, files and
external ids still load. A UDF whose text does not parse as its declared type is *not*
rejected: it keeps its text, leaves the typed columns NULL and says why in
``parse_error`` (counted in the batch's ``udf_parse_errors``). Nothing is dropped silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from pwh.schemas import clarity as tables
from pwh.schemas.rows import dimension_unit
from pwh.transforms.coerce import CoercionError, FieldIssues, as_date, as_float, as_json
from pwh.transforms.frames import TableBatch
from pwh.transforms.redact import redact_unknown_source

log = logging.getLogger("pwh.clarity")

_UDF_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Types whose value is text by definition: nothing to parse.
_TEXT_TYPES = frozenset({"String", "Text", "URI"})


@dataclass(frozen=True)
class FetchedProject:
    """One project: its list entry and its parsed detail (``pwh.sources.clarity.client.parse_project``)."""

    limsid: str
    listed: Mapping[str, Any] | None
    project: Mapping[str, Any]


@dataclass(frozen=True)
class TypedValue:
    number: float | None = None
    boolean: bool | None = None
    day: date | None = None
    error: str | None = None


def typed_udf_value(declared_type: str | None, text: str | None) -> TypedValue:
    """The typed value of a UDF's text under its declared type, or why there is none."""
    if text is None:
        return TypedValue()
    value = text.strip()
    if declared_type in _TEXT_TYPES:
        return TypedValue()
    if declared_type == "Numeric":
        try:
            return TypedValue(number=as_float(value, "value"))
        except CoercionError:
            return TypedValue(error=f"Numeric UDF text {_short(text)} is not a finite decimal number")
    if declared_type == "Boolean":
        if value.lower() in ("true", "false"):
            return TypedValue(boolean=value.lower() == "true")
        return TypedValue(error=f"Boolean UDF text {_short(text)} is not true or false")
    if declared_type == "Date":
        if _UDF_DATE.match(value):
            try:
                return TypedValue(day=date.fromisoformat(value))
            except ValueError:
                pass
        return TypedValue(error=f"Date UDF text {_short(text)} is not a date YYYY-MM-DD")
    if declared_type is None:
        return TypedValue(error="UDF has no declared type")
    return TypedValue(error=f"unknown UDF type {_short(declared_type)}")


def _short(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:37] + "...")


def last_segment(uri: str | None) -> str | None:
    """``https://host/api/v2/researchers/5`` → ``5``."""
    if not uri:
        return None
    segment = urlsplit(uri).path.rstrip("/").rsplit("/", 1)[-1]
    return segment or None


class _Transform:
    def __init__(self, account: str) -> None:
        self.account = account
        self.batch = TableBatch.for_tables(tables.TABLES)
        self.udf_parse_errors = 0

    def _add(self, table: str, limsid: str, key: str, row: dict[str, Any], raw: Any, errors: list[str],
             issues: FieldIssues | None = None) -> None:
        """``errors`` reject the record (it cannot be keyed or placed); ``issues`` are
        fields loaded NULL."""
        if errors:
            self.batch.reject(table, limsid, key, errors, raw, redact_unknown_source)
            return
        row["account"] = self.account
        row["project_limsid"] = limsid
        self.batch.buffers[table].append(row, raw, limsid, key, issues or ())

    def project(self, fetched: FetchedProject) -> None:
        limsid = fetched.limsid
        p = fetched.project
        errors = []
        if p.get("limsid") not in (None, limsid):
            errors.append(f"limsid {p.get('limsid')!r} is not the project it was fetched for")
        e = FieldIssues()
        udt = p.get("udt")
        udt_fields = list(udt.get("fields", [])) if udt else []
        udfs = list(p.get("udfs", []))
        files = list(p.get("files", []))
        row = {
            "uri": p.get("uri"),
            "name": p.get("name"),
            "open_date": e.take(_day, p, "open_date", path="open-date"),
            "close_date": e.take(_day, p, "close_date", path="close-date"),
            "invoice_date": e.take(_day, p, "invoice_date", path="invoice-date"),
            "researcher_uri": p.get("researcher_uri"),
            "researcher_id": last_segment(p.get("researcher_uri")),
            "udt_name": udt.get("name") if udt else None,
            "priority": p.get("priority"),
            "udf_count": len(udt_fields) + len(udfs),
            "file_count": len(files),
            "extra": as_json(p.get("extra")) if p.get("extra") else None,
        }
        self._add("projects", limsid, limsid, row, _summary(p), errors, e)

        position = 0
        for field in udt_fields:
            self.udf(limsid, "udt", udt.get("name") if udt else None, position, field)
            position += 1
        for field in udfs:
            self.udf(limsid, "project", None, position, field)
            position += 1
        for i, file in enumerate(files):
            self.file(limsid, i, file)
        for i, external in enumerate(p.get("external_ids", [])):
            self.external_id(limsid, i, external)

    def udf(self, limsid: str, scope: str, udt_name: str | None, position: int, field: Mapping[str, Any]) -> None:
        name = field.get("name")
        declared = field.get("type")
        typed = typed_udf_value(declared, field.get("value"))
        if typed.error is not None:
            self.udf_parse_errors += 1
        errors = [] if name else ["UDF without a name attribute: it cannot be keyed"]
        row = {
            "scope": scope, "name": name, "udt_name": udt_name, "declared_type": declared,
            "unit": field.get("unit"), "value_text": field.get("value"),
            "value_number": typed.number, "value_bool": typed.boolean, "value_date": typed.day,
            "parse_error": typed.error, "position": position,
        }
        key = f"{limsid}/{scope}/{name if name else f'#{position}'}"
        self._add("project_udfs", limsid, key, row, dict(field), errors)

    def file(self, limsid: str, i: int, file: Mapping[str, Any]) -> None:
        file_limsid = file.get("limsid") or last_segment(file.get("uri"))
        errors = [] if file_limsid else ["file without a limsid or uri"]
        key = f"{limsid}/file/{file_limsid or f'#{i}'}"
        self._add("project_files", limsid, key, {"file_limsid": file_limsid, "uri": file.get("uri")}, dict(file), errors)

    def external_id(self, limsid: str, i: int, external: Mapping[str, Any]) -> None:
        ext = external.get("id")
        errors = [] if ext else ["external id without an id attribute"]
        key = f"{limsid}/externalid/{ext or f'#{i}'}"
        self._add("project_external_ids", limsid, key, {"external_id": ext, "uri": external.get("uri")},
                  dict(external), errors)


def _day(value: Any, field: str) -> date | None:
    return as_date(value.strip() if isinstance(value, str) else value, field.replace("_", "-"))


def _summary(project: Mapping[str, Any]) -> dict[str, Any]:
    """The project's own fields (without its UDF, file and id lists) for the quarantine."""
    return {k: v for k, v in project.items() if k not in ("udfs", "files", "external_ids")}


def transform_projects(fetched: Iterable[FetchedProject], *, account: str) -> tuple[TableBatch, int]:
    """Rows for every Clarity table from a batch of fetched projects, and how many UDF
    values did not parse as their declared type (kept as text)."""
    transform = _Transform(account)
    for project in fetched:
        transform.project(project)
    if transform.udf_parse_errors:
        # Per batch, at info level: the flow's summary (and the CLI) report the run's total.
        log.info(
            "%d UDF values do not parse as their declared type; kept as text "
            "(see clarity.project_udfs.parse_error)", transform.udf_parse_errors,
        )
    return transform.batch, transform.udf_parse_errors


def transform_dimensions(fetched: Mapping[str, Any], *, account: str) -> TableBatch:
    """Rows of the dimension tables of the streams in ``fetched`` (``researchers``,
    ``file_details``); only those tables have buffers (the others are left alone)."""
    streams = {"researchers": "researchers", "files": "file_details"}  # table → the stream feeding it
    batch = TableBatch.for_tables(t for t in tables.DIMENSION_TABLES if streams[t.name] in fetched)
    if "researchers" in fetched:
        _researchers(batch, fetched["researchers"], account)
    if "file_details" in fetched:
        _file_details(batch, fetched["file_details"], account)
    return batch


def _file_details(batch: TableBatch, details: Iterable[Mapping[str, Any]], account: str) -> None:
    """``clarity.files`` rows from parsed ``<file:file>`` details; one without a limsid is
    rejected (it cannot be keyed), one named twice loads once."""
    unit = dimension_unit("files")
    seen: set[str] = set()
    for position, found in enumerate(details):
        limsid = found.get("limsid")
        key = f"files/{limsid or '#' + str(position)}"
        if not limsid:
            batch.reject("files", unit, key, ["file without a limsid"], found, redact_unknown_source)
            continue
        if limsid in seen:
            continue
        seen.add(limsid)
        e = FieldIssues()
        published = found.get("is_published")
        if published not in (None, "true", "false"):
            e.add("is-published", "not true or false", published)
        attached = found.get("attached_to")
        path = urlsplit(attached).path.rstrip("/").rsplit("/", 2) if attached else []
        row = {
            "account": account, "file_limsid": limsid, "uri": found.get("uri"),
            "project_limsid": path[-1] if len(path) == 3 and path[1] == "projects" and path[-1] else None,
            "attached_to": attached, "original_name": found.get("original_name"),
            "content_location": without_credentials(found.get("content_location")),
            "is_published": None if published not in ("true", "false") else published == "true",
        }
        batch.buffers["files"].append(row, {**found, "content_location": row["content_location"]}, unit, key, e)


def without_credentials(url: str | None) -> str | None:
    """``url`` without a user name or password (``sftp://user:pw@host/…`` → ``sftp://host/…``)."""
    if not url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


def _researchers(batch: TableBatch, fetched: Mapping[str, Any], account: str) -> None:
    """``clarity.researchers`` rows from ``{"researchers": [parsed researchers], "labs":
    [lab links]}``: each researcher's names and its lab's id and name. A researcher
    without a readable id is rejected (it cannot be keyed); one named twice loads once."""
    unit = dimension_unit("researchers")
    labs = {last_segment(lab.get("uri")): lab.get("name") for lab in fetched.get("labs", [])}
    seen: set[str] = set()
    for position, researcher in enumerate(fetched.get("researchers", [])):
        uri = researcher.get("uri")
        # …/researchers/<id>: anything else names no researcher
        rid = last_segment(uri) if uri and urlsplit(uri).path.rstrip("/").rsplit("/", 2)[-2:-1] == ["researchers"] else None
        key = f"researchers/{rid if rid else '#' + str(position)}"
        if rid is None:
            batch.reject("researchers", unit, key, ["researcher uri does not end in /researchers/<id>"], researcher,
                         redact_unknown_source)
            continue
        if rid in seen:
            continue
        seen.add(rid)
        lab_id = last_segment(researcher.get("lab_uri"))
        row = {
            "account": account, "researcher_id": rid, "uri": researcher.get("uri"),
            "first_name": researcher.get("first_name"), "last_name": researcher.get("last_name"),
            "initials": researcher.get("initials"), "lab_id": lab_id, "lab_name": labs.get(lab_id) if lab_id else None,
        }
        batch.buffers["researchers"].append(row, researcher, unit, key)
