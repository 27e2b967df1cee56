"""Incoplax REST v1 client for a domain's projects (``/rest/v1/domain/projects``).

Answers are plain JSON, no envelope; errors are ``{"error_code": N, "error_message": …}``.

Paging is by ``offset``/``limit``, and the listing ends at the first EMPTY page, not at
the first page shorter than the limit asked for. The API document does not say whether
the server caps ``limit``: a server that answers at most 100 entries when asked for 500
sends a "short" page that is not the last, and a client stopping there would miss every
later project (and then take them for deleted). The next offset is the previous one plus
the entries actually received, so a capping server is walked completely. Learning the
cap from a short page that turns out not to be the last, and then trusting any page
shorter than the cap, would save at most that one empty-page request per listing, and is
right only if the server's cap is fixed (not, e.g., a byte budget): one request per
listing is a cheap price for a proof.

Query encoding of the composite parameters (the document gives their types only):
``mask`` is a comma-separated field list (``id,ext.lwt``), ``flat`` is ``true``/``false``,
``order`` and ``filter`` are JSON text (``order=[{"ext.lwt":"desc"}]``,
``order=["id"]``). ``order`` is passed through as given.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import orjson

from pwh.sources.errors import ApiError, NotFoundError, safe_token
from pwh.sources.http import (
    Answer,
    HttpClient,
    HttpSettings,
    SourceClient,
    StaticHeaders,
    decode_json,
    loads_json,
)
from pwh.sources.paging import follow_pages

PROJECTS_PATH = "/rest/v1/domain/projects"
AUTH_SCHEMES = ("bearer", "basic")
TOKEN_VARIABLE = "INCOPLAX_TOKEN"
USERNAME_VARIABLE = "INCOPLAX_USERNAME"
PASSWORD_VARIABLE = "INCOPLAX_PASSWORD"
LOOKUP_FAILED = 1404  # error_code of a LOOKUP that found nothing

# What a listing for change detection needs: the key and the last write time.
MINIMAL_MASK = ("id", "ext.lwt")
# What the warehouse row needs; the list may leave out ``opts`` (and cannot output
# ``opts.comment``), so an entry lacking any of these is completed by a detail GET.
ROW_FIELDS = ("id", "code", "name", "opts.title", "opts.comment", "ext.ct", "ext.lwt")
DEFAULT_PAGE_SIZE = 500



def parse_order(text: str | None) -> list[Any] | None:
    """The list order an option gives as JSON text ('' or None: send none)."""
    if text is None or not text.strip():
        return None
    try:
        order = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ValueError("--order must be JSON, e.g. '[\"id\"]' or '[{\"ext.lwt\": \"desc\"}]'") from None
    if not isinstance(order, list):
        raise ValueError("--order must be a JSON array")
    return order

class LookupNotFoundError(NotFoundError):
    """LOOKUP found no project for the key (``404 {"error_code": 1404}``)."""


def decode_answer(answer: Answer) -> Any:
    """A JSON value for 2xx (None for 204 No Content); a typed error otherwise, carrying
    the status and ``error_code``, never ``error_message`` (free text a server may fill
    with anything, patient data included)."""
    if answer.status == 204:
        return None
    if answer.status >= 400:
        try:
            body = loads_json(answer.body)
        except ValueError:
            body = None  # e.g. a proxy's page: the status says enough
        raw_code = body.get("error_code") if isinstance(body, dict) else None
        code = safe_token(raw_code)
        detail = f"HTTP {answer.status}" + (f" error_code {code}" if code is not None else "")
        if answer.status == 404:
            if raw_code == LOOKUP_FAILED:
                raise LookupNotFoundError(detail)
            raise NotFoundError(detail)
        raise ApiError(detail, status=answer.status, code=code)
    return decode_json(answer)


def unflatten(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The nested form of an entity answered in flat form (``{"opts.title": …}`` →
    ``{"opts": {"title": …}}``); a nested entity comes back as it is."""
    out: dict[str, Any] = {}
    for key, value in entity.items():
        if "." not in key:
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key].update(value)
            else:
                out[key] = value
            continue
        head, rest = key.split(".", 1)
        inner = out.setdefault(head, {})
        if not isinstance(inner, dict):
            raise ApiError(f"flat field {safe_token(key) or '(unnamed)'} clashes with a scalar field")
        inner.update(unflatten({rest: value}))
    return out


def has_fields(entity: Mapping[str, Any], fields: Sequence[str]) -> bool:
    """Whether every dotted field is present (a null value counts as present)."""
    for name in fields:
        node: Any = entity
        for part in name.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return False
            node = node[part]
    return True


