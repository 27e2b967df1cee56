"""A local Clarity LIMS API (``/api/v2/projects``, ``/api/v2/projects/{limsid}``) serving a
``ClarityDataset`` as XML in the shapes of the real captures.

- Basic auth; a wrong or missing password answers 401 with an ``exc:exception``.
- The list is paged (``page_size`` links a page, 500 like real servers by default) with
  ``previous-page`` / ``next-page`` links that keep the query and set ``start-index``;
  links are written with ``public_url`` (a proxy's public name) when given, else the
  request's own origin. Filters: ``name`` (repeatable), ``open-date``, ``last-modified``,
  ``udf.NAME=VALUE``, ``udt.name=UDTNAME``, ``udt.UDTNAME.UDFNAME=VALUE`` (equality only;
  a repeated key matches any of its values, different keys all). A duplicated
  ``start-index``/``open-date``/``last-modified`` is tolerated: the first one counts.
  A bad ``start-index``, date or time stamp answers 400 with an ``exc:exception``.
- Unknown project → 404 ``exc:exception``.
- ``/researchers`` and ``/labs`` (paged lists of links with names) and
  ``/researchers/{id}`` (names, lab, and the e-mail, phone and credentials a sync must
  not keep); ``researchers_status`` makes all three answer e.g. 403.
- ``POST /files/batch/retrieve`` (``<ri:links>`` in, ``<file:details>`` out: attached-to,
  content-location, original-location, original-name, is-published).
- Faults as for every simulator (``simulators.simulation``); 429 and 500 carry an
  ``exc:exception`` body. The ``Date`` header comes from the dataset's clock.

Admin endpoints (no auth) under ``/_sim/``: ``health``, ``stats``, ``stats/reset``,
``truth`` (expected rows, UDF parse errors), ``mutate`` (JSON ``{seed, update_share,
add_share, remove_share}``).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape, quoteattr

import orjson
from aiohttp import web

from pwh.simulators.clarity.dataset import ClarityDataset, DatasetConfig
from pwh.simulators.simulation import (
    FAULT_KINDS,
    AdminHooks,
    Simulated,
    add_admin_routes,
    announce,
    fault_injector_for,
    serve_until_interrupted,
    serving,
    simulating,
)
from pwh.sources.clarity.client import PASSWORD_VARIABLE, USERNAME_VARIABLE
from pwh.sources.xml import parse_xml

API_PREFIX = "/api/v2"
SIMULATOR_KEY: web.AppKey[Any] = web.AppKey("clarity_simulator", object)
_XML = "application/xml"
_NS_DECL = (
    'xmlns:udf="http://genologics.com/ri/userdefined" xmlns:ri="http://genologics.com/ri" '
    'xmlns:file="http://genologics.com/ri/file" xmlns:prj="http://genologics.com/ri/project"'
)
_SINGLE = ("start-index", "open-date", "last-modified")


@dataclass
class SimulatorOptions:
    username: str = "sim-user"
    password: str = "sim-password"
    page_size: int = 500
    public_url: str | None = None  # e.g. "https://lims.example.org/api/v2"; None: the request's origin
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: int = 0
    stall_s: float = 2.0
    fault_seed: int | None = None
    always_fail_projects: frozenset[str] = frozenset()  # every request about these answers 500
    researchers_status: int = 200  # e.g. 403: researchers and labs answer it (a user without the permission)


def exception_xml(status: int, message: str, category: str = "Error") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<exc:exception xmlns:exc="http://genologics.com/ri/exception" category={quoteattr(category)} code="{status}">\n'
        f"    <message>{escape(message)}</message>\n"
        "    <suggested-actions>Check the request</suggested-actions>\n"
        "</exc:exception>\n"
    ).encode()


def _xml(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=_XML, charset="utf-8", headers=headers)


class BadQuery(ValueError):
    pass


def _parse_when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadQuery(f"Invalid last-modified value: {text}") from None
    if value.tzinfo is None:
        raise BadQuery(f"last-modified needs a time zone: {text}")
    return value


class _Simulator:
    def __init__(self, dataset: ClarityDataset, options: SimulatorOptions) -> None:
        self.ds = dataset
        self.opt = options
        token = base64.b64encode(f"{options.username}:{options.password}".encode()).decode()
        self._auth = f"Basic {token}"
        self.faults = fault_injector_for(options, dataset.config.seed, self._error_answer)
        self.stats: dict[str, int] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {"total": 0, "list": 0, "project": 0, "researchers": 0, "researcher": 0, "labs": 0, "file_details": 0,
                      "unauthorized": 0, "not_found": 0, "bad_request": 0}
        self.faults.reset()

    def snapshot(self) -> dict[str, Any]:
        return {**self.stats, "faults": self.faults.total, "faults_by_kind": dict(self.faults.by_kind)}

    def _headers(self) -> dict[str, str]:
        return {"Date": email.utils.format_datetime(self.ds.clock().astimezone(timezone.utc), usegmt=True)}

    def _error_answer(self, status: int, headers: dict[str, str]) -> web.Response:
        message = "Too many requests" if status == 429 else "Internal server error"
        return _xml(exception_xml(status, message), status=status, headers={**headers, **self._headers()})

    def public(self, request: web.Request) -> str:
        return (self.opt.public_url or f"{request.url.origin()}{API_PREFIX}").rstrip("/")

    async def answer(
        self, request: web.Request, kind: str, limsid: str | None, produce: Callable[[], tuple[int, bytes]]
    ) -> web.StreamResponse:
        self.stats["total"] += 1
        self.stats[kind] += 1
        if request.headers.get("Authorization") != self._auth:
            self.stats["unauthorized"] += 1
            return _xml(exception_xml(401, "Unauthorized: bad user name or password", "AUTH"), 401, self._headers())
        if self.opt.latency_ms > 0:
            await asyncio.sleep(self.opt.latency_ms / 1000)
        if limsid is not None and limsid in self.opt.always_fail_projects:
            return self._error_answer(500, {})
        replaced, fault = await self.faults.before_answer(request)
        if replaced is not None:
            return replaced
        try:
            status, body = produce()
        except BadQuery as exc:
            self.stats["bad_request"] += 1
            status, body = 400, exception_xml(400, str(exc), "BAD_REQUEST")
        if status == 404:
            self.stats["not_found"] += 1
        return _xml(self.faults.shape_body(body, fault), status, self._headers())

    # ------------------------------------------------------------------ the list
    def list_page(self, request: web.Request) -> tuple[int, bytes]:
        query = list(request.query.items())  # order and duplicates as sent
        first: dict[str, str] = {}
        filters: dict[str, list[str]] = {}
        for key, value in query:
            if key in _SINGLE:
                first.setdefault(key, value)
            elif key == "name" or key.startswith(("udf.", "udt.")):
                filters.setdefault(key, []).append(value)
        try:
            start = int(first.get("start-index", "0"))
        except ValueError:
            raise BadQuery(f"Invalid start-index: {first['start-index']}") from None
        if start < 0:
            raise BadQuery(f"Invalid start-index: {start}")
        since_open = None
        if "open-date" in first:
            try:
                since_open = date.fromisoformat(first["open-date"])
            except ValueError:
                raise BadQuery(f"Invalid open-date: {first['open-date']}") from None
        since_modified = _parse_when(first["last-modified"]) if "last-modified" in first else None

        matching = []
        for index in self.ds.live_indices():
            if since_modified is not None and self.ds.modified_at(index) < since_modified:
                continue
            p = self.ds.project(index)
            if since_open is not None and (p["open_date"] is None or p["open_date"] < since_open):
                continue
            if all(_matches(p, key, values) for key, values in filters.items()):
                matching.append(p)
        page = matching[start : start + self.opt.page_size]
        base = self.public(request)
        rest = [(k, v) for k, v in query if k != "start-index"]

        def page_uri(index: int) -> str:
            return f"{base}/projects?{urlencode([('start-index', str(index)), *rest])}"

        lines = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
                 '<prj:projects xmlns:prj="http://genologics.com/ri/project">']
        for p in page:
            lines.append(f'    <project limsid="{p["limsid"]}" uri={quoteattr(base + "/projects/" + p["limsid"])}>')
            lines.append(f"        <name>{escape(p['name'])}</name>")
            lines.append("    </project>")
        if start > 0:
            lines.append(f"    <previous-page uri={quoteattr(page_uri(max(0, start - self.opt.page_size)))}/>")
        if start + self.opt.page_size < len(matching):
            lines.append(f"    <next-page uri={quoteattr(page_uri(start + self.opt.page_size))}/>")
        lines.append("</prj:projects>")
        return 200, ("\n".join(lines) + "\n").encode()

    # ------------------------------------------------------------------ researchers and labs
    def link_page(self, request: web.Request, path: str, root: str, items: list[str]) -> tuple[int, bytes]:
        """A page of ``items`` (rendered links) under ``<root>`` with previous/next links."""
        try:
            start = int(request.query.get("start-index", "0"))
        except ValueError:
            raise BadQuery(f"Invalid start-index: {request.query['start-index']}") from None
        if self.opt.researchers_status != 200:
            return self.opt.researchers_status, exception_xml(self.opt.researchers_status, "Forbidden", "FORBIDDEN")
        base = self.public(request)
        lines = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>', root]
        lines.extend(items[start:start + self.opt.page_size])
        if start + self.opt.page_size < len(items):
            uri = f"{base}/{path}?{urlencode([('start-index', str(start + self.opt.page_size))])}"
            lines.append(f"    <next-page uri={quoteattr(uri)}/>")
        lines.append(f"</{root[1:].split()[0]}>")
        return 200, ("\n".join(lines) + "\n").encode()

    def researchers_page(self, request: web.Request) -> tuple[int, bytes]:
        base = self.public(request)
        items = [f'    <researcher uri={quoteattr(base + "/researchers/" + str(r["id"]))}>'
                 f"<first-name>{escape(r['first_name'])}</first-name><last-name>{escape(r['last_name'])}</last-name>"
                 "</researcher>" for r in self.ds.researchers.values()]
        return self.link_page(request, "researchers", '<res:researchers xmlns:res="http://genologics.com/ri/researcher">',
                              items)

    def labs_page(self, request: web.Request) -> tuple[int, bytes]:
        base = self.public(request)
        items = [f'    <lab uri={quoteattr(f"{base}/labs/{lid}")}><name>{escape(name)}</name></lab>'
                 for lid, name in self.ds.labs.items()]
        return self.link_page(request, "labs", '<lab:labs xmlns:lab="http://genologics.com/ri/lab">', items)

    def researcher_body(self, request: web.Request, rid: str) -> tuple[int, bytes]:
        if self.opt.researchers_status != 200:
            return self.opt.researchers_status, exception_xml(self.opt.researchers_status, "Forbidden", "FORBIDDEN")
        r = self.ds.researchers.get(int(rid)) if rid.isdigit() else None
        if r is None:
            return 404, exception_xml(404, f"Researcher not found: {rid}", "NOT_FOUND")
        base = self.public(request)
        lab = "" if r["lab"] is None else f'    <lab uri={quoteattr(base + "/labs/" + str(r["lab"]))}/>\n'
        body = (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            f'<res:researcher xmlns:udf="http://genologics.com/ri/userdefined" xmlns:ri="http://genologics.com/ri" '
            f'xmlns:res="http://genologics.com/ri/researcher" uri={quoteattr(f"{base}/researchers/{rid}")}>\n'
            f"    <first-name>{escape(r['first_name'])}</first-name>\n    <last-name>{escape(r['last_name'])}</last-name>\n"
            f"    <phone>{escape(r['phone'])}</phone>\n    <email>{escape(r['email'])}</email>\n{lab}"
            f"    <credentials><username>{escape(r['username'])}</username><account-locked>false</account-locked>"
            '<role roleName="Researcher" name="Researcher"/></credentials>\n'
            f"    <initials>{escape(r['initials'])}</initials>\n</res:researcher>\n"
        )
        return 200, body.encode()

    def file_details_body(self, request: web.Request, body: bytes) -> tuple[int, bytes]:
        """``POST files/batch/retrieve``: ``<file:details>`` of the linked files that exist."""
        try:
            links = parse_xml(body)
        except Exception:  # noqa: BLE001 - any unreadable body is the client's error
            raise BadQuery("The request body is not a links document") from None
        base = self.public(request)
        out = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
               '<file:details xmlns:file="http://genologics.com/ri/file">']
        for link in links:
            uri = link.get("uri") or ""
            details = self.ds.file_details(uri.rstrip("/").rsplit("/", 1)[-1])
            if details is None:
                continue
            out.append(f'    <file:file limsid="{details["limsid"]}" uri={quoteattr(base + "/files/" + details["limsid"])}>')
            out.append(f"        <attached-to>{escape(base + '/projects/' + details['project'])}</attached-to>")
            out.append(f"        <content-location>{escape(details['content_location'])}</content-location>")
            out.append(f"        <original-location>{escape(details['original_location'])}</original-location>")
            out.append(f"        <original-name>{escape(details['original_name'])}</original-name>")
            out.append(f"        <is-published>{'true' if details['published'] else 'false'}</is-published>")
            out.append("    </file:file>")
        out.append("</file:details>")
        return 200, ("\n".join(out) + "\n").encode()

    # ------------------------------------------------------------------ one project
    def project_body(self, request: web.Request, limsid: str) -> tuple[int, bytes]:
        index = self.ds.index_of(limsid)
        if index is None:
            return 404, exception_xml(404, f"Project not found: {limsid}", "NOT_FOUND")
        return 200, render_project(self.ds.project(index), self.public(request))


def _matches(p: dict[str, Any], key: str, values: list[str]) -> bool:
    if key == "name":
        return p["name"] in values
    if key.startswith("udf."):
        name = key[4:]
        return any(u["name"] == name and u["value"] in values for u in p["udfs"])
    udt = p["udt"]
    if udt is None:
        return False
    if key == "udt.name":
        return udt["name"] in values
    prefix = f"udt.{udt['name']}."
    if not key.startswith(prefix):
        return False
    name = key[len(prefix):]
    return any(f["name"] == name and f["value"] in values for f in udt["fields"])


def _field(tag: str, f: dict[str, Any]) -> str:
    unit = f" unit={quoteattr(f['unit'])}" if f.get("unit") else ""
    attrs = f"type={quoteattr(f['type'])} name={quoteattr(f['name'])}{unit}"
    if f["value"] is None:
        return f"<{tag} {attrs}/>"
    return f"<{tag} {attrs}>{escape(f['value'])}</{tag}>"


def render_project(p: dict[str, Any], base: str) -> bytes:
    """The project's XML, in the element order of project.xsd; optional elements absent
    when the project has none."""
    limsid = p["limsid"]
    out = ['<?xml version="1.0" encoding="UTF-8" standalone="yes"?>',
           f'<prj:project {_NS_DECL} limsid="{limsid}" uri={quoteattr(f"{base}/projects/{limsid}")}>',
           f"    <name>{escape(p['name'])}</name>"]
    for tag, key in (("open-date", "open_date"), ("close-date", "close_date"), ("invoice-date", "invoice_date")):
        if p[key] is not None:
            out.append(f"    <{tag}>{p[key].isoformat()}</{tag}>")
    researcher = f"{base}/researchers/{p['researcher']}"
    out.append(f"    <researcher uri={quoteattr(researcher)}/>")
    udt = p["udt"]
    if udt is not None:
        tag = "udf:field" if udt["qualified"] else "field"
        out.append(f"    <udf:type name={quoteattr(udt['name'])}>")
        out.extend(f"        {_field(tag, f)}" for f in udt["fields"])
        out.append("    </udf:type>")
    out.extend(f"    {_field('udf:field', f)}" for f in p["udfs"])
    out.extend(f"    <ri:externalid id={quoteattr(e['id'])} uri={quoteattr(e['uri'])}/>" for e in p["external_ids"])
    out.extend(f'    <file:file limsid="{f}" uri="{base}/files/{f}"/>' for f in p["files"])
    if p["priority"] is not None:
        out.append(f"    <priority>{p['priority']}</priority>")
    out.append("</prj:project>")
    return ("\n".join(out) + "\n").encode()


def build_app(dataset: ClarityDataset, options: SimulatorOptions | None = None) -> web.Application:
    options = options or SimulatorOptions()
    if options.page_size < 1:
        raise ValueError("page_size must be at least 1")
    sim = _Simulator(dataset, options)
    app = web.Application()
    app[SIMULATOR_KEY] = sim

    async def projects(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "list", None, lambda: sim.list_page(request))

    async def project(request: web.Request) -> web.StreamResponse:
        limsid = request.match_info["limsid"]
        return await sim.answer(request, "project", limsid, lambda: sim.project_body(request, limsid))

    async def researchers(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "researchers", None, lambda: sim.researchers_page(request))

    async def researcher(request: web.Request) -> web.StreamResponse:
        rid = request.match_info["rid"]
        return await sim.answer(request, "researcher", None, lambda: sim.researcher_body(request, rid))

    async def file_details(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return await sim.answer(request, "file_details", None, lambda: sim.file_details_body(request, body))

    async def labs(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "labs", None, lambda: sim.labs_page(request))

    def _json(data: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")

    app.router.add_get(f"{API_PREFIX}/projects", projects)
    app.router.add_get(f"{API_PREFIX}/projects/{{limsid}}", project)
    app.router.add_get(f"{API_PREFIX}/researchers", researchers)
    app.router.add_get(f"{API_PREFIX}/researchers/{{rid}}", researcher)
    app.router.add_get(f"{API_PREFIX}/labs", labs)
    app.router.add_post(f"{API_PREFIX}/files/batch/retrieve", file_details)
    add_admin_routes(app, AdminHooks(
        health=lambda: {"ok": True, "projects": len(dataset.live_indices())},
        stats=sim.snapshot, reset_stats=sim.reset_stats, mutate=dataset.mutate,
        truth=lambda request: {"rows": dataset.expected_rows(), "udf_parse_errors": dataset.udf_parse_errors()},
        faults=sim.faults,
    ))
    return app


@asynccontextmanager
async def running_simulator(
    dataset: ClarityDataset, options: SimulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the simulator on ``host:port`` (0: a free port); yields its base URL (…/api/v2)."""
    async with serving(build_app(dataset, options), host, port) as root:
        yield f"{root}{API_PREFIX}"


