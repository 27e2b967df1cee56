"""OpenProject API v3 client: HAL+JSON over the shared :class:`HttpClient`.

- ``Accept: application/hal+json``; the API key as basic auth ``apikey:<key>``.
- Collections are walked through ``_links.nextByOffset`` (``sources.paging``) with a
  configurable ``pageSize``; abbreviated elements (``_abbreviated``) are completed from
  ``/api/v3/projects/{id}``.
- Error answers (``{"_type": "Error", "errorIdentifier": "urn:…:errors:<Name>"}``) become
  typed errors; a 404 is "not visible to this key" (the API answers 404, not 403, so a
  client cannot probe for existence). A linked resource answering 404 is recorded on the
  project, not fatal.
- Hrefs are host-relative (``/api/v3/…``) and resolved against the base URL; a link to
  another origin is refused, so the key is never sent elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
from yarl import URL

from pwh.errors import PwhError
from pwh.sources.errors import ApiError, NotFoundError, TransientError, safe_token
from pwh.sources.http import (
    Answer,
    HttpClient,
    HttpSettings,
    SourceClient,
    StaticHeaders,
    decode_json,
    describe_origin,
    loads_json,
)
from pwh.sources.paging import collect_pages
from pwh.sources.stream_calls import FetchStream, direct

TOKEN_VARIABLE = "OPENPROJECT_API_KEY"
MEDIA_TYPE = "application/hal+json"
API = "api/v3"  # relative to the base URL (an install may live under a subpath)
UNDISCLOSED = "urn:openproject-org:api:v3:undisclosed"
ERROR_PREFIX = "urn:openproject-org:api:v3:errors:"
DEFAULT_PAGE_SIZE = 100
# Ids a work-package schema request filters on: keeps its URL well under common 8 KB limits.
SCHEMA_IDS_A_REQUEST = 100

# Linked collections fanned out per project: name → (the project's `_links` key, the
# documented path when the link is absent). Work packages: `filters=[]`, because without
# it the API lists open work packages only.
LINKED: dict[str, tuple[str, str]] = {
    "work_packages": ("workPackages", API + "/projects/{id}/work_packages"),
    "versions": ("versions", API + "/projects/{id}/versions"),
    "categories": ("categories", API + "/projects/{id}/categories"),
    "types": ("types", API + "/projects/{id}/types"),
    "memberships": ("memberships", API + '/memberships?filters=[{{"project":{{"operator":"=","values":["{id}"]}}}}]'),
}
EXTRA_QUERY: dict[str, dict[str, str]] = {
    "work_packages": {"filters": "[]", "sortBy": '[["id","asc"]]'},
    "memberships": {"sortBy": '[["id","asc"]]'},
}


class FiltersError(PwhError, ValueError):
    """The ``filters`` option is not a JSON array of filter objects."""


def check_filters(filters: str | None) -> str | None:
    """``filters`` as the API takes it (JSON text of an array of objects), or None."""
    if filters is None or not filters.strip():
        return None
    try:
        parsed = orjson.loads(filters)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, list) or not all(isinstance(f, dict) for f in parsed):
        raise FiltersError('filters must be a JSON array of filter objects, e.g. '
                           '[{"ancestor":{"operator":"=","values":["12"]}}]')
    return orjson.dumps(parsed).decode()


def subtree_filters(filters: str | None, ancestor: int | None) -> str | None:
    """``filters`` (checked JSON text, or None) with ``ancestor = <id>`` added when given."""
    if ancestor is None:
        return filters
    chosen = orjson.loads(filters) if filters else []
    return orjson.dumps([*chosen, {"ancestor": {"operator": "=", "values": [str(ancestor)]}}]).decode()


class NotVisibleError(NotFoundError):
    """404 (``errors:NotFound``): the resource does not exist or this key may not see it."""


class OpenProjectApiError(ApiError):
    """Any other error answer; ``code`` is the error name (``MissingPermission``, ``InvalidQuery``…)."""


def error_name(identifier: Any) -> str | None:
    if isinstance(identifier, str) and identifier.startswith(ERROR_PREFIX):
        return identifier[len(ERROR_PREFIX):]
    return identifier if isinstance(identifier, str) else None


def read_hal(answer: Answer) -> dict[str, Any]:
    """A HAL object from an answer; error answers (by status or ``_type: Error``) raise
    typed errors carrying the status and the error's name, never its ``message`` (free
    text a server may fill with anything, patient data included)."""
    if answer.status >= 400:
        try:
            body = loads_json(answer.body)
        except ValueError:
            body = None  # e.g. a proxy's page: the status says enough
        name = _error_name_of(body)
        text = f"HTTP {answer.status}" + (f" {name}" if name else "")
        if answer.status == 404:
            raise NotVisibleError(text)
        raise OpenProjectApiError(text, status=answer.status, code=name)
    body = decode_json(answer)  # not JSON / cut short: transient, retried
    if not isinstance(body, dict):
        raise TransientError(f"HTTP {answer.status} answer is JSON but not an object")
    if body.get("_type") == "Error":
        name = _error_name_of(body)
        raise OpenProjectApiError(f"HTTP {answer.status} {name or 'error'}", status=answer.status, code=name)
    return body


def _error_name_of(body: Any) -> str | None:
    """The error's name (``MissingPermission``), and for ``MultipleErrors`` the names of
    the errors it embeds; only names that pass :func:`safe_token`."""
    if not isinstance(body, dict):
        return None
    name = safe_token(error_name(body.get("errorIdentifier")))
    embedded = body.get("_embedded")
    if name == "MultipleErrors" and isinstance(embedded, dict):
        inner = [safe_token(error_name(e.get("errorIdentifier"))) for e in embedded.get("errors") or []
                 if isinstance(e, dict)]
        names = sorted({n for n in inner if n})
        if names:
            return f"{name} ({', '.join(names[:10])})"
    return name


def collection_elements(page: Mapping[str, Any]) -> list[Any]:
    """``_embedded.elements`` of a Collection."""
    if page.get("_type") != "Collection":
        raise ApiError(f"expected a Collection, got _type {safe_token(page.get('_type')) or '(unrecognised)'}")
    embedded = page.get("_embedded")
    elements = embedded.get("elements") if isinstance(embedded, dict) else None
    if not isinstance(elements, list):
        raise ApiError("Collection without _embedded.elements")
    return elements


def element_key(element: Any) -> Any:
    """What tells a collection's elements apart while paging: the ``id``, else the
    ``self`` link (None without either)."""
    if not isinstance(element, Mapping):
        return None
    if element.get("id") is not None and not isinstance(element.get("id"), (dict, list)):
        return ("id", element["id"])
    href = link_href(element.get("_links"), "self")
    return None if href is None else ("self", href)


def collection_total(page: Mapping[str, Any]) -> int | None:
    """The ``total`` a Collection states (None when it states none)."""
    total = page.get("total")
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def next_by_offset(page: Mapping[str, Any], _request: str | None = None) -> str | None:
    """The href of ``_links.nextByOffset``, or None on the last page."""
    links = page.get("_links")
    nxt = links.get("nextByOffset") if isinstance(links, dict) else None
    href = nxt.get("href") if isinstance(nxt, dict) else None
    return href if isinstance(href, str) and href else None


def link_href(links: Mapping[str, Any] | None, name: str) -> str | None:
    link = links.get(name) if isinstance(links, Mapping) else None
    href = link.get("href") if isinstance(link, Mapping) else None
    return href if isinstance(href, str) and href else None


def is_abbreviated(element: Any) -> bool:
    return isinstance(element, dict) and bool(element.get("_abbreviated"))


@dataclass
class ProjectPayload:
    """One project, complete, with every linked collection that was visible."""

    project_id: str
    project: dict[str, Any]
    linked: dict[str, list[Any]] = field(default_factory=dict)
    not_visible: list[str] = field(default_factory=list)


class OpenProjectClient(SourceClient):
    def __init__(self, http: HttpClient, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.http = http
        self.page_size = page_size
        root = urlsplit(http.base_url)
        self._origin = (root.scheme, root.netloc)
        self._root = http.base_url + "/"

    @classmethod
    def connect(cls, base_url: str, *, api_key: str, page_size: int = DEFAULT_PAGE_SIZE,
                settings: HttpSettings | None = None) -> OpenProjectClient:
        """A client for one instance. ``base_url`` is the instance root (``https://host`` or
        ``https://host/subpath``); a trailing ``/api/v3`` is accepted and dropped."""
        base = base_url.rstrip("/")
        if base.endswith("/" + API):
            base = base[: -len(API) - 1]
        basic = base64.b64encode(f"apikey:{api_key}".encode()).decode()
        credentials = StaticHeaders({"Authorization": f"Basic {basic}"}, setting_name=TOKEN_VARIABLE)
        http = HttpClient(base, source="openproject", credentials=credentials,
                          default_headers={"Accept": MEDIA_TYPE}, settings=settings)
        return cls(http, page_size=page_size)

    # ------------------------------------------------------------------ plumbing
    def resolve(self, href: str) -> str:
        """An absolute URL for an href; refuses another origin (the key must not leak).

        The API's hrefs are host-relative (``/api/v3/…``, carrying a subpath install's
        prefix); the client's own paths are relative to the base URL (``api/v3/…``)."""
        url = urljoin(self._root, href)
        parts = urlsplit(url)
        if (parts.scheme, parts.netloc) != self._origin:
            raise ApiError(f"link to another origin refused: {describe_origin(URL(url))}")
        return url

    async def get(self, href: str) -> dict[str, Any]:
        return await self.http.request("GET", self.resolve(href), read_hal)

    def paged(self, href: str, extra: Mapping[str, str] | None = None) -> str:
        """The first page's href: ``offset=1`` and our ``pageSize`` (and ``extra``) set."""
        url = URL(href)
        query = {**url.query, **(extra or {}), "offset": "1", "pageSize": str(self.page_size)}
        return str(url.with_query(query))

    async def collect(self, href: str, extra: Mapping[str, str] | None = None) -> list[Any]:
        """Every element of a paged collection, following ``nextByOffset`` until absent."""
        return await collect_pages(self.get, self.paged(href, extra), next_by_offset, collection_elements,
                                   element_key, stated_total=collection_total)

    # ------------------------------------------------------------------ resources
    async def list_projects(self, filters: str | None = None) -> list[Any]:
        """Every workspace (project, program, portfolio) visible to the key, or those the
        API's ``filters`` (JSON text, e.g. a subtree: ``[{"ancestor": …}]``) select;
        elements may be abbreviated."""
        query = {"sortBy": '[["id","asc"]]'}
        if filters is not None:
            query["filters"] = filters
        return await self.collect(API + "/projects", query)

    # ------------------------------------------------------------------ the instance's dimensions
    async def fetch_project_schema(self) -> dict[str, Any]:
        """The project schema: the definitions (``name``, ``type``…) of project custom fields."""
        return await self.get(API + "/projects/schema")

    async def fetch_work_package_schemas(self, schema_ids: list[str]) -> list[Any]:
        """The work-package schemas named ``<project id>-<type id>`` (their custom fields'
        definitions), asked for by id filter, ``SCHEMA_IDS_A_REQUEST`` ids a request."""
        schemas: list[Any] = []
        for start in range(0, len(schema_ids), SCHEMA_IDS_A_REQUEST):
            chosen = schema_ids[start:start + SCHEMA_IDS_A_REQUEST]
            filters = orjson.dumps([{"id": {"operator": "=", "values": chosen}}]).decode()
            schemas.extend(await self.collect(API + "/work_packages/schemas", {"filters": filters}))
        return schemas

    async def list_statuses(self) -> list[Any]:
        """Every work-package status of the instance."""
        return await self.collect(API + "/statuses")

    async def list_users(self) -> list[Any]:
        """Every user (administrators and keys with a user-managing permission only: 403 otherwise)."""
        return await self.collect(API + "/users", {"sortBy": '[["id","asc"]]'})

    async def fetch_project(self, project_id: str) -> dict[str, Any]:
        return await self.get(f"{API}/projects/{project_id}")

    async def complete(self, element: dict[str, Any]) -> dict[str, Any]:
        """The whole project for a list element (fetched only when abbreviated)."""
        if not is_abbreviated(element):
            return element
        return await self.fetch_project(str(element.get("id")))

    async def fetch_linked(self, project: Mapping[str, Any], kind: str) -> list[Any]:
        link_name, documented = LINKED[kind]
        href = link_href(project.get("_links"), link_name) or documented.format(id=project.get("id"))
        return await self.collect(href, EXTRA_QUERY.get(kind))

    async def work_package_marker(self, project: Mapping[str, Any]) -> str:
        """``wp:<total>:<latest updatedAt>`` of a project's work packages, from one
        one-element page sorted by ``updatedAt`` (a project's own ``updatedAt`` does not
        move when only its work packages change). 404: ``wp:not-visible``."""
        link_name, documented = LINKED["work_packages"]
        href = link_href(project.get("_links"), link_name) or documented.format(id=project.get("id"))
        url = URL(href)
        # No `select`: a selected answer drops the Collection's own properties (`_type`).
        probe = str(url.with_query({**url.query, "filters": "[]", "sortBy": '[["updatedAt","desc"]]',
                                    "offset": "1", "pageSize": "1"}))
        try:
            page = await self.get(probe)
        except NotFoundError:
            return "wp:not-visible"
        elements = collection_elements(page)
        latest = elements[0].get("updatedAt") if elements and isinstance(elements[0], dict) else None
        return f"wp:{page.get('total')}:{latest}"

    async def fetch_project_payload(
        self, project_id: str, listed: dict[str, Any] | None, fetch_stream: FetchStream = direct
    ) -> ProjectPayload:
        """The complete project (its existence answer: 404 means gone) and its linked
        collections, each a stream fetched concurrently through ``fetch_stream(stream,
        fetch, empty)`` (pwh/flows/streams.py); a collection answering 404 is recorded in
        ``not_visible`` and loads as empty."""
        project = await self.complete(listed) if listed is not None else await self.fetch_project(project_id)
        payload = ProjectPayload(project_id, project)

        async def visible(kind: str) -> list[Any]:
            try:
                return await self.fetch_linked(project, kind)
            except NotFoundError:
                payload.not_visible.append(kind)
                return []

        kinds = tuple(LINKED)
        results = await asyncio.gather(*(fetch_stream(kind, partial(visible, kind), []) for kind in kinds))
        payload.linked = dict(zip(kinds, results))
        return payload