def entity_key(entity: Mapping[str, Any]) -> str | None:
    """What tells list entries apart while paging: the id (None without one)."""
    pid = entity.get("id")
    return pid if isinstance(pid, str) and pid else None


def field_value(entity: Mapping[str, Any], name: str) -> Any:
    node: Any = entity
    for part in name.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


# The fields the API's ``mask`` offers (the seed's list); a user's mask always gets the
# key and the cursor added.
MASK_FIELDS = ("id", "code", "name", "opts.title", "ext.lwt", "ext.ct")


def check_mask(mask: Sequence[str] | None) -> tuple[str, ...] | None:
    """The fields to fetch and store (``id`` and ``ext.lwt`` added), or None: every field."""
    if not mask:
        return None
    chosen = [name.strip() for value in mask for name in value.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in MASK_FIELDS]
    if unknown:
        raise ValueError(f"mask: unknown field {', '.join(map(repr, unknown))}; available: {', '.join(MASK_FIELDS)}")
    return tuple(dict.fromkeys([*MINIMAL_MASK, *chosen]))


def parse_mask(text: str | None) -> list[str] | None:
    """The ``--mask`` option's comma-separated fields, checked (``id`` and ``ext.lwt`` added)."""
    fields = check_mask([text] if text else None)
    return list(fields) if fields else None


def check_filter(filter: Mapping[str, Any] | str | None) -> dict[str, Any] | None:
    """The list's ``filter`` (an object, or its JSON text), or None."""
    if filter is None or (isinstance(filter, str) and not filter.strip()):
        return None
    if isinstance(filter, str):
        try:
            filter = orjson.loads(filter)
        except orjson.JSONDecodeError:
            filter = None
    if not isinstance(filter, Mapping) or not filter:
        raise ValueError('filter must be a JSON object of field values, e.g. {"code": "5102"}')
    return dict(filter)


@dataclass(frozen=True)
class Page:
    offset: int
    entities: list[dict[str, Any]]


