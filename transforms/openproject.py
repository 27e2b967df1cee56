"""OpenProject HAL objects → typed rows.

Pure: fetched projects in, a :class:`TableBatch` out. Links are read from ``_links``
(ids from their hrefs, titles as names); an undisclosed link
(``urn:openproject-org:api:v3:undisclosed``) is a hidden value, not an error. Every
property and link a table does not model is kept in its ``extra`` JSON; every
``customFieldN`` / ``customCommentN`` (property or link) of a project or work package
becomes a ``custom_values`` row. A record that cannot be read is rejected with every
reason; nothing is dropped silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from schemas import openproject as tables
from sources.openproject.client import UNDISCLOSED, ProjectPayload
from transforms.coerce import (
    CoercionError,
    FieldErrors,
    as_bool,
    as_date,
    as_int,
    as_iso_datetime_ms,
    as_json,
    as_text,
)
from transforms.frames import TableBatch
from transforms.redact import redact_unknown_source

log = logging.getLogger("pwh.openproject")

CUSTOM = re.compile(r"^custom(Field|Comment)([1-9]\d*)$")
_HREF_ID = re.compile(r"/([1-9]\d*)/?$")
_WORKSPACE_HREF = re.compile(r"/api/v3/(?:projects|programs|portfolios|workspaces)/([1-9]\d*)/?$")
_PRINCIPAL_TYPES = {"users": "user", "groups": "group", "placeholder_users": "placeholder_user"}


def _links(record: Mapping[str, Any], e: FieldErrors) -> Mapping[str, Any]:
    return e.nested(record, "_links")


def _link(links: Mapping[str, Any], name: str, e: FieldErrors) -> Mapping[str, Any]:
    link = links.get(name)
    if link is None or isinstance(link, Mapping):
        return link or {}
    e.append(f"_links.{name}: expected a link object, got {type(link).__name__}")
    return {}


def href_id(href: Any, field: str) -> int | None:
    """The numeric id at the end of an href; None for no href or an undisclosed one."""
    if href is None or href == UNDISCLOSED:
        return None
    if isinstance(href, str):
        match = _HREF_ID.search(href.split("?", 1)[0])
        if match:
            return int(match.group(1))
    raise CoercionError(f"{field}: href {str(href)[:80]!r} does not end in an id")


def link_id(links: Mapping[str, Any], name: str, e: FieldErrors) -> int | None:
    try:
        return href_id(_link(links, name, e).get("href"), f"_links.{name}")
    except CoercionError as exc:
        e.append(str(exc))
        return None


def link_title(links: Mapping[str, Any], name: str, e: FieldErrors) -> str | None:
    link = _link(links, name, e)
    if link.get("href") is None:
        return None
    return e.take(as_text, link, "title")


def render_value(value: Any) -> str | None:
    """The text rendering of a custom value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return as_text(value, "value")
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        if "raw" in value and "format" in value:  # Formattable
            return value.get("raw") if isinstance(value.get("raw"), str) else None
        if "href" in value:  # a link
            if value.get("href") is None:
                return None
            title = value.get("title")
            return title if isinstance(title, str) else str(value.get("href"))
        return as_json(value)
    if isinstance(value, list):
        parts = [render_value(v) for v in value]
        return ", ".join(p for p in parts if p is not None) or None
    return str(value)


