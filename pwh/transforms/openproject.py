"""OpenProject HAL objects → typed rows.

Pure: fetched projects in, a :class:`TableBatch` out. Links are read from ``_links``
(ids from their hrefs, titles as names); an undisclosed link
(``urn:openproject-org:api:v3:undisclosed``) is a hidden value, not an error. Every
property and link a table does not model is kept in its ``extra`` JSON; every
``customFieldN`` / ``customCommentN`` (property or link) of a project or work package
becomes a ``custom_values`` row. A field or link that cannot be read loads NULL with a
field issue and the row loads; only a record that cannot be placed (not an object, a
project answered under another id, a work package, category or membership whose
``_links.project`` cannot be read, or a category or membership naming another project)
is rejected, and one whose id cannot be read is quarantined by its schema. Nothing is
dropped silently.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pwh.schemas import openproject as tables
from pwh.schemas.rows import dimension_unit
from pwh.sources.openproject.client import UNDISCLOSED, ProjectPayload, link_href
from pwh.transforms.coerce import (
    CoercionError,
    FieldIssues,
    as_bool,
    as_date,
    as_int,
    as_iso_datetime_ms,
    as_json,
    as_json_text,
    as_text,
    describe,
)
from pwh.transforms.frames import TableBatch
from pwh.transforms.redact import redact_unknown_source

log = logging.getLogger("pwh.openproject")

# Ids have up to 18 digits, so always fit 64 bits: a longer "id" is none (a custom field
# named so stays in `extra`; an href ending so is unreadable).
CUSTOM = re.compile(r"^custom(Field|Comment)([1-9]\d{0,17})$")
_HREF_ID = re.compile(r"/([1-9]\d{0,17})/?$")
_WORKSPACE_HREF = re.compile(r"/api/v3/(?:projects|programs|portfolios|workspaces)/([1-9]\d{0,17})/?$")
_PRINCIPAL_TYPES = {"users": "user", "groups": "group", "placeholder_users": "placeholder_user"}




def href_id(href: Any, field: str) -> int | None:
    """The numeric id at the end of an href; None for no href or an undisclosed one."""
    if href is None or href == UNDISCLOSED:
        return None
    if isinstance(href, str):
        match = _HREF_ID.search(href.split("?", 1)[0])
        if match:
            return int(match.group(1))
    raise CoercionError(f"{field}: href {describe(href)} does not end in an id", "href does not end in an id")


def workspace_id(href: Any, field: str) -> int | None:
    """The id of the project, program or portfolio an href names; None for no href or an
    undisclosed one."""
    if href is None or href == UNDISCLOSED:
        return None
    match = _WORKSPACE_HREF.search(href) if isinstance(href, str) else None
    if match:
        return int(match.group(1))
    raise CoercionError(f"{field}: href {describe(href)} is not a project, program or portfolio",
                        "href is not a project, program or portfolio")


def last_segment(href: Any, field: str) -> str | None:
    """The last path segment of an href (a project status's code)."""
    if href is None or isinstance(href, str):
        return href and href.rstrip("/").rsplit("/", 1)[-1]
    raise CoercionError(f"{field}: href {describe(href)} is not text", "href is not text")


def read_link(link: Any, path: str, issues: FieldIssues, read_href: Callable[[Any, str], Any] = href_id,
              *, titled: bool = True) -> tuple[Any, str | None]:
    """A link's href as ``read_href`` reads it, and (``titled``) its title while it has
    an href. A link that is not an object, or whose href cannot be read, is one field
    issue and NULL as a whole: which resource it names is unknown, so no title is kept."""
    if link is None:
        return None, None
    if not isinstance(link, Mapping):
        issues.add(path, "expected a link object", link)
        return None, None
    href = link.get("href")
    try:
        value = read_href(href, path)
    except CoercionError as exc:
        issues.add(path, exc.reason, href)
        return None, None
    if not titled or href is None:
        return value, None
    return value, issues.take(as_text, link, "title", path=f"{path}.title")


def link_id(links: Mapping[str, Any], name: str, issues: FieldIssues) -> int | None:
    """The id of ``_links.<name>`` (its title is not modelled)."""
    link_id: int | None = read_link(links.get(name), f"_links.{name}", issues, titled=False)[0]
    return link_id


def linked(links: Mapping[str, Any], name: str, issues: FieldIssues) -> tuple[int | None, str | None]:
    """The id and title of ``_links.<name>``."""
    return read_link(links.get(name), f"_links.{name}", issues)


def owner_project(record: Mapping[str, Any]) -> int | None:
    """The project a resource's ``_links.project`` names (None when none); a link that
    cannot be read raises :class:`CoercionError`, as the record cannot be placed."""
    links = record.get("_links")
    link = links.get("project") if isinstance(links, Mapping) else None
    if link is None:
        return None
    if not isinstance(link, Mapping):
        raise CoercionError(f"_links.project: expected a link object, got {describe(link)}")
    return href_id(link.get("href"), "_links.project")


def require_this_project(record: Mapping[str, Any], pid: str, what: str) -> None:
    """Raise :class:`CoercionError` when a record listed for project ``pid`` cannot be
    placed: its ``_links.project`` cannot be read or names another project."""
    owner = owner_project(record)
    if owner is not None and str(owner) != pid:
        raise CoercionError(f"_links.project: {what} of project {owner}, listed for project {pid}")


def render_value(value: Any, field: str = "value") -> str | None:
    """The text rendering of a custom value."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return as_text(value, field)
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
        parts = [render_value(v, field) for v in value]
        return ", ".join(p for p in parts if p is not None) or None
    return str(value)


class _Transform:
    def __init__(self, account: str) -> None:
        self.account = account
        self.batch = TableBatch.for_tables(tables.TABLES)
        self.foreign_work_packages = 0

    # ---------------------------------------------------------------- shared pieces
    def _add(self, table: str, pid: str, key: str, row: dict[str, Any], raw: Any, issues: FieldIssues) -> None:
        row["account"] = self.account
        row["project_id"] = pid
        self.batch.buffers[table].append(row, raw, pid, key, issues)

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

    def _custom_values(self, pid: str, owner_type: str, owner_id: int, record: Mapping[str, Any]) -> None:
        # (name, kind, the object holding it, the field's path for an issue)
        found: list[tuple[str, str, Mapping[str, Any], str]] = [
            (name, "comment" if name.startswith("customComment") else "value", record, name)
            for name in record if CUSTOM.match(name)
        ]
        links = record.get("_links")
        if isinstance(links, Mapping):
            found += [(name, "link", links, f"_links.{name}") for name in links if CUSTOM.match(name)]
        for name, kind, holder, path in found:
            custom = CUSTOM.match(name)
            assert custom is not None  # found holds the names CUSTOM matches
            e = FieldIssues()
            value = e.take(as_json_text, holder, name, path=path)
            row = {
                "owner_type": owner_type, "owner_id": owner_id, "field": name, "kind": kind,
                "custom_field_id": int(custom.group(2)),
                # A value that cannot be stored cannot be rendered either (and is one issue).
                "value": value, "value_text": None if e else e.take(render_value, holder, name, path=path),
            }
            self._add("custom_values", pid, f"{pid}/{owner_type}/{owner_id}/{name}/{kind}", row, {name: holder[name]}, e)

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
        if not isinstance(r, Mapping):
            self.batch.reject("projects", pid, pid, [f"project is a {type(r).__name__}, not an object"], r, redact_unknown_source)
            return
        if str(r.get("id")) != pid:
            self.batch.reject("projects", pid, pid, [f"id {describe(r.get('id'))} is not the project {pid} it was fetched as"],
                              r, redact_unknown_source)
            return
        e = FieldIssues()
        links = e.nested(r, "_links")
        status_code, status_title = read_link(links.get("status"), "_links.status", e, last_segment)
        parent = links.get("parent")
        parent_id, parent_title = read_link(parent, "_links.parent", e, workspace_id)
        description = e.nested(r, "description")
        explanation = e.nested(r, "statusExplanation")
        ancestor_ids = self._ancestor_ids(links, e)
        row = {
            "workspace_type": e.take(as_text, r, "_type"),
            "identifier": e.take(as_text, r, "identifier"),
            "name": e.take(as_text, r, "name"),
            "active": e.take(as_bool, r, "active"),
            "public": e.take(as_bool, r, "public"),
            "favorited": e.take(as_bool, r, "favorited"),
            "status_code": status_code,
            "status_title": status_title,
            "status_explanation_raw": e.take(as_text, explanation, "raw", path="statusExplanation.raw"),
            "parent_id": parent_id,
            # An undisclosed parent's title is a placeholder ("Undisclosed - …"), not a name.
            "parent_title": None if parent_id is None else parent_title,
            "parent_undisclosed": isinstance(parent, Mapping) and parent.get("href") == UNDISCLOSED,
            "ancestor_ids": as_json(ancestor_ids) if ancestor_ids else None,
            "description_format": e.take(as_text, description, "format", path="description.format"),
            "description_raw": e.take(as_text, description, "raw", path="description.raw"),
            "description_html": e.take(as_text, description, "html", path="description.html"),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            "not_visible": as_json(sorted(fetched.not_visible)) if fetched.not_visible else None,
            "extra": self._extra(r, self._PROJECT_FIELDS, self._PROJECT_LINKS),
        }
        self._add("projects", pid, pid, row, r, e)
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
                key = f"{pid}/{kind}/{element.get('id')}"
                # An id that cannot be read loads NULL here and the schema quarantines the
                # row (its issues joining the reasons), as a row whose key is unknown.
                e = FieldIssues()
                element_id = e.take(as_int, element, "id")
                try:
                    build(pid, key, element_id, element, e)
                except CoercionError as exc:  # the record cannot be placed in this project
                    self.batch.reject(kind, pid, key, [str(exc), *map(str, e)], element, redact_unknown_source)

    @staticmethod
    def _ancestor_ids(links: Mapping[str, Any], e: FieldIssues) -> list[int | None] | None:
        """The ancestors' ids, root first; an undisclosed ancestor, or one that cannot be
        read (with its issue), is None in its place, so the depth stays right."""
        ancestors = links.get("ancestors")
        if ancestors is None:
            return None
        if not isinstance(ancestors, list):
            e.add("_links.ancestors", "expected an array", ancestors)
            return None
        ids = []
        for position, ancestor in enumerate(ancestors):
            path = f"_links.ancestors[{position}]"
            if isinstance(ancestor, Mapping) and ancestor.get("href") is None:
                e.add(path, "link has no href", ancestor)
            ids.append(read_link(ancestor, path, e, workspace_id, titled=False)[0])
        return ids

    # ---------------------------------------------------------------- linked resources
    _WP_FIELDS = frozenset({
        "_type", "id", "lockVersion", "subject", "description", "startDate", "dueDate", "date",
        "estimatedTime", "spentTime", "percentageDone", "scheduleManually", "createdAt", "updatedAt",
    })
    _WP_LINKS = frozenset({
        "self", "project", "type", "status", "priority", "author", "assignee", "responsible", "version",
        "category", "parent",
    })

    def work_package(self, pid: str, key: str, wid: int | None, r: Mapping[str, Any], e: FieldIssues) -> None:
        owner = owner_project(r)
        if owner is not None and str(owner) != pid:
            # The API lists subprojects' work packages too: they load with their own project.
            self.foreign_work_packages += 1
            return
        links = e.nested(r, "_links")
        description = e.nested(r, "description")
        type_id, type_title = linked(links, "type", e)
        status_id, status_title = linked(links, "status", e)
        priority_id, priority_title = linked(links, "priority", e)
        row = {
            "id": wid,
            "lock_version": e.take(as_int, r, "lockVersion"),
            "subject": e.take(as_text, r, "subject"),
            "type_id": type_id, "type_title": type_title,
            "status_id": status_id, "status_title": status_title,
            "priority_id": priority_id, "priority_title": priority_title,
            "author_id": link_id(links, "author", e),
            "assignee_id": link_id(links, "assignee", e),
            "responsible_id": link_id(links, "responsible", e),
            "version_id": link_id(links, "version", e),
            "category_id": link_id(links, "category", e),
            "parent_id": link_id(links, "parent", e),
            "description_raw": e.take(as_text, description, "raw", path="description.raw"),
            "description_html": e.take(as_text, description, "html", path="description.html"),
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
        self._add("work_packages", pid, key, row, r, e)
        if wid is not None:  # without its id a work package is quarantined, its custom values inside it
            self._custom_values(pid, "work_package", wid, r)

    _VERSION_FIELDS = frozenset({"_type", "id", "name", "status", "sharing", "startDate", "endDate", "description",
                                 "createdAt", "updatedAt"})

    def version(self, pid: str, key: str, vid: int | None, r: Mapping[str, Any], e: FieldIssues) -> None:
        links = e.nested(r, "_links")
        description = e.nested(r, "description")
        row = {
            "id": vid,
            "name": e.take(as_text, r, "name"),
            "status": e.take(as_text, r, "status"),
            "sharing": e.take(as_text, r, "sharing"),
            "start_date": e.take(as_date, r, "startDate"),
            "end_date": e.take(as_date, r, "endDate"),
            "description_raw": e.take(as_text, description, "raw", path="description.raw"),
            # A shared version is defined by another project: a value, not where it belongs.
            "defining_project_id": link_id(links, "definingProject", e),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            # A version's own custom fields are not modelled: they stay in `extra`.
            "extra": self._extra(r, self._VERSION_FIELDS, frozenset({"self", "definingProject"}), custom_in_table=False),
        }
        self._add("versions", pid, key, row, r, e)

    def category(self, pid: str, key: str, cid: int | None, r: Mapping[str, Any], e: FieldIssues) -> None:
        require_this_project(r, pid, "category")
        links = e.nested(r, "_links")
        assignee_id, assignee_title = linked(links, "defaultAssignee", e)
        row = {
            "id": cid,
            "name": e.take(as_text, r, "name"),
            "default_assignee_id": assignee_id,
            "default_assignee_title": assignee_title,
            "extra": self._extra(r, frozenset({"_type", "id", "name"}),
                                 frozenset({"self", "project", "defaultAssignee"}), custom_in_table=False),
        }
        self._add("categories", pid, key, row, r, e)

    _TYPE_FIELDS = frozenset({"_type", "id", "name", "color", "position", "isDefault", "isMilestone",
                              "createdAt", "updatedAt"})

    def type_(self, pid: str, key: str, tid: int | None, r: Mapping[str, Any], e: FieldIssues) -> None:
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

    def membership(self, pid: str, key: str, mid: int | None, r: Mapping[str, Any], e: FieldIssues) -> None:
        require_this_project(r, pid, "membership")
        links = e.nested(r, "_links")
        principal_id, principal_title = linked(links, "principal", e)
        role_ids, role_titles = self._roles(links, e)
        row = {
            "id": mid,
            # An id was read, so the link and its href are there.
            "principal_type": _principal_type(links["principal"]["href"]) if principal_id is not None else None,
            "principal_id": principal_id,
            "principal_title": principal_title,
            "role_ids": None if role_ids is None else as_json(role_ids),
            "role_titles": None if role_titles is None else as_json(role_titles),
            "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
            "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            "extra": self._extra(r, frozenset({"_type", "id", "createdAt", "updatedAt"}),
                                 frozenset({"self", "project", "principal", "roles", "schema",
                                            "update", "updateImmediately"}), custom_in_table=False),
        }
        self._add("memberships", pid, key, row, r, e)

    @staticmethod
    def _roles(links: Mapping[str, Any], e: FieldIssues) -> tuple[list[int | None] | None, list[str | None] | None]:
        """The roles' ids and titles, position for position. A role whose href cannot be
        read is None in both (which role it is is unknown, so its title is no role's); a
        title that cannot be read is None in the titles alone. Both arrays keep every role."""
        roles = links.get("roles")
        if roles is None:
            return [], []
        if not isinstance(roles, list):
            e.add("_links.roles", "expected an array", roles)
            return None, None
        pairs = [
            read_link(role if isinstance(role, Mapping) else {"href": role}, f"_links.roles[{position}]", e)
            for position, role in enumerate(roles)  # a bare href string is a link without a title
        ]
        return [role_id for role_id, _ in pairs], [title for _, title in pairs]


def _principal_type(href: str) -> str | None:
    segments = href.rstrip("/").split("/")
    return _PRINCIPAL_TYPES.get(segments[-2] if len(segments) > 1 else "")


def transform_projects(fetched: Iterable[ProjectPayload], *, account: str) -> TableBatch:
    """Rows for every OpenProject table from a batch of fetched projects."""
    transform = _Transform(account)
    for project in fetched:
        transform.project(project)
    if transform.foreign_work_packages:
        log.info("%d work packages listed under a parent project belong to a subproject: loaded with their own project",
                 transform.foreign_work_packages)
    return transform.batch


# ---------------------------------------------------------------------------- dimensions
_SCHEMA_ID = re.compile(r"/work_packages/schemas/(\d{1,18}-\d{1,18})/?$")
_CUSTOM_FIELD_PROPERTIES = frozenset({"name", "type", "location", "required", "visibility"})
_STATUS_FIELDS = frozenset({"_type", "id", "name", "isClosed", "isDefault", "isReadonly", "defaultDoneRatio",
                            "position", "color"})
# What is kept of a user, raw rejected records included: never e-mail, login, avatar,
# first/last name or any other personal property the API sends (docs/openproject.md).
_USER_FIELDS = ("id", "name", "status", "admin", "createdAt", "updatedAt")


def work_package_schema_id(work_package: Any) -> str | None:
    """``<project id>-<type id>`` of the schema a work package links (None when it names none)."""
    links = work_package.get("_links") if isinstance(work_package, Mapping) else None
    href = link_href(links, "schema")
    match = _SCHEMA_ID.search(href) if href else None
    return match.group(1) if match else None


class _Dimensions:
    def __init__(self, account: str, streams: Iterable[str]) -> None:
        self.account = account
        self.batch = TableBatch.for_tables(t for t in tables.DIMENSION_TABLES if t.name in set(streams))

    def _add(self, table: str, key: str, row: dict[str, Any], raw: Any, issues: FieldIssues) -> None:
        row["account"] = self.account
        self.batch.buffers[table].append(row, raw, dimension_unit(table), f"{table}/{key}", issues)

    def _records(self, table: str, records: Any) -> Iterable[tuple[Mapping[str, Any], int | None, FieldIssues]]:
        """The objects of a collection with their id read; anything else is rejected."""
        for position, record in enumerate(records if isinstance(records, list) else [records]):
            if not isinstance(record, Mapping):
                self.batch.reject(table, dimension_unit(table), f"{table}/#{position}",
                                  [f"element is a {type(record).__name__}, not an object"], record,
                                  redact_unknown_source)
                continue
            e = FieldIssues()
            yield record, e.take(as_int, record, "id"), e

    def custom_fields(self, fetched: Mapping[str, Any]) -> None:
        """Definitions from the project schema, then the work-package schemas; a field in
        several schemas (every project/type pair shows it) is one row, its first."""
        seen: set[int] = set()
        sources = [("project", fetched.get("project"))] + [("work_package", s) for s in fetched.get("work_package", [])]
        for applies_to, schema in sources:
            if not isinstance(schema, Mapping):
                self.batch.reject("custom_fields", dimension_unit("custom_fields"), f"custom_fields/{applies_to}-schema",
                                  [f"{applies_to} schema is a {type(schema).__name__}, not an object"], schema,
                                  redact_unknown_source)
                continue
            for name, definition in schema.items():
                match = CUSTOM.match(name)
                if not match or match.group(1) != "Field" or int(match.group(2)) in seen:
                    continue
                field_id = int(match.group(2))
                seen.add(field_id)
                e = FieldIssues()
                if not isinstance(definition, Mapping):
                    e.add(name, "expected an object", definition)
                    definition = {}
                # `_embedded` (allowed values, which may embed users) is not kept.
                rest = {k: v for k, v in definition.items() if k not in _CUSTOM_FIELD_PROPERTIES and k != "_embedded"}
                row = {
                    "id": field_id, "applies_to": applies_to,
                    "name": e.take(as_text, definition, "name", path=f"{name}.name"),
                    "field_type": e.take(as_text, definition, "type", path=f"{name}.type"),
                    "location": e.take(as_text, definition, "location", path=f"{name}.location"),
                    "required": e.take(as_bool, definition, "required", path=f"{name}.required"),
                    "visibility": e.take(as_text, definition, "visibility", path=f"{name}.visibility"),
                    "extra": as_json(rest) if rest else None,
                }
                self._add("custom_fields", str(field_id), row, {name: definition}, e)

    def statuses(self, records: Any) -> None:
        for r, sid, e in self._records("statuses", records):
            row = {
                "id": sid,
                "name": e.take(as_text, r, "name"),
                "is_closed": e.take(as_bool, r, "isClosed"),
                "is_default": e.take(as_bool, r, "isDefault"),
                "is_readonly": e.take(as_bool, r, "isReadonly"),
                "default_done_ratio": e.take(as_int, r, "defaultDoneRatio"),
                "position": e.take(as_int, r, "position"),
                "color": e.take(as_text, r, "color"),
                "extra": _Transform._extra(r, _STATUS_FIELDS, frozenset({"self"}), custom_in_table=False),
            }
            self._add("statuses", str(r.get("id")), row, r, e)

    def users(self, records: Any) -> None:
        for r, uid, e in self._records("users", records):
            kept = {k: r[k] for k in _USER_FIELDS if k in r}
            row = {
                "id": uid,
                "name": e.take(as_text, r, "name"),
                "status": e.take(as_text, r, "status"),
                "admin": e.take(as_bool, r, "admin"),
                "created_at": e.take(as_iso_datetime_ms, r, "createdAt"),
                "updated_at": e.take(as_iso_datetime_ms, r, "updatedAt"),
            }
            self._add("users", str(r.get("id")), row, kept, e)


def transform_dimensions(fetched: Mapping[str, Any], *, account: str) -> TableBatch:
    """Rows of the dimension tables of the streams in ``fetched`` (stream → raw answer:
    ``custom_fields``: ``{"project": schema, "work_package": [schemas]}``; ``statuses``
    and ``users``: their collections' elements). Only those tables have buffers: a table
    without one is not touched by the load."""
    dimensions = _Dimensions(account, fetched)
    for name, build in (("custom_fields", dimensions.custom_fields), ("statuses", dimensions.statuses),
                        ("users", dimensions.users)):
        if name in fetched:
            build(fetched[name])
    return dimensions.batch