class IncoplaxClient(SourceClient):
    """Projects of one Incoplax domain over a shared :class:`HttpClient`."""

    def __init__(self, http: HttpClient, *, page_size: int = DEFAULT_PAGE_SIZE) -> None:
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.http = http
        self.page_size = page_size

    @classmethod
    def connect(
        cls,
        base_url: str,
        *,
        auth_scheme: str = "bearer",
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
        settings: HttpSettings | None = None,
    ) -> IncoplaxClient:
        """A client for the server at ``base_url`` (its root: the client adds
        ``/rest/v1/domain/projects``); use ``async with client:``."""
        return cls(
            HttpClient(base_url, source="incoplax", credentials=credentials(auth_scheme, token, username, password),
                       default_headers={"Accept": "application/json"}, settings=settings),
            page_size=page_size,
        )

    # ------------------------------------------------------------------ listing
    async def list_page(
        self,
        offset: int,
        limit: int,
        *,
        mask: Sequence[str] | None = None,
        flat: bool = False,
        order: Sequence[Any] | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """One page of the list, entities in nested form whatever ``flat`` says."""
        params: dict[str, str] = {"offset": str(offset), "limit": str(limit)}
        if mask:
            params["mask"] = ",".join(mask)
        if flat:
            params["flat"] = "true"
        if order:
            params["order"] = orjson.dumps(list(order)).decode()
        if filter:
            params["filter"] = orjson.dumps(dict(filter)).decode()
        body = await self.http.request("GET", PROJECTS_PATH, decode_answer, params=params)
        if not isinstance(body, list):
            raise ApiError(f"GET {PROJECTS_PATH}: expected a JSON array, got {type(body).__name__}")
        entities = []
        for entity in body:
            if not isinstance(entity, dict):
                raise ApiError(f"GET {PROJECTS_PATH}: a list entry is a {type(entity).__name__}, not an object")
            entities.append(unflatten(entity) if flat else entity)
        return entities

    async def pages(
        self,
        *,
        mask: Sequence[str] | None = None,
        flat: bool = False,
        order: Sequence[Any] | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Page]:
        """Every non-empty page, from offset 0 to the first empty page (see the module
        doc), each with only the entities not served before. The caller may stop early
        (``break``): no further page is requested."""

        async def fetch(offset: int) -> Page:
            return Page(offset, await self.list_page(offset, self.page_size, mask=mask, flat=flat,
                                                     order=order, filter=filter))

        def next_offset(page: Page, offset: int) -> int | None:
            return offset + len(page.entities) if page.entities else None

        # Entities already served (a server that ignores offset) are dropped, and a page
        # of nothing but them fails the listing (pwh/sources/paging.py).
        async for page, fresh in follow_pages(fetch, 0, next_offset, lambda page: page.entities, entity_key):
            if fresh:
                yield Page(page.offset, fresh)

    async def list_projects(self, **options: Any) -> list[dict[str, Any]]:
        """Every project of the list (see :meth:`pages` for the options)."""
        out: list[dict[str, Any]] = []
        async for page in self.pages(**options):
            out.extend(page.entities)
        return out

    # ------------------------------------------------------------------ one project
    def _item(self, project_id: str) -> str:
        return f"{PROJECTS_PATH}/{quote(project_id, safe='')}"

    async def get_project(self, project_id: str, *, mask: Sequence[str] | None = None,
                          flat: bool = False) -> dict[str, Any]:
        """One project in nested form; :class:`NotFoundError` when it does not exist."""
        params: dict[str, str] = {}
        if mask:
            params["mask"] = ",".join(mask)
        if flat:
            params["flat"] = "true"
        path = self._item(project_id)
        body = await self.http.request("GET", path, decode_answer, params=params or None)
        if not isinstance(body, dict):
            raise ApiError(f"GET {path}: expected a JSON object, got {type(body).__name__}")
        return unflatten(body) if flat else body

    async def create_project(self, entity: Mapping[str, Any]) -> dict[str, Any]:
        return await self._write("POST", PROJECTS_PATH, entity)

    async def update_project(self, project_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        return await self._write("PATCH", self._item(project_id), changes)

    async def delete_project(self, project_id: str) -> None:
        """``DELETE`` (204 No Content); :class:`NotFoundError` when it does not exist."""
        await self.http.request("DELETE", self._item(project_id), decode_answer)

    async def _write(self, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        answer = await self.http.request(method, path, decode_answer, data=orjson.dumps(dict(body)),
                                         headers={"Content-Type": "application/json; charset=utf-8"})
        if not isinstance(answer, dict):
            raise ApiError(f"{method} {path}: expected a project entity, got {type(answer).__name__}")
        return answer

    # ------------------------------------------------------------------ LOOKUP
    async def lookup(self, key: str, *, by: str | None = None) -> list[str]:
        """Project ids for a key (``LOOKUP``, body: the key as a JSON string).

        The server matches the key against every key field (``id``, ``code``). ``by``
        narrows the answer to one field: ``"id"`` keeps the key itself if it is an id;
        ``"code"`` keeps the ids whose project has this code (one ``GET …?mask=id,code``
        per id the server answered). Raises :class:`LookupNotFoundError` when nothing
        matches.
        """
        if by not in (None, "id", "code"):
            raise ValueError(f"by must be 'id' or 'code', not {by!r}")
        what = f"{by} " if by else ""
        try:
            body = await self.http.request(
                "LOOKUP", PROJECTS_PATH, decode_answer, data=orjson.dumps(key),
                headers={"Content-Type": "application/json; charset=utf-8"},
            )
        except LookupNotFoundError as exc:
            raise LookupNotFoundError(f"no Incoplax project with {what}{key!r} ({exc})") from None
        if not isinstance(body, list) or not all(isinstance(i, str) for i in body):
            raise ApiError(f"LOOKUP {PROJECTS_PATH}: expected a JSON array of ids")
        ids = list(body)
        if by == "id":
            ids = [i for i in ids if i == key]
        elif by == "code":
            kept = []
            for pid in ids:
                try:
                    project = await self.get_project(pid, mask=("id", "code"))
                except NotFoundError:
                    continue  # deleted since the LOOKUP
                if str(project.get("code")) == key:
                    kept.append(pid)
            ids = kept
        if not ids:
            raise LookupNotFoundError(f"no Incoplax project with {what}{key!r} (LOOKUP failed)")
        return ids


def credentials(scheme: str, token: str | None, username: str | None, password: str | None) -> StaticHeaders:
    """``Authorization`` for a bearer token or HTTP basic auth (the document leaves the
    scheme open); the setting to fix is named in a 401's message, never the value."""
    if scheme == "bearer":
        if not token:
            raise ValueError(f"bearer auth needs {TOKEN_VARIABLE}")
        value = token if token.lower().startswith("bearer ") else f"Bearer {token}"
        return StaticHeaders({"Authorization": value}, setting_name=TOKEN_VARIABLE)
    if scheme == "basic":
        if not username or password is None:
            raise ValueError(f"basic auth needs {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}")
        pair = base64.b64encode(f"{username}:{password}".encode()).decode()
        return StaticHeaders({"Authorization": f"Basic {pair}"},
                             setting_name=f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE}")
    raise ValueError(f"unknown auth scheme {scheme!r}; expected one of {AUTH_SCHEMES}")
