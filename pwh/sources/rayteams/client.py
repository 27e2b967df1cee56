"""RAYTeams API client: the project list, each project's sk-typed records, its files.

Two fetch strategies give the same records:
- ``aggregate``: ``GET /project/{_id}`` (every record of a project in one answer) plus
  ``GET /file/{_id}``: two requests a project.
- ``per_resource``: ``/memo``, ``/attachments``, ``/histories``, ``/orders``, ``/groups``
  and ``/file``: six requests a project (the list already carries the project record).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import quote

from pwh.sources.errors import ApiError, NotFoundError, safe_token
from pwh.sources.http import (
    Answer,
    Credentials,
    HttpClient,
    HttpSettings,
    SourceClient,
    StaticHeaders,
    decode_json,
    loads_json,
)
from pwh.sources.json_stream import StreamedArray, stream_member
from pwh.sources.rayteams.oauth import OAuthCredentials
from pwh.sources.stream_calls import FetchStream, direct

SUB_RESOURCES = ("memo", "attachments", "histories", "orders", "groups")
# The stream (pwh/flows/streams.py) each sub-resource call serves.
STREAM_OF = {"memo": "memos", "attachments": "attachments", "histories": "histories", "orders": "orders",
             "groups": "groups"}
STRATEGIES = ("aggregate", "per_resource")
# Measured against the simulator (see README, Performance): two requests a project
# instead of six, so the aggregate call is the default.
DEFAULT_STRATEGY = "aggregate"

TOKEN_VARIABLE = "RAYTEAMS_TOKEN"
CLIENT_ID_VARIABLE = "RAYTEAMS_CLIENT_ID"


class ProjectNotFoundError(NotFoundError):
    """The API answered the custom error NO_ITEM: the project is gone (or never was)."""


@dataclass(frozen=True)
class ProjectPayload:
    """Everything fetched about one project, as the API gave it."""

    project_id: str
    records: list[dict[str, Any]]
    files: list[dict[str, Any]]


def file_base_url(project_base_url: str) -> str:
    """Files live under the FILE scope: ``api-<region>-file.rayteams…`` where projects
    live under ``api-<region>-project.rayteams…``. Other hosts (a simulator, a proxy)
    serve both scopes on one base URL."""
    return re.sub(r"^(https?://api-[a-z0-9-]+?)-project\.", r"\1-file.", project_base_url)


def region_of(project_base_url: str) -> str | None:
    """The region named in a RAYTeams host (``api-<region>-project.rayteams…``), if any."""
    match = re.match(r"^https?://api-([a-z]{2}-[a-z]+-\d)-project\.", project_base_url)
    return match.group(1) if match else None


def read_envelope(answer: Answer) -> Any:
    """Unwrap ``{"status": "success", "data": ...}``; turn error answers into typed errors.

    A custom error arrives with status 200 (``{"errorCode": "NO_ITEM"}``): it is an
    error, not data. ``{"data": {}}`` means "nothing" and is returned as ``{}``. Errors
    carry the status and the API's error code, never its ``message`` (free text a
    server may fill with anything, patient data included).
    """
    if answer.status >= 400:  # the status first: an error page need not be JSON
        try:
            error = loads_json(answer.body)
        except ValueError:
            error = None
        code = safe_token(error.get("errorCode", error.get("code"))) if isinstance(error, dict) else None
        if answer.status == 404:
            raise NotFoundError("HTTP 404" + (f" {code}" if code else ""))
        raise ApiError(f"HTTP {answer.status}" + (f" {code}" if code else ""), status=answer.status, code=code)
    return _unwrapped(decode_json(answer), answer.status)  # not JSON / cut short: transient, retried


# A project list at least this long is walked entry by entry (~0.5 KB a project: from
# ~16,000 projects on); a shorter one is parsed whole, which is faster.
STREAMED_LISTING_BYTES = 8 << 20


def read_listing(answer: Answer) -> Any:
    """:func:`read_envelope` for the project list. A long list is not parsed whole: its
    ``data`` comes back as a :class:`StreamedArray` whose entries are parsed as they are
    taken (pwh/sources/json_stream.py), so the parsed list is never held whole."""
    if answer.status < 400 and len(answer.body) >= STREAMED_LISTING_BYTES:
        members = stream_member(answer.body, "data", loads_json)
        if members is not None:
            return _unwrapped(members, answer.status)
    return read_envelope(answer)


def _unwrapped(body: Any, status: int) -> Any:
    """The ``data`` of a parsed envelope; its custom errors and shapes as typed errors."""
    code = safe_token(body.get("errorCode", body.get("code"))) if isinstance(body, dict) else None
    if isinstance(body, dict) and "errorCode" in body:
        if code == "NO_ITEM":
            raise ProjectNotFoundError("custom error NO_ITEM (no such project)")
        raise ApiError(f"custom error {code or '(unrecognised code)'}", status=status, code=code)
    if not isinstance(body, dict) or "data" not in body:
        raise ApiError(f"HTTP {status} answer has no 'data' envelope", status=status)
    if body.get("status") != "success":
        envelope_status = safe_token(body.get("status"))
        raise ApiError(f"envelope status {envelope_status or '(unrecognised)'}, not success", status=status)
    return body["data"]


def _as_list(data: Any, what: str) -> list[dict[str, Any]]:
    if data == {} or data is None:
        return []
    if not isinstance(data, list):
        raise ApiError(f"{what}: expected an array in 'data', got {type(data).__name__}")
    return data


class RayteamsClient(SourceClient):
    """Fetches RAYTeams records over one shared :class:`HttpClient`."""

    def __init__(
        self, http: HttpClient, *, file_http: HttpClient | None = None, token_http: HttpClient | None = None
    ) -> None:
        self.http = http
        self.file_http = file_http or http
        # The token endpoint's client (OAuth accounts): opened, closed and counted with the rest.
        self.token_http = token_http

    @classmethod
    def connect(
        cls,
        base_url: str,
        *,
        token: str | None = None,
        client_id: str | None = None,
        settings: HttpSettings | None = None,
        oauth: OAuthCredentials | None = None,
    ) -> RayteamsClient:
        """A client for one account; use ``async with client:``. Either a fixed ``token``
        and ``client_id``, or ``oauth`` credentials that renew their access token."""
        credentials: Credentials
        if oauth is not None:
            credentials = oauth
        elif token is not None and client_id is not None:
            credentials = StaticHeaders(
                {
                    "Authorization": token if token.lower().startswith("bearer ") else f"Bearer {token}",
                    "x-rayteams-client-id": client_id,
                },
                setting_name=f"{TOKEN_VARIABLE} and {CLIENT_ID_VARIABLE}",
            )
        else:
            raise ValueError("RayteamsClient.connect needs token and client_id, or oauth credentials")
        headers = {"Accept": "application/json"}
        http = HttpClient(base_url, source="rayteams", credentials=credentials,
                          default_headers=headers, settings=settings)
        files_url = file_base_url(base_url)
        file_http = None
        if files_url != base_url:
            file_http = HttpClient(files_url, source="rayteams", credentials=credentials,
                                   default_headers=headers, settings=settings)
        return cls(http, file_http=file_http, token_http=None if oauth is None else oauth.http)

    @property
    def http_clients(self) -> tuple[HttpClient, ...]:
        api = (self.http,) if self.file_http is self.http else (self.http, self.file_http)
        return api if self.token_http is None else (self.token_http, *api)

    async def list_projects(self) -> Iterable[Any]:
        """The project list's entries (a long list: parsed one by one as they are taken)."""
        data = await self.http.request("GET", "/project", read_listing)
        return data if isinstance(data, StreamedArray) else _as_list(data, "GET /project")

    async def fetch_project_records(self, project_id: str) -> list[dict[str, Any]]:
        """Every record of a project in one answer (``GET /project/{_id}``)."""
        path = f"/project/{quote(project_id, safe='')}"
        return _as_list(await self.http.request("GET", path, read_envelope), f"GET {path}")

    async def fetch_sub_resource(self, project_id: str, kind: str) -> list[dict[str, Any]]:
        """One sub-resource list: memo, attachments, histories, orders or groups."""
        if kind not in SUB_RESOURCES:
            raise ValueError(f"unknown sub-resource {kind!r}; expected one of {SUB_RESOURCES}")
        path = f"/project/{quote(project_id, safe='')}/{kind}"
        return _as_list(await self.http.request("GET", path, read_envelope), f"GET {path}")

    async def fetch_project_files(self, project_id: str, file_types: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The project's downloadable files (``file_types``: only those types, one request
        each: ``GET /file/{_projectId}/{_type}``); ``{"data": {}}`` means it has none."""
        if file_types:
            found = await asyncio.gather(*(self._files(project_id, kind) for kind in file_types))
            return [file for files in found for file in files]
        return await self._files(project_id, None)

    async def _files(self, project_id: str, file_type: str | None) -> list[dict[str, Any]]:
        path = f"/file/{quote(project_id, safe='')}" + ("" if file_type is None else f"/{quote(file_type, safe='')}")
        data = await self.file_http.request("GET", path, read_envelope)
        if data == {} or data is None:
            return []
        if not isinstance(data, dict):
            raise ApiError(f"GET {path}: expected an object in 'data', got {type(data).__name__}")
        files = data.get("files", [])
        if not isinstance(files, list):
            raise ApiError(f"GET {path}: 'files' is not an array")
        return files

    async def fetch_project(
        self, project_id: str, strategy: str = DEFAULT_STRATEGY, file_types: Sequence[str] = (),
        fetch_stream: FetchStream = direct,
    ) -> ProjectPayload:
        """All records and files (``file_types``: of those types only) of one project, fetched
        concurrently. ``aggregate``'s ``GET /project/{_id}`` is the project's existence answer
        (NO_ITEM/404: gone); every other call is a stream's, made through ``fetch_stream(stream,
        fetch, empty)`` (pwh/flows/streams.py: selection, 404 = no records, 403 = forbidden)."""
        files = fetch_stream("files", lambda: self.fetch_project_files(project_id, file_types), [])
        if strategy == "aggregate":
            records, files = await asyncio.gather(self.fetch_project_records(project_id), files)
        elif strategy == "per_resource":
            *lists, files = await asyncio.gather(
                *(fetch_stream(STREAM_OF[kind], partial(self.fetch_sub_resource, project_id, kind), [])
                  for kind in SUB_RESOURCES),
                files,
            )
            records = [record for records_of_kind in lists for record in records_of_kind]
        else:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        return ProjectPayload(project_id, records, files)
