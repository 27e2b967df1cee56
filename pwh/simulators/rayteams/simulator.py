"""A local RAYTeams API (``/v1.0/project…``, ``/v1.0/file…``) serving a ``RayteamsDataset``.

Behaves like the documented API, quirks included (custom ``NO_ITEM`` error with status 200,
``{}`` for a project without files, 401 ``{"message": "Unauthorized"}``), and can inject
faults deterministically: a request key (method + path + query) is faulty when a hash of
(seed, key) falls below ``fault_rate``, and then only on its first attempt, so a client that
retries gets through. Faulty keys are forgotten on ``POST /_sim/stats/reset`` and on
``POST /_sim/mutate`` (a new sync after a change meets faults again).

Unauthenticated admin endpoints under ``/_sim/`` (for tests and the benchmark, which runs
the simulator in another process): ``GET /_sim/health``, ``GET /_sim/stats``,
``POST /_sim/stats/reset``, ``POST /_sim/mutate`` (JSON ``{"seed", "update_share",
"add_share", "remove_share"}`` → the MutationSummary), ``GET /_sim/truth?strategy=…``
(→ ``expected_rows``), ``GET /_sim/secrets`` (patient names and download links, for leak
tests run in another process).

OAuth: ``POST /oauth2/token`` exchanges a refresh token (``grant_type=refresh_token``,
client id and secret as basic auth) for an access token that expires after
``token_ttl_s`` (then 401); ``expires_in`` may announce another life than the real one, so
tests can make a client meet expiry as a 401 mid-sync. An instance is one region: it
accepts only access tokens it issued. ``POST /_sim/oauth/revoke`` (JSON
``{"refresh_token"}``) revokes a refresh token (later exchanges: ``invalid_grant``) and the
access tokens issued from it; ``POST /_sim/oauth/expire`` expires every access token
issued so far; ``/_sim/secrets`` also lists every access token (and rotated refresh
token, with ``rotate_refresh_tokens``) issued.

Serialised bodies are cached per (project, endpoint, version) in a bounded LRU.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from secrets import token_urlsafe
from typing import Any

import orjson
from aiohttp import web

from pwh.simulators.rayteams.dataset import FILE_TYPES, SUB_KINDS, DatasetConfig, RayteamsDataset
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
from pwh.sources.rayteams.client import CLIENT_ID_VARIABLE, TOKEN_VARIABLE

__all__ = [
    "SimulatorOptions",
    "FAULT_KINDS",
    "STAT_KINDS",
    "build_app",
    "running_simulator",
    "token_url",
    "serve_command",
]

API_PREFIX = "/v1.0"
# Endpoint kinds counted in /_sim/stats (besides total, faults, ...).
STAT_KINDS = ("list", "aggregate", "info", *SUB_KINDS, "file", "download", "upload")

SIMULATOR_KEY: web.AppKey[Any] = web.AppKey("rayteams_simulator", object)
_JSON = "application/json"
_NO_ITEM = b'{"errorCode":"NO_ITEM"}'
_UNAUTHORIZED = b'{"message":"Unauthorized"}'
_TOO_MANY = b'{"message":"Too Many Requests"}'
_SERVER_ERROR = b'{"message":"Internal Server Error"}'
_EMPTY = b'{"status":"success","data":{}}'
TOKEN_PATH = "/oauth2/token"


@dataclass
class SimulatorOptions:
    token: str = "sim-token"  # expected "Authorization: Bearer <token>" (the raw token is accepted too)
    client_id: str = "sim-client"  # expected header x-rayteams-client-id
    latency_ms: float = 0.0  # added to every answer
    fault_rate: float = 0.0  # share of request keys that fail on their FIRST attempt only
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: int = 0  # Retry-After of 429 answers
    stall_s: float = 2.0  # how long a "stall" fault sleeps before answering normally
    always_fail_projects: frozenset[str] = frozenset()  # every request about these answers 500
    max_body_bytes: int | None = None  # largest request body accepted (aiohttp's client_max_size)
    fault_seed: int | None = None  # seed of the fault choice; None: the dataset's seed
    body_cache_size: int = 32768  # serialised bodies kept (per project, endpoint, version)
    # OAuth (POST /oauth2/token). Access tokens it issues are accepted (besides ``token``)
    # until they expire; each simulator instance is one region: it accepts only its own.
    region: str = "ap-northeast-2"
    client_secret: str = "sim-secret"  # basic auth of the token endpoint, with client_id
    refresh_tokens: frozenset[str] = frozenset({"sim-refresh"})  # refresh tokens it honours
    token_ttl_s: float = 86400.0  # real life of an issued access token (the docs: one day)
    expires_in: int | None = None  # what the token endpoint announces; None: the ttl, rounded up
    rotate_refresh_tokens: bool = False  # answer a new refresh token each time, revoking the one used


def _envelope(data: Any) -> bytes:
    return b'{"status":"success","data":' + orjson.dumps(data) + b"}"


def _json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, status=status, content_type=_JSON, headers=headers)


class _Simulator:
    def __init__(self, dataset: RayteamsDataset, options: SimulatorOptions):
        self.ds = dataset
        self.opt = options
        self._auth_ok = {f"Bearer {options.token}", options.token}
        self.refresh_tokens = set(options.refresh_tokens)
        self.issued: dict[str, tuple[float, str]] = {}  # "Bearer <token>" -> (expiry, refresh token)
        self.all_issued: list[str] = []  # every access (and rotated refresh) token issued: leak tests
        self.faults = fault_injector_for(options, dataset.config.seed, _error_answer)
        self._list: tuple[int, bytes] | None = None
        self._body = lru_cache(maxsize=options.body_cache_size)(self._render)
        self.stats: dict[str, Any] = {}
        self.reset_stats()

    # ------------------------------------------------------------------ bookkeeping
    def reset_stats(self) -> None:
        self.stats = {
            "total": 0,
            **dict.fromkeys(STAT_KINDS, 0),
            "unauthorized": 0,
            "no_item": 0,
            "always_fail": 0,
            "token_issued": 0,
            "token_refused": 0,
            "expired": 0,
        }
        self.faults.reset()

    def stats_snapshot(self) -> dict[str, Any]:
        return {**self.stats, "faults": self.faults.total, "faults_by_kind": dict(self.faults.by_kind)}

    # ------------------------------------------------------------------ bodies
    def _render(self, pid: str, endpoint: str, version: int) -> bytes | None:
        ds = self.ds
        if endpoint == "info":
            data: Any = ds.project_info(pid)
        elif endpoint == "aggregate":
            data = ds.aggregate(pid)
        elif endpoint == "file":
            data = ds.files(pid)
        elif endpoint.startswith("file:"):
            data = ds.files(pid, endpoint[5:])
        else:
            data = ds.sub_resource(pid, endpoint)
        return None if data is None else _envelope(data)

    def _project_body(self, pid: str, endpoint: str) -> bytes | None:
        version = self.ds.version(pid)
        if version is None:
            return None
        return self._body(pid, endpoint, version)

    def _list_body(self) -> bytes:
        cached = self._list
        if cached is None or cached[0] != self.ds.state:
            cached = self._list = (self.ds.state, _envelope(self.ds.project_list()))
        return cached[1]

    # ------------------------------------------------------------------ the common path
    async def answer(
        self, request: web.Request, kind: str, pid: str | None, produce: Callable[[], Any]
    ) -> web.StreamResponse:
        stats = self.stats
        stats["total"] += 1
        stats[kind] += 1
        if not self.authorized(request.headers):
            stats["unauthorized"] += 1
            return _json(_UNAUTHORIZED, status=401)
        if self.opt.latency_ms > 0:
            await asyncio.sleep(self.opt.latency_ms / 1000)
        if pid is not None and pid in self.opt.always_fail_projects:
            stats["always_fail"] += 1
            return _json(_SERVER_ERROR, status=500)
        replaced, fault = await self.faults.before_answer(request)
        if replaced is not None:
            return replaced
        result = produce()
        if asyncio.iscoroutine(result):
            result = await result
        if isinstance(result, web.StreamResponse):
            return result
        if result is None:
            stats["no_item"] += 1
            return _json(_NO_ITEM)
        return _json(self.faults.shape_body(result, fault))


    # ------------------------------------------------------------------ OAuth
    def authorized(self, headers: Any) -> bool:
        if headers.get("x-rayteams-client-id") != self.opt.client_id:
            return False
        presented = headers.get("Authorization")
        if presented in self._auth_ok:
            return True
        issued = self.issued.get(presented) if presented else None
        if issued is None:
            return False  # unknown here: never issued, or issued by another region
        if time.monotonic() >= issued[0]:
            self.stats["expired"] += 1
            return False
        return True

    async def token(self, request: web.Request) -> web.Response:
        """``POST /oauth2/token`` (grant_type=refresh_token), as get-access-token.md describes."""
        expected = base64.b64encode(f"{self.opt.client_id}:{self.opt.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return self.refuse("invalid_client", 401)
        if request.content_type != "application/x-www-form-urlencoded":
            return self.refuse("invalid_request", 400)
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return self.refuse("unsupported_grant_type", 400)
        if form.get("client_id") != self.opt.client_id:
            return self.refuse("unauthorized_client", 400)
        refresh = form.get("refresh_token")
        if not isinstance(refresh, str) or refresh not in self.refresh_tokens:
            return self.refuse("invalid_grant", 400)
        if self.opt.latency_ms > 0:
            await asyncio.sleep(self.opt.latency_ms / 1000)
        value = f"sim-at-{self.opt.region}-{token_urlsafe(24)}"
        self.issued[f"Bearer {value}"] = (time.monotonic() + self.opt.token_ttl_s, refresh)
        self.all_issued.append(value)
        self.stats["token_issued"] += 1
        announced = self.opt.expires_in if self.opt.expires_in is not None else math.ceil(self.opt.token_ttl_s)
        answer = {
            "access_token": value, "id_token": f"sim-id-{token_urlsafe(12)}",
            "token_type": "Bearer", "expires_in": announced,
        }
        if self.opt.rotate_refresh_tokens:
            self.refresh_tokens.discard(refresh)
            answer["refresh_token"] = rotated = f"sim-rt-{token_urlsafe(24)}"
            self.refresh_tokens.add(rotated)
            self.all_issued.append(rotated)
        return _json(orjson.dumps(answer))

    def refuse(self, error: str, status: int) -> web.Response:
        self.stats["token_refused"] += 1
        return _json(orjson.dumps({"error": error}), status=status)

    def expire_tokens(self) -> int:
        """Expire every access token issued so far (tests: an expiry at a moment they choose)."""
        for key, (_, source) in self.issued.items():
            self.issued[key] = (0.0, source)
        return len(self.issued)

    def revoke(self, refresh: str) -> int:
        """Revoke a refresh token and every access token issued from it."""
        self.refresh_tokens.discard(refresh)
        gone = [key for key, (_, source) in self.issued.items() if source == refresh]
        for key in gone:
            del self.issued[key]
        return len(gone)


def _error_answer(status: int, headers: dict[str, str]) -> web.Response:
    return _json(_TOO_MANY if status == 429 else _SERVER_ERROR, status=status, headers=headers)


def build_app(dataset: RayteamsDataset, options: SimulatorOptions | None = None) -> web.Application:
    """The simulator as an aiohttp application (API under ``/v1.0``, admin under ``/_sim``)."""
    options = options or SimulatorOptions()
    sim = _Simulator(dataset, options)
    kwargs: dict[str, Any] = {} if options.max_body_bytes is None else {"client_max_size": options.max_body_bytes}
    app = web.Application(**kwargs)
    app[SIMULATOR_KEY] = sim

    async def project_list(request: web.Request) -> web.StreamResponse:
        return await sim.answer(request, "list", None, sim._list_body)

    async def aggregate(request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        return await sim.answer(request, "aggregate", pid, lambda: sim._project_body(pid, "aggregate"))

    async def sub_resource(request: web.Request) -> web.StreamResponse:
        pid, kind = request.match_info["pid"], request.match_info["kind"]
        return await sim.answer(request, kind, pid, lambda: sim._project_body(pid, kind))

    async def files(request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]
        ftype = request.match_info.get("ftype")

        def produce() -> Any:
            if ftype is not None and ftype not in FILE_TYPES:
                return _json(orjson.dumps({"message": f"Invalid file type: {ftype}"}), status=400)
            body = sim._project_body(pid, "file" if ftype is None else f"file:{ftype}")
            return _EMPTY if body is None else body  # an unknown project: success with {}

        return await sim.answer(request, "file", pid, produce)

    async def download(request: web.Request) -> web.StreamResponse:
        pid, aid = request.match_info["pid"], request.match_info["aid"]

        def produce() -> bytes | None:
            data = dataset.attachment_download(pid, aid)
            return None if data is None else _envelope(data)

        return await sim.answer(request, "download", pid, produce)

    async def upload(request: web.Request) -> web.StreamResponse:
        pid = request.match_info["pid"]

        async def produce() -> Any:
            if dataset.version(pid) is None:
                return None
            form = await request.post()
            field = form.get("file")
            if field is None or not isinstance(field, web.FileField):
                return _json(b'{"message":"multipart field \'file\' is required"}', status=400)
            size = len(field.file.read())
            record = dataset.add_attachment(pid, field.filename or "file", field.content_type or "application/octet-stream", size)
            return _envelope(record)

        return await sim.answer(request, "upload", pid, produce)

    # ---- admin (no auth)
    def truth(request: web.Request) -> dict[str, int]:
        return dataset.expected_rows(request.query.get("strategy", "aggregate"))

    async def secrets(request: web.Request) -> web.Response:
        return _json(
            orjson.dumps(
                {
                    "patient_names": sorted(dataset.patient_names()),
                    "download_links": sorted(dataset.download_links()),
                    "invalid_record_keys": dataset.invalid_record_keys,
                    "access_tokens": sim.all_issued,
                }
            )
        )

    async def revoke(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"{}")
        if not isinstance(body, dict) or not isinstance(body.get("refresh_token"), str):
            return _json(b'{"message":"expected JSON {refresh_token}"}', status=400)
        return _json(orjson.dumps({"access_tokens_revoked": sim.revoke(body["refresh_token"])}))

    async def expire(request: web.Request) -> web.Response:
        return _json(orjson.dumps({"access_tokens_expired": sim.expire_tokens()}))

    kinds = "|".join(("info", *SUB_KINDS))
    types = r"[^/]+"
    p = API_PREFIX
    app.router.add_get(f"{p}/project", project_list)
    app.router.add_get(f"{p}/project/{{pid}}", aggregate)
    app.router.add_get(f"{p}/project/{{pid}}/{{kind:(?:{kinds})}}", sub_resource)
    app.router.add_get(f"{p}/project/{{pid}}/attachment/download/{{aid}}", download)
    app.router.add_post(f"{p}/project/{{pid}}/attachment/add", upload)
    app.router.add_get(f"{p}/file/{{pid}}", files)
    app.router.add_get(f"{p}/file/{{pid}}/{{ftype:{types}}}", files)
    add_admin_routes(app, AdminHooks(
        health=lambda: {"ok": True, "projects": len(dataset.project_ids()), "state": dataset.state},
        stats=sim.stats_snapshot, reset_stats=sim.reset_stats, mutate=dataset.mutate, truth=truth,
        faults=sim.faults,
    ))
    app.router.add_get("/_sim/secrets", secrets)
    app.router.add_post("/_sim/oauth/revoke", revoke)
    app.router.add_post("/_sim/oauth/expire", expire)
    app.router.add_post(TOKEN_PATH, sim.token)
    return app


@asynccontextmanager
async def running_simulator(
    dataset: RayteamsDataset,
    options: SimulatorOptions | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[str]:
    """Serve the simulator on ``host:port`` (0: a free port) and yield its base URL (…/v1.0);
    its token endpoint is :func:`token_url` of that URL."""
    async with serving(build_app(dataset, options), host, port) as root:
        yield f"{root}{API_PREFIX}"


def token_url(base_url: str) -> str:
    """The simulator's token endpoint, from the API base URL ``running_simulator`` yields."""
    root = base_url.rstrip("/")
    if root.endswith(API_PREFIX):
        root = root[: -len(API_PREFIX)]
    return f"{root}{TOKEN_PATH}"


