"""A local Incoplax REST API (``/rest/v1/domain/projects``) serving an ``IncoplaxDataset``.

Every documented verb: ``POST``, ``GET`` (list and one), ``PATCH``, ``DELETE`` (204) and
the non-standard ``LOOKUP`` (body: a JSON string; answers the matching ids or
``404 {"error_code": 1404, "error_message": "Lookup failed"}``). The server parses its
connections with aiohttp's pure-Python parser (``serving(..., any_method=True)``): the
default C parser refuses ``LOOKUP`` before any handler runs.

List parameters: ``offset``, ``limit`` (capped at ``max_limit`` when set: a server that
caps), ``mask`` (comma-separated; only the document's list fields), ``flat``, ``order``
(JSON array of ``"field"`` or ``{"field": "asc"|"desc"}``; ignored when
``honour_order`` is False, like a server that does not sort), ``filter`` (JSON object of
field → value, equality). Like the seed's example, the list leaves out ``opts`` unless
``list_opts`` is set.

Faults come from the shared :class:`FaultInjector` (first attempt of a request key only).
Admin endpoints (no auth) under ``/_sim/``: ``health``, ``stats``, ``stats/reset``,
``mutate`` (JSON ``{"seed", "update_share"?, "add_share"?, "remove_share"?}``) and
``truth`` (the expected rows, JSON).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from aiohttp import web

from pwh.simulators.incoplax.dataset import DatasetConfig, IncoplaxDataset
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
from pwh.sources.incoplax.client import TOKEN_VARIABLE

__all__ = ["SimulatorOptions", "build_app", "running_simulator", "serve_command", "SIMULATOR_KEY"]

PROJECTS = "/rest/v1/domain/projects"
LIST_MASK_FIELDS = ("id", "code", "name", "opts.title", "ext.lwt", "ext.ct")
ITEM_MASK_FIELDS = ("id", "code", "name", "opts", "opts.title", "opts.comment", "ext", "ext.lwt", "ext.ct")
STAT_KINDS = ("list", "get", "create", "update", "delete", "lookup")
SIMULATOR_KEY: web.AppKey[Any] = web.AppKey("incoplax_simulator", object)


@dataclass
class SimulatorOptions:
    auth: str = "bearer"  # "bearer" or "basic"
    token: str = "sim-token"
    username: str = "sim-user"
    password: str = "sim-password"
    max_limit: int | None = None  # a server that caps limit (None: no cap)
    default_limit: int = 100  # when the request gives none
    list_opts: bool = False  # the list outputs opts (the seed's example leaves it out)
    honour_order: bool = True
    latency_ms: float = 0.0
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: int = 0
    stall_s: float = 2.0
    fault_seed: int | None = None  # None: the dataset's seed


def _error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps({"error_code": code, "error_message": message}), status=status,
                        content_type="application/json", headers=headers)


def _fault_answer(status: int, headers: dict[str, str]) -> web.Response:
    return _error(status, 1000 + status, "Too Many Requests" if status == 429 else "Internal Server Error", headers)


class _BadRequest(Exception):
    pass


def _get(entity: dict[str, Any], name: str) -> Any:
    node: Any = entity
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def _masked(entity: dict[str, Any], mask: list[str] | None, flat: bool) -> dict[str, Any]:
    """The entity reduced to ``mask`` (None: as it is), nested or in flat form."""
    if mask is None:
        chosen = entity
    else:
        chosen = {}
        for name in mask:
            value = _get(entity, name)
            if value is _MISSING:
                continue
            if isinstance(value, dict):
                value = dict(value)
            head, _, rest = name.partition(".")
            if rest:
                chosen.setdefault(head, {})[rest] = value
            else:
                chosen[head] = value
    if not flat:
        return chosen
    out: dict[str, Any] = {}
    for key, value in chosen.items():
        if isinstance(value, dict):
            for inner, item in value.items():
                out[f"{key}.{inner}"] = item
        else:
            out[key] = value
    return out


def _parse_mask(raw: str | None, allowed: tuple[str, ...]) -> list[str] | None:
    if raw is None:
        return None
    fields = [f.strip() for f in raw.split(",") if f.strip()]
    unknown = [f for f in fields if f not in allowed]
    if unknown or not fields:
        raise _BadRequest(f"Invalid mask field(s): {', '.join(unknown) or '(none)'}")
    return fields


def _parse_flat(raw: str | None) -> bool:
    if raw is None:
        return False
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise _BadRequest("flat must be true or false")


def _parse_int(raw: str | None, name: str, default: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None
    if value < 0:
        raise _BadRequest(f"{name} must not be negative")
    return value


def _sort_key(value: Any) -> tuple[Any, ...]:
    if value is _MISSING or value is None:
        return (0, "")
    if isinstance(value, str):
        # ISO time stamps of different precision sort as instants, other text as text.
        try:
            return (1, datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp(), value)
        except ValueError:
            return (2, value)
    return (3, str(value))


def _ordered(entities: list[dict[str, Any]], raw: str | None) -> list[dict[str, Any]]:
    if raw is None:
        return entities
    try:
        order = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _BadRequest("order must be a JSON array") from None
    if not isinstance(order, list):
        raise _BadRequest("order must be a JSON array")
    keys: list[tuple[str, bool]] = []
    for item in order:
        if isinstance(item, str):
            keys.append((item, False))
        elif isinstance(item, dict) and len(item) == 1:
            [(name, direction)] = item.items()
            if direction not in ("asc", "desc"):
                raise _BadRequest("order direction must be asc or desc")
            keys.append((name, direction == "desc"))
        else:
            raise _BadRequest("order entries are field names or {field: asc|desc}")
    result = list(entities)
    for name, descending in reversed(keys):  # stable sorts, least significant key first
        result.sort(key=lambda e: _sort_key(_get(e, name)), reverse=descending)
    return result


def _filtered(entities: list[dict[str, Any]], raw: str | None) -> list[dict[str, Any]]:
    if raw is None:
        return entities
    try:
        conditions = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _BadRequest("filter must be a JSON object") from None
    if not isinstance(conditions, dict):
        raise _BadRequest("filter must be a JSON object")
    return [e for e in entities if all(_get(e, k) == v for k, v in conditions.items())]


class _Simulator:
    def __init__(self, dataset: IncoplaxDataset, options: SimulatorOptions) -> None:
        if options.auth not in ("bearer", "basic"):
            raise ValueError("auth must be 'bearer' or 'basic'")
        self.ds = dataset
        self.opt = options
        if options.auth == "bearer":
            self._auth_ok = {f"Bearer {options.token}"}
        else:
            pair = base64.b64encode(f"{options.username}:{options.password}".encode()).decode()
            self._auth_ok = {f"Basic {pair}"}
        self.faults = fault_injector_for(options, dataset.config.seed, _fault_answer)
        self.stats: dict[str, Any] = {}
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = {"total": 0, **dict.fromkeys(STAT_KINDS, 0), "unauthorized": 0, "limits": {}}
        self.faults.reset()

    def stats_snapshot(self) -> dict[str, Any]:
        return {**self.stats, "faults": self.faults.total, "faults_by_kind": dict(self.faults.by_kind)}

    async def answer(self, request: web.Request, kind: str,
                     produce: Callable[[], Any]) -> web.StreamResponse:
        self.stats["total"] += 1
        self.stats[kind] += 1
        if request.headers.get("Authorization") not in self._auth_ok:
            self.stats["unauthorized"] += 1
            return _error(401, 1401, "Unauthorized")
        if self.opt.latency_ms > 0:
            await asyncio.sleep(self.opt.latency_ms / 1000)
        replaced, fault = await self.faults.before_answer(request)
        if replaced is not None:
            return replaced
        try:
            result = produce()
            if asyncio.iscoroutine(result):
                result = await result
        except _BadRequest as exc:
            return _error(400, 1400, str(exc))
        if isinstance(result, web.StreamResponse):
            return result
        return web.Response(body=self.faults.shape_body(orjson.dumps(result), fault),
                            content_type="application/json")

    # ------------------------------------------------------------------ the verbs
    def list(self, query: Any) -> list[dict[str, Any]]:
        offset = _parse_int(query.get("offset"), "offset", 0)
        limit = _parse_int(query.get("limit"), "limit", self.opt.default_limit)
        if self.opt.max_limit is not None:
            limit = min(limit, self.opt.max_limit)
        limits = self.stats["limits"]  # limit → list requests answered with it
        limits[limit] = limits.get(limit, 0) + 1
        mask = _parse_mask(query.get("mask"), LIST_MASK_FIELDS)
        flat = _parse_flat(query.get("flat"))
        entities = _filtered(list(self.ds.projects.values()), query.get("filter"))
        if self.opt.honour_order:
            entities = _ordered(entities, query.get("order"))
        else:
            _ordered(entities, query.get("order"))  # still rejects a malformed order
        if mask is None and not self.opt.list_opts:
            mask = ["id", "code", "name", "ext"]  # the seed's list answer: no opts
        return [_masked(e, mask, flat) for e in entities[offset: offset + limit]]

    def item(self, pid: str, query: Any) -> Any:
        mask = _parse_mask(query.get("mask"), ITEM_MASK_FIELDS)
        flat = _parse_flat(query.get("flat"))
        project = self.ds.projects.get(pid)
        if project is None:
            return _error(404, 1404, "Not found")
        return _masked(project, mask, flat)

    @staticmethod
    async def body_object(request: web.Request) -> dict[str, Any]:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _BadRequest("body must be a JSON object") from None
        if not isinstance(body, dict):
            raise _BadRequest("body must be a JSON object")
        return body


def build_app(dataset: IncoplaxDataset, options: SimulatorOptions | None = None) -> web.Application:
    """The simulator as an aiohttp application; serve it with ``any_method=True`` (LOOKUP)."""
    options = options or SimulatorOptions()
    sim = _Simulator(dataset, options)
    app = web.Application()
    app[SIMULATOR_KEY] = sim

    async def list_projects(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "list", lambda: sim.list(request.query))

    async def get_project(request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        return await sim.answer(request, "get", lambda: sim.item(pid, request.query))

    async def create(request: web.Request) -> web.StreamResponse:
        async def produce() -> Any:
            body = await sim.body_object(request)
            if "id" in body:
                raise _BadRequest("id is assigned by the server")
            return dataset.create(body)

        return await sim.answer(request, "create", produce)

    async def update(request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]

        async def produce() -> Any:
            body = await sim.body_object(request)
            if "id" in body and body["id"] != pid:
                raise _BadRequest("Fields prohibited for modification: id")
            changed = dataset.update(pid, body)
            return _error(404, 1404, "Not found") if changed is None else changed

        return await sim.answer(request, "update", produce)

    async def delete(request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]

        def produce() -> Any:
            if not dataset.delete(pid):
                return _error(404, 1404, "Not found")
            return web.Response(status=204)

        return await sim.answer(request, "delete", produce)

    async def lookup(request: web.Request) -> web.StreamResponse:
        async def produce() -> Any:
            try:
                key = orjson.loads(await request.read())
            except orjson.JSONDecodeError:
                raise _BadRequest("body must be a JSON string") from None
            if not isinstance(key, str):
                raise _BadRequest("body must be a JSON string")
            ids = dataset.lookup(key)
            return ids if ids else _error(404, 1404, "Lookup failed")

        return await sim.answer(request, "lookup", produce)

    # ---- admin (no auth)
    def _json(value: Any) -> web.Response:
        return web.Response(body=orjson.dumps(value), content_type="application/json")

    app.router.add_get(PROJECTS, list_projects)
    app.router.add_post(PROJECTS, create)
    app.router.add_route("LOOKUP", PROJECTS, lookup)
    app.router.add_get(f"{PROJECTS}/{{pid}}", get_project)
    app.router.add_patch(f"{PROJECTS}/{{pid}}", update)
    app.router.add_delete(f"{PROJECTS}/{{pid}}", delete)
    add_admin_routes(app, AdminHooks(
        health=lambda: {"ok": True, "projects": len(dataset.projects), "state": dataset.state},
        stats=sim.stats_snapshot, reset_stats=sim.reset_stats, mutate=dataset.mutate,
        truth=lambda request: dataset.expected_rows(), faults=sim.faults,
    ))
    return app


@asynccontextmanager
async def running_simulator(
    dataset: IncoplaxDataset, options: SimulatorOptions | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the simulator on ``host:port`` (0: a free port); yields the server root URL
    (the client adds ``/rest/v1/domain/projects``)."""
    async with serving(build_app(dataset, options), host, port, any_method=True) as root:
        yield root