@asynccontextmanager
async def simulated(projects: int, seed: int, *, fault_rate: float = 0.0,
                    middlewares: Sequence[Any] = ()) -> AsyncIterator[Simulated]:
    """A fresh simulator with a user of its own (source registry: demo, contract tests)."""
    dataset = ClarityDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(username="sim-user", password=secrets.token_urlsafe(24), fault_rate=fault_rate)
    credentials = {USERNAME_VARIABLE: options.username, PASSWORD_VARIABLE: options.password}
    async with simulating(build_app(dataset, options), dataset, credentials, path=API_PREFIX,
                          middlewares=middlewares) as simulator:
        yield simulator


def serve_command(*, port: int, projects: int, seed: int, latency_ms: float, fault_rate: float, page_size: int,
                  username: str, password: str) -> None:
    """``pwh simulate clarity``: the paged XML project list and project details, until interrupted."""
    dataset = ClarityDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(username=username, password=password, page_size=page_size, latency_ms=latency_ms,
                               fault_rate=fault_rate)
    announce(f"Clarity LIMS simulator: http://127.0.0.1:{port}{API_PREFIX} ({projects} projects, {page_size} a page, "
             f"seed {seed}); user {username!r}. Ctrl-C stops it.")
    serve_until_interrupted(build_app(dataset, options), "127.0.0.1", port)
