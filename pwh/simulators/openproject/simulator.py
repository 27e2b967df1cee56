"""A local OpenProject API v3 (``/api/v3/…``) serving an ``OpenProjectDataset``.

Like the real API: HAL+JSON, strict ``Accept`` (406 to anything but
``application/hal+json``), 401 ``Unauthenticated`` without the key (basic auth
``apikey:<key>``, or ``Bearer <key>``), offset-paged collections (``offset`` is the page
number from 1; ``nextByOffset`` only when a next page exists; ``pageSize`` capped), work
packages filtered to open ones unless ``filters`` is sent, 404 ``NotFound`` errors for what
the key may not see (hidden parents, memberships of some projects); the project list's
``filters`` (``ancestor``, ``id``, ``active``); the instance's project and work-package
schemas (custom field definitions), statuses and users, each of which can be made to
answer 403 or 404 (``SimulatorOptions.forbidden``/``missing``). Deterministic
first-attempt faults come from ``simulators.simulation`` as for every simulator.

Admin endpoints (no auth) under ``/_sim/``: ``GET health``, ``GET stats``,
``POST stats/reset``, ``POST mutate`` (JSON ``{"seed", "update_share", "add_share",
"remove_share", "work_package_share"}``), ``GET truth`` (→ ``expected_rows``).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from pwh.simulators.openproject.dataset import API, DatasetConfig, OpenProjectDataset
from pwh.simulators.simulation import (
    FAULT_KINDS,
    MUTATION_FIELDS,
    AdminHooks,
    Simulated,
    add_admin_routes,
    announce,
    fault_injector_for,
    serve_until_interrupted,
    serving,
    simulating,
)
from pwh.sources.openproject.client import MEDIA_TYPE, TOKEN_VARIABLE

STAT_KINDS = ("list", "project", "work_packages", "versions", "categories", "types", "memberships",
              "project_schema", "work_package_schemas", "statuses", "users")
# The instance-wide endpoints, by the dimension stream they serve (``SimulatorOptions.forbidden``).
DIMENSION_KINDS = {"custom_fields": ("project_schema", "work_package_schemas"), "statuses": ("statuses",),
                   "users": ("users",)}
ERRORS = "urn:openproject-org:api:v3:errors:"
SIMULATOR_KEY: web.AppKey[Any] = web.AppKey("openproject_simulator", object)


@dataclass
class SimulatorOptions:
    api_key: str = "sim-api-key"
    default_page_size: int = 20
    max_page_size: int = 100  # a larger pageSize is served as this many
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: int = 0
    stall_s: float = 2.0
    fault_seed: int | None = None  # None: the dataset's seed
    always_fail_projects: frozenset[int] = frozenset()  # every request about these answers 500
    # Dimension streams (custom_fields, statuses, users) whose endpoints answer 403
    # MissingPermission, as for a key without the permission; ``missing``: 404 NotFound.
    forbidden: frozenset[str] = frozenset()
    missing: frozenset[str] = frozenset()


def _hal(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = data if isinstance(data, bytes) else orjson.dumps(data)
    return web.Response(body=body, status=status, content_type=MEDIA_TYPE, headers=headers)


def error_body(name: str, message: str) -> dict[str, str]:
    return {"_type": "Error", "errorIdentifier": ERRORS + name, "message": message}


def _error_answer(status: int, headers: dict[str, str]) -> web.Response:
    if status == 429:
        return _hal(error_body("TooManyRequests", "Too many requests."), 429, headers)
    return _hal(error_body("InternalServerError", "An internal error has occurred."), status, headers)


def _not_found(what: str) -> web.Response:
    return _hal(error_body("NotFound", f"The requested {what} could not be found."), 404)


def _int_param(request: web.Request, name: str, default: int) -> int | web.Response:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return _hal(error_body("InvalidQuery", f"{name} must be an integer."), 400)
    if value < (1 if name == "offset" else 0):
        return _hal(error_body("InvalidQuery", f"{name} is out of range."), 400)
    return value


class _Simulator:
    def __init__(self, dataset: OpenProjectDataset, options: SimulatorOptions) -> None:
        self.ds = dataset
        self.opt = options
        basic = base64.b64encode(f"apikey:{options.api_key}".encode()).decode()
        self._auth_ok = {f"Basic {basic}", f"Bearer {options.api_key}"}
        self.faults = fault_injector_for(options, dataset.config.seed, _error_answer)
        self.stats: dict[str, Any] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {"total": 0, **dict.fromkeys(STAT_KINDS, 0), "pages": 0, "unauthorized": 0,
                      "not_acceptable": 0, "not_found": 0}
        self.faults.reset()

    def snapshot(self) -> dict[str, Any]:
        return {**self.stats, "faults": self.faults.total, "faults_by_kind": dict(self.faults.by_kind)}

    async def answer(self, request: web.Request, kind: str, pid: int | None,
                     produce: Callable[[], web.Response | Any]) -> web.StreamResponse:
        self.stats["total"] += 1
        self.stats[kind] += 1
        if request.headers.get("Authorization") not in self._auth_ok:
            self.stats["unauthorized"] += 1
            return _hal(error_body("Unauthenticated", "You need to be authenticated to access this resource."),
                        401, {"WWW-Authenticate": 'Basic realm="OpenProject API"'})
        if MEDIA_TYPE not in request.headers.get("Accept", ""):
            self.stats["not_acceptable"] += 1
            return _hal(error_body("NotAcceptable", f"Only {MEDIA_TYPE} is served; send Accept: {MEDIA_TYPE}."), 406)
        if self.opt.latency_ms > 0:
            await asyncio.sleep(self.opt.latency_ms / 1000)
        if pid is not None and pid in self.opt.always_fail_projects:
            return _error_answer(500, {})
        if any(kind in DIMENSION_KINDS[name] for name in self.opt.forbidden):
            return _hal(error_body("MissingPermission", "You are not authorized to access this resource."), 403)
        if any(kind in DIMENSION_KINDS[name] for name in self.opt.missing):
            self.stats["not_found"] += 1
            return _not_found("resource")
        replaced, fault = await self.faults.before_answer(request)
        if replaced is not None:
            return replaced
        result = produce()
        if isinstance(result, web.Response):
            if result.status == 404:
                self.stats["not_found"] += 1
            return result
        return _hal(self.faults.shape_body(orjson.dumps(result), fault))

    def collection(self, request: web.Request, elements: list[Any], paged: bool = True) -> dict[str, Any] | web.Response:
        """A Collection of ``elements``; paged ones carry offset/pageSize and their links."""
        self_href = str(request.rel_url)
        if not paged:
            return {"_type": "Collection", "total": len(elements), "count": len(elements),
                    "_embedded": {"elements": elements}, "_links": {"self": {"href": self_href}}}
        offset = _int_param(request, "offset", 1)
        if isinstance(offset, web.Response):
            return offset
        size = _int_param(request, "pageSize", self.opt.default_page_size)
        if isinstance(size, web.Response):
            return size
        size = min(size, self.opt.max_page_size)
        page = elements[(offset - 1) * size: offset * size] if size else []
        self.stats["pages"] += 1
        url = request.rel_url
        links: dict[str, Any] = {
            "self": {"href": str(url.update_query(offset=offset, pageSize=size))},
            "jumpTo": {"href": str(url.update_query(offset="{offset}", pageSize=size)), "templated": True},
            "changeSize": {"href": str(url.update_query(offset=offset, pageSize="{size}")), "templated": True},
        }
        if size and offset * size < len(elements):
            links["nextByOffset"] = {"href": str(url.update_query(offset=offset + 1, pageSize=size))}
        if offset > 1:
            links["previousByOffset"] = {"href": str(url.update_query(offset=offset - 1, pageSize=size))}
        return {"_type": "Collection", "total": len(elements), "count": len(page), "pageSize": size,
                "offset": offset, "_embedded": {"elements": page}, "_links": links}


def _project_id(raw: str) -> int | None:
    return int(raw) if raw.isdigit() else None


def _membership_project(request: web.Request) -> int | None | web.Response:
    raw = request.query.get("filters")
    if raw is None:
        return None
    try:
        filters = orjson.loads(raw)
        for item in filters:
            if "project" in item:
                return int(item["project"]["values"][0])
    except (orjson.JSONDecodeError, TypeError, KeyError, IndexError, ValueError, AttributeError):
        return _hal(error_body("InvalidQuery", "Filters are not valid JSON filters."), 400)
    return None


def _invalid_filters() -> web.Response:
    return _hal(error_body("InvalidQuery", "Filters are not valid JSON filters."), 400)


def _parse_filters(request: web.Request) -> list[dict[str, Any]] | web.Response:
    """The ``filters`` query as a list of ``{name: {"operator", "values"}}`` (empty when absent)."""
    raw = request.query.get("filters")
    if raw is None:
        return []
    try:
        filters = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _invalid_filters()
    if not isinstance(filters, list) or not all(
        isinstance(f, dict) and len(f) == 1 and isinstance(next(iter(f.values())), dict)
        and isinstance(next(iter(f.values())).get("values"), list) for f in filters
    ):
        return _invalid_filters()
    return filters


# The project list's filters the simulator knows (operator "=" only), as the API names them.
PROJECT_FILTERS = ("ancestor", "id", "active")


def _filter_projects(dataset: OpenProjectDataset, filters: list[dict[str, Any]]) -> list[int] | web.Response:
    chosen = set(dataset.project_ids())
    for item in filters:
        (name, condition), = item.items()
        if name not in PROJECT_FILTERS or condition.get("operator") != "=":
            return _hal(error_body("InvalidQuery", f"Filter {name} with operator {condition.get('operator')} "
                                                   "does not exist."), 400)
        values = [str(v) for v in condition["values"]]
        if name == "ancestor":
            chosen &= set().union(*(dataset.descendants(int(v)) for v in values if v.isdigit()))
        elif name == "id":
            chosen &= {int(v) for v in values if v.isdigit()}
        else:  # active: "t" / "f"
            chosen &= {pid for pid in chosen if ("t" if dataset.projects[pid].project["active"] else "f") in values}
    return sorted(chosen)


def build_app(dataset: OpenProjectDataset, options: SimulatorOptions | None = None) -> web.Application:
    options = options or SimulatorOptions()
    sim = _Simulator(dataset, options)
    app = web.Application()

    async def projects(request: web.Request) -> web.StreamResponse:
        def produce() -> Any:
            filters = _parse_filters(request)
            if isinstance(filters, web.Response):
                return filters
            chosen = _filter_projects(dataset, filters)
            if isinstance(chosen, web.Response):
                return chosen
            return sim.collection(request, [dataset.list_element(dataset.projects[pid]) for pid in chosen])
        return await sim.answer(request, "list", None, produce)

    async def project_schema(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "project_schema", None, dataset.project_schema)

    async def work_package_schemas(request: web.Request) -> web.StreamResponse:
        def produce() -> Any:
            filters = _parse_filters(request)
            if isinstance(filters, web.Response):
                return filters
            ids = [str(v) for f in filters if "id" in f for v in f["id"]["values"]]
            if not ids:  # as the API: no answer without an id filter
                return _hal(error_body("InvalidQuery", "An id filter is required."), 400)
            schemas = [schema for schema in map(dataset.work_package_schema, ids) if schema is not None]
            return sim.collection(request, schemas, paged=False)
        return await sim.answer(request, "work_package_schemas", None, produce)

    async def statuses(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "statuses", None, lambda: sim.collection(request, dataset.statuses, paged=False))

    async def users(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "users", None, lambda: sim.collection(request, dataset.users))

    async def project(request: web.Request) -> web.StreamResponse:
        pid = _project_id(request.match_info["pid"])

        def produce() -> Any:
            found = dataset.projects.get(pid) if pid is not None else None
            return _not_found("project") if found is None else found.project
        return await sim.answer(request, "project", pid, produce)

    async def linked(request: web.Request) -> web.StreamResponse:
        pid = _project_id(request.match_info["pid"])
        kind = request.match_info["kind"]

        def produce() -> Any:
            found = dataset.projects.get(pid) if pid is not None else None
            if found is None:
                return _not_found("project")
            if kind == "work_packages":
                elements = found.work_packages
                if "filters" not in request.query:  # the API's default filter: open work packages
                    elements = [w for w in elements if not w["readonly"]]
                if request.query.get("sortBy", "").replace(" ", "") == '[["updatedAt","desc"]]':
                    elements = sorted(elements, key=lambda w: (w["updatedAt"], w["id"]), reverse=True)
                return sim.collection(request, elements)
            return sim.collection(request, getattr(found, kind), paged=False)
        return await sim.answer(request, kind, pid, produce)

    async def memberships(request: web.Request) -> web.StreamResponse:
        pid = _membership_project(request)

        def produce() -> Any:
            if isinstance(pid, web.Response):
                return pid  # filters that do not parse: 400 InvalidQuery
            if pid is None:
                everything = [m for p in dataset.projects.values() if not p.memberships_hidden for m in p.memberships]
                return sim.collection(request, everything)
            found = dataset.projects.get(pid)
            if found is None or found.memberships_hidden:
                return _not_found("memberships")
            return sim.collection(request, found.memberships)
        return await sim.answer(request, "memberships", pid if isinstance(pid, int) else None, produce)

    app.router.add_get(f"{API}/projects", projects)
    app.router.add_get(f"{API}/projects/schema", project_schema)
    app.router.add_get(f"{API}/projects/{{pid}}", project)
    app.router.add_get(f"{API}/work_packages/schemas", work_package_schemas)
    app.router.add_get(f"{API}/statuses", statuses)
    app.router.add_get(f"{API}/users", users)
    app.router.add_get(f"{API}/projects/{{pid}}/{{kind:(?:work_packages|versions|categories|types)}}", linked)
    app.router.add_get(f"{API}/memberships", memberships)
    add_admin_routes(app, AdminHooks(
        health=lambda: {"ok": True, "projects": len(dataset.projects), "state": dataset.state},
        stats=sim.snapshot, reset_stats=sim.reset_stats, mutate=dataset.mutate,
        truth=lambda request: dataset.expected_rows(), faults=sim.faults,
        mutation_fields=MUTATION_FIELDS | {"work_package_share"},
    ))
    app[SIMULATOR_KEY] = sim
    return app


@asynccontextmanager
async def running_simulator(dataset: OpenProjectDataset, options: SimulatorOptions | None = None,
                            host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve on ``host:port`` (0: a free port); yields the instance root URL (``--base-url``)."""
    async with serving(build_app(dataset, options), host, port) as root:
        yield root