@asynccontextmanager
async def simulated(projects: int, seed: int, *, fault_rate: float = 0.0,
                    middlewares: Sequence[Any] = ()) -> AsyncIterator[Simulated]:
    """A fresh simulator with credentials of its own (source registry: demo, contract tests)."""
    dataset = RayteamsDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(token=token_urlsafe(24), client_id="sim-client", fault_rate=fault_rate)
    credentials = {TOKEN_VARIABLE: options.token, CLIENT_ID_VARIABLE: options.client_id}
    async with simulating(build_app(dataset, options), dataset, credentials, path=API_PREFIX,
                          middlewares=middlewares) as simulator:
        yield simulator


def serve_command(*, port: int, projects: int, seed: int, latency_ms: float, fault_rate: float, token: str,
                  client_id: str) -> None:
    """``pwh simulate rayteams``: every endpoint and quirk, until interrupted."""
    dataset = RayteamsDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(token=token, client_id=client_id, latency_ms=latency_ms, fault_rate=fault_rate)
    announce(f"RAYTeams simulator: http://127.0.0.1:{port}{API_PREFIX} ({projects} projects, seed {seed}); "
             f"token {token!r}, client id {client_id!r}. Ctrl-C stops it.")
    serve_until_interrupted(build_app(dataset, options), "127.0.0.1", port)