class _Transform:
    def __init__(self, account: str) -> None:
        self.account = account
        self.batch = TableBatch.for_tables(tables.TABLES)
        self.foreign_work_packages = 0

    # ---------------------------------------------------------------- shared pieces
    def _add(self, table: str, pid: str, key: str, row: dict[str, Any], raw: Any, errors: list[str]) -> bool:
        if errors:
            self.batch.reject(table, pid, key, errors, raw, redact_unknown_source)
            return False
        row["account"] = self.account
        row["project_id"] = pid
        self.batch.buffers[table].append(row, raw, pid, key)
        return True

    @staticmethod
    def _extra(record: Mapping[str, Any], modelled: frozenset[str], modelled_links: frozenset[str],
               *, custom_in_table: bool = True) -> str | None:
        """Unmodelled properties and links as JSON; custom fields too unless they have
        their rows in `custom_values` (projects and work packages)."""
        def kept(key: str, known: frozenset[str]) -> bool:
            return key not in known and not (custom_in_table and CUSTOM.match(key))

        rest = {k: v for k, v in record.items() if k != "_links" and kept(k, modelled)}
        links = record.get("_links")
        if isinstance(links, Mapping):
            other = {k: v for k, v in links.items() if kept(k, modelled_links)}
            if other:
                rest["_links"] = other
        return as_json(rest) if rest else None

    def _formattable(self, record: Mapping[str, Any], name: str, e: FieldErrors) -> Mapping[str, Any]:
        return e.nested(record, name)

    def _custom_values(self, pid: str, owner_type: str, owner_id: int, record: Mapping[str, Any]) -> None:
        found: list[tuple[str, str, Any]] = []
        for name, value in record.items():
            if CUSTOM.match(name):
                found.append((name, "comment" if name.startswith("customComment") else "value", value))
        links = record.get("_links")
        if isinstance(links, Mapping):
            for name, value in links.items():
                if CUSTOM.match(name):
                    found.append((name, "link", value))
        for name, kind, value in found:
            match = CUSTOM.match(name)
            key = f"{pid}/{owner_type}/{owner_id}/{name}/{kind}"
            row = {
                "owner_type": owner_type, "owner_id": owner_id, "field": name, "kind": kind,
                "custom_field_id": int(match.group(2)),
                "value": as_json(value), "value_text": render_value(value),
            }
            self._add("custom_values", pid, key, row, {name: value}, [])

    # ---------------------------------------------------------------- one project
    _PROJECT_FIELDS = frozenset({
        "_type", "id", "identifier", "name", "active", "public", "favorited", "description",
        "statusExplanation", "createdAt", "updatedAt",
    })
    _PROJECT_LINKS = frozenset({
        "self", "status", "parent", "ancestors", "categories", "types", "versions", "workPackages", "memberships",
    })

    def project(self, fetched: ProjectPayload) -> None:
        pid = fetched.project_id
        r = fetched.project
        key = pid
        if not isinstance(r, Mapping):
            self.batch.reject("projects", pid, key, [f"project is a {type(r).__name__}, not an object"], r, redact_unknown_source)
            return
        e = FieldErrors()
        if str(r.get("id")) != pid:
            e.append(f"id {r.get('id')!r} is not the project {pid} it was fetched as")
        links = _links(r, e)
        status = _link(links, "status", e)
        status_href = status.get("href")
        parent = _link(links, "parent", e)
        parent_href = parent.get("href")
        parent_id = None
        if isinstance(parent_href, str) and parent_href != UNDISCLOSED:
            match = _WORKSPACE_HREF.search(parent_href)
            if match:
                parent_id = int(match.group(1))
            else:
                e.append(f"_links.parent: href {parent_href[:80]!r} is not a project, program or portfolio")
        ancestors = links.get("ancestors") or []
        ancestor_ids: list[int | None] = []
        if not isinstance(ancestors, list):
            e.append(f"_links.ancestors: expected an array, got {type(ancestors).__name__}")
            ancestors = []
        for position, ancestor in enumerate(ancestors):
            href = ancestor.get("href") if isinstance(ancestor, Mapping) else None
            match = _WORKSPACE_HREF.search(href) if isinstance(href, str) else None
            if href == UNDISCLOSED or match:
                ancestor_ids.append(int(match.group(1)) if match else None)
            else:
                e.append(f"_links.ancestors[{position}]: not a workspace link")
        description = self._formattable(r, "description", e)
        explanation = self._formattable(r, "statusExplanation", e)
        status_code = None
        if isinstance(status_href, str):
            status_code = status_href.rstrip("/").rsplit("/", 1)[-1]
        elif status_href is not None:
            e.append("_links.status: href is not text")
        row = {
            "workspace_type": e.take(as_text, r, "_type"),
            "identifier": e.take(as_text, r, "identifier"),
            "name": e.take(as_text, r, "name"),
            "active": e.take(as_bool, r, "active"),
            "public": e.take(as_bool, r, "public"),
            "favorited": e.take(as_bool, r, "favorited"),
            "status_code": status_code,
            "status_title": link_title(links, "status", e),
            "status_explanation_raw": e.take(as_text, explanation, "raw"),
            "parent_id": parent_id,
            "parent_title": None if parent_id is None else e.take(as_text, parent, "title"),
            "parent_undisclosed": parent_href == UNDISCLOSED,
            "ancestor_ids": as_json(ancestor_ids) if ancestor_ids else None,
            "description_format": e.take(as_text, description, "format"),
            "description_raw": e.take(as_text, description, "raw"),
            "description_html": e.take(as_text, description, "html"),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            "not_visible": as_json(sorted(fetched.not_visible)) if fetched.not_visible else None,
            "extra": self._extra(r, self._PROJECT_FIELDS, self._PROJECT_LINKS),
        }
        if self._add("projects", pid, key, row, r, e):
            self._custom_values(pid, "project", int(pid), r)
        builders = {
            "work_packages": self.work_package, "versions": self.version, "categories": self.category,
            "types": self.type_, "memberships": self.membership,
        }
        for kind, build in builders.items():
            for position, element in enumerate(fetched.linked.get(kind, [])):
                if not isinstance(element, Mapping):
                    self.batch.reject(kind, pid, f"{pid}/{kind}/#{position}",
                                      [f"element is a {type(element).__name__}, not an object"], element, redact_unknown_source)
                    continue
                e = FieldErrors()
                element_id = e.take(as_int, element, "id")
                if element_id is None and not e:
                    e.append("id: missing")
                build(pid, f"{pid}/{kind}/{element.get('id')}", element_id, element, e)

    # ---------------------------------------------------------------- linked resources
    _WP_FIELDS = frozenset({
        "_type", "id", "lockVersion", "subject", "description", "startDate", "dueDate", "date",
        "estimatedTime", "spentTime", "percentageDone", "scheduleManually", "createdAt", "updatedAt",
    })
    _WP_LINKS = frozenset({
        "self", "project", "type", "status", "priority", "author", "assignee", "responsible", "version",
        "category", "parent",
    })

    def work_package(self, pid: str, key: str, wid: int | None, r: Mapping[str, Any], e: FieldErrors) -> None:
        links = _links(r, e)
        owner = link_id(links, "project", e)
        if owner is not None and str(owner) != pid:
            # The API lists subprojects' work packages too: they load with their own project.
            self.foreign_work_packages += 1
            return
        description = self._formattable(r, "description", e)
        row = {
            "id": wid,
            "lock_version": e.take(as_int, r, "lockVersion"),
            "subject": e.take(as_text, r, "subject"),
            "type_id": link_id(links, "type", e), "type_title": link_title(links, "type", e),
            "status_id": link_id(links, "status", e), "status_title": link_title(links, "status", e),
            "priority_id": link_id(links, "priority", e), "priority_title": link_title(links, "priority", e),
            "author_id": link_id(links, "author", e),
            "assignee_id": link_id(links, "assignee", e),
            "responsible_id": link_id(links, "responsible", e),
            "version_id": link_id(links, "version", e),
            "category_id": link_id(links, "category", e),
            "parent_id": link_id(links, "parent", e),
            "description_raw": e.take(as_text, description, "raw"),
            "description_html": e.take(as_text, description, "html"),
            "start_date": e.take(as_date, r, "startDate"),
            "due_date": e.take(as_date, r, "dueDate"),
            "milestone_date": e.take(as_date, r, "date"),
            "estimated_time": e.take(as_text, r, "estimatedTime"),
            "spent_time": e.take(as_text, r, "spentTime"),
            "percentage_done": e.take(as_int, r, "percentageDone"),
            "schedule_manually": e.take(as_bool, r, "scheduleManually"),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            "extra": self._extra(r, self._WP_FIELDS, self._WP_LINKS),
        }
        if self._add("work_packages", pid, key, row, r, e):
            self._custom_values(pid, "work_package", wid, r)

    _VERSION_FIELDS = frozenset({"_type", "id", "name", "status", "sharing", "startDate", "endDate", "description",
                                 "createdAt", "updatedAt"})

    def version(self, pid: str, key: str, vid: int | None, r: Mapping[str, Any], e: FieldErrors) -> None:
        links = _links(r, e)
        description = self._formattable(r, "description", e)
        row = {
            "id": vid,
            "name": e.take(as_text, r, "name"),
            "status": e.take(as_text, r, "status"),
            "sharing": e.take(as_text, r, "sharing"),
            "start_date": e.take(as_date, r, "startDate"),
            "end_date": e.take(as_date, r, "endDate"),
            "description_raw": e.take(as_text, description, "raw"),
            "defining_project_id": link_id(links, "definingProject", e),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            # A version's own custom fields are not modelled: they stay in `extra`.
            "extra": self._extra(r, self._VERSION_FIELDS, frozenset({"self", "definingProject"}), custom_in_table=False),
        }
        self._add("versions", pid, key, row, r, e)

    def category(self, pid: str, key: str, cid: int | None, r: Mapping[str, Any], e: FieldErrors) -> None:
        links = _links(r, e)
        row = {
            "id": cid,
            "name": e.take(as_text, r, "name"),
            "default_assignee_id": link_id(links, "defaultAssignee", e),
            "default_assignee_title": link_title(links, "defaultAssignee", e),
            "extra": self._extra(r, frozenset({"_type", "id", "name"}),
                                 frozenset({"self", "project", "defaultAssignee"}), custom_in_table=False),
        }
        self._add("categories", pid, key, row, r, e)

    _TYPE_FIELDS = frozenset({"_type", "id", "name", "color", "position", "isDefault", "isMilestone",
                              "createdAt", "updatedAt"})

    def type_(self, pid: str, key: str, tid: int | None, r: Mapping[str, Any], e: FieldErrors) -> None:
        row = {
            "id": tid,
            "name": e.take(as_text, r, "name"),
            "color": e.take(as_text, r, "color"),
            "position": e.take(as_int, r, "position"),
            "is_default": e.take(as_bool, r, "isDefault"),
            "is_milestone": e.take(as_bool, r, "isMilestone"),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            "extra": self._extra(r, self._TYPE_FIELDS, frozenset({"self"}), custom_in_table=False),
        }
        self._add("types", pid, key, row, r, e)

    def membership(self, pid: str, key: str, mid: int | None, r: Mapping[str, Any], e: FieldErrors) -> None:
        links = _links(r, e)
        principal_href = _link(links, "principal", e).get("href")
        principal_type = None
        if isinstance(principal_href, str):
            segments = principal_href.rstrip("/").split("/")
            principal_type = _PRINCIPAL_TYPES.get(segments[-2] if len(segments) > 1 else "")
        roles = links.get("roles") or []
        if not isinstance(roles, list):
            e.append(f"_links.roles: expected an array, got {type(roles).__name__}")
            roles = []
        role_ids, role_titles = [], []
        for position, role in enumerate(roles):
            try:
                role_ids.append(href_id(role.get("href") if isinstance(role, Mapping) else role, f"_links.roles[{position}]"))
            except CoercionError as exc:
                e.append(str(exc))
            role_titles.append(role.get("title") if isinstance(role, Mapping) else None)
        owner = link_id(links, "project", e)
        if owner is not None and str(owner) != pid:
            e.append(f"_links.project: membership of project {owner}, listed for project {pid}")
        row = {
            "id": mid,
            "principal_type": principal_type,
            "principal_id": link_id(links, "principal", e),
            "principal_title": link_title(links, "principal", e),
            "role_ids": as_json(role_ids),
            "role_titles": as_json(role_titles),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            "extra": self._extra(r, frozenset({"_type", "id", "createdAt", "updatedAt"}),
                                 frozenset({"self", "project", "principal", "roles", "schema",
                                            "update", "updateImmediately"}), custom_in_table=False),
        }
        self._add("memberships", pid, key, row, r, e)


def transform_projects(fetched: Iterable[ProjectPayload], *, account: str) -> TableBatch:
    """Rows for every OpenProject table from a batch of fetched projects."""
    transform = _Transform(account)
    for project in fetched:
        transform.project(project)
    if transform.foreign_work_packages:
        log.info("%d work packages listed under a parent project belong to a subproject: loaded with their own project",
                 transform.foreign_work_packages)
    return transform.batch