@asynccontextmanager
async def simulated(projects: int, seed: int, *, fault_rate: float = 0.0,
                    middlewares: Sequence[Any] = ()) -> AsyncIterator[Simulated]:
    """A fresh simulator with a token of its own (source registry: demo, contract tests)."""
    dataset = IncoplaxDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(token=secrets.token_urlsafe(24), fault_rate=fault_rate)
    async with simulating(build_app(dataset, options), dataset, {TOKEN_VARIABLE: options.token},
                          middlewares=middlewares, any_method=True) as simulator:
        yield simulator


def serve_command(*, port: int, projects: int, seed: int, latency_ms: float, fault_rate: float, max_limit: int,
                  list_opts: bool, auth: str, token: str, username: str, password: str) -> None:
    """``pwh simulate incoplax``: CRUD, LOOKUP, paging, masks, flat form, until interrupted."""
    dataset = IncoplaxDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(auth=auth, token=token, username=username, password=password,
                               max_limit=max_limit or None, list_opts=list_opts, latency_ms=latency_ms,
                               fault_rate=fault_rate)
    announce(f"Incoplax simulator: http://127.0.0.1:{port} ({projects} projects, seed {seed}, {auth} auth); "
             "Ctrl-C stops it.")
    serve_until_interrupted(build_app(dataset, options), "127.0.0.1", port, any_method=True)