@asynccontextmanager
async def simulated(projects: int, seed: int, *, fault_rate: float = 0.0,
                    middlewares: Sequence[Any] = ()) -> AsyncIterator[Simulated]:
    """A fresh simulator with an API key of its own (source registry: demo, contract tests)."""
    dataset = OpenProjectDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(api_key=secrets.token_urlsafe(24), fault_rate=fault_rate)
    async with simulating(build_app(dataset, options), dataset, {TOKEN_VARIABLE: options.api_key},
                          middlewares=middlewares) as simulator:
        yield simulator


def serve_command(*, port: int, projects: int, seed: int, latency_ms: float, fault_rate: float,
                  max_work_packages: int, max_page_size: int, api_key: str) -> None:
    """``pwh simulate openproject``: HAL, paging, hidden parents, 404s, until interrupted."""
    dataset = OpenProjectDataset(DatasetConfig(seed=seed, n_projects=projects, max_work_packages=max_work_packages))
    options = SimulatorOptions(api_key=api_key, max_page_size=max_page_size, latency_ms=latency_ms,
                               fault_rate=fault_rate)
    announce(f"OpenProject simulator: http://127.0.0.1:{port} ({projects} projects, seed {seed}); "
             f"OPENPROJECT_API_KEY={api_key}. Ctrl-C stops it.")
    serve_until_interrupted(build_app(dataset, options), "127.0.0.1", port)
