"""Incoplax projects → rows of ``incoplax.projects``.

Pure: fetched projects in, a :class:`TableBatch` out. Time stamps are ISO 8601 strings
with an offset (``2019-08-27T13:40:02.87Z``); a field that cannot be read loads NULL
with a field issue, and only a project that is not an object or names another id is
rejected; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pwh.schemas import incoplax as tables
from pwh.transforms.coerce import (
    FieldIssues,
    as_iso_datetime_ms,
    as_json,
    as_text,
    describe,
)
from pwh.transforms.frames import TableBatch
from pwh.transforms.redact import redact_unknown_source

_TOP_FIELDS = frozenset({"id", "code", "name", "opts", "ext"})
_OPTS_FIELDS = frozenset({"title", "comment"})
_EXT_FIELDS = frozenset({"ct", "lwt"})


@dataclass(frozen=True)
class FetchedProject:
    """One project as the API gave it (nested form), and the id it was fetched for."""

    project_id: str
    record: Any


def transform_projects(fetched: Iterable[FetchedProject], *, account: str) -> TableBatch:
    batch = TableBatch.for_tables(tables.TABLES)
    for project in fetched:
        _project(batch, account, project)
    return batch


def _project(batch: TableBatch, account: str, fetched: FetchedProject) -> None:
    pid, r = fetched.project_id, fetched.record
    if not isinstance(r, Mapping):
        batch.reject("projects", pid, pid, [f"project is a {type(r).__name__}, not an object"], r, redact_unknown_source)
        return
    if r.get("id") != pid:
        batch.reject("projects", pid, pid, [f"id {describe(r.get('id'))} is not the project it was fetched for"],
                     r, redact_unknown_source)
        return
    e = FieldIssues()
    opts = e.nested(r, "opts")
    ext = e.nested(r, "ext")
    row = {
        "account": account,
        "project_id": pid,
        "code": e.take(as_text, r, "code"),
        "name": e.take(as_text, r, "name"),
        "title": e.take(as_text, opts, "title", path="opts.title"),
        "comment": e.take(as_text, opts, "comment", path="opts.comment"),
        "created_at": e.take(as_iso_datetime_ms, ext, "ct", path="ext.ct"),
        "last_write_at": e.take(as_iso_datetime_ms, ext, "lwt", path="ext.lwt"),
        "extra": _extra(r, opts, ext),
    }
    batch.buffers["projects"].append(row, r, pid, pid, e)


def _extra(r: Mapping[str, Any], opts: Mapping[str, Any], ext: Mapping[str, Any]) -> str | None:
    rest: dict[str, Any] = {k: v for k, v in r.items() if k not in _TOP_FIELDS}
    more_opts = {k: v for k, v in opts.items() if k not in _OPTS_FIELDS}
    more_ext = {k: v for k, v in ext.items() if k not in _EXT_FIELDS}
    if more_opts:
        rest["opts"] = more_opts
    if more_ext:
        rest["ext"] = more_ext
    return as_json(rest) if rest else None
