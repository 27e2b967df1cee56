"""What every built-in API simulator shares: deterministic transient faults and serving an
aiohttp app on loopback.

A request key (method + path + query) is faulty when a hash of (seed, key) falls below
``fault_rate``, and then only on its first attempt, so a client that retries gets
through and a test can compare a faulty run with a clean one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_parser import HttpRequestParserPy
from aiohttp.web_protocol import RequestHandler, RequestPayloadError

FAULT_KINDS = ("429", "500", "stall", "truncated", "not_json", "reset")

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><h1>502 Bad Gateway</h1><p>The upstream server did not answer in time.</p>"
    b"<hr><address>sim-gateway</address></body></html>\n"
)

@dataclass(frozen=True)
class Simulated:
    """A simulator serving on loopback, as `pwh demo` and the contract tests use it."""

    base_url: str  # what --base-url takes
    credentials: dict[str, str]  # environment variable -> the value the simulator accepts
    dataset: Any  # the data it serves (``mutate`` changes it between runs)


@asynccontextmanager
async def simulating(app: web.Application, dataset: Any, credentials: dict[str, str], *, path: str = "",
                     middlewares: Sequence[Any] = (), any_method: bool = False) -> AsyncIterator[Simulated]:
    """Serve a simulator's ``app`` on a free loopback port; ``middlewares`` see every
    request first (a test's request counter or fault)."""
    for middleware in reversed(middlewares):
        app.middlewares.insert(0, middleware)
    async with serving(app, any_method=any_method) as root:
        yield Simulated(root + path, credentials, dataset)


def announce(line: str) -> None:
    """A simulator's one line on stdout, at once (a script waiting for it reads it)."""
    print(line, flush=True)


# Renders a source's own error answer: (status, headers) -> response.
ErrorRenderer = Callable[[int, dict[str, str]], web.Response]


@dataclass(frozen=True)
class FaultOptions:
    fault_rate: float = 0.0  # share of request keys that fail on their FIRST attempt only
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    retry_after_s: int = 0  # Retry-After of 429 answers
    stall_s: float = 2.0  # how long a "stall" sleeps before answering normally
    fault_seed: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.fault_kinds) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if not 0.0 <= self.fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")


class FaultInjector:
    """Decides and plays faults; a simulator calls :meth:`before_answer` first and
    :meth:`shape_body` on the body it then produces."""

    def __init__(self, options: FaultOptions, render_error: ErrorRenderer) -> None:
        self.options = options
        self.render_error = render_error
        self.faulted: set[str] = set()  # keys whose first attempt has failed already
        self.by_kind: dict[str, int] = dict.fromkeys(FAULT_KINDS, 0)

    def reset(self) -> None:
        self.faulted.clear()
        self.by_kind = dict.fromkeys(FAULT_KINDS, 0)

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    def decide(self, key: str) -> tuple[str | None, bool]:
        """(fault kind or None, a deterministic variant bit) for this attempt of ``key``."""
        rate = self.options.fault_rate
        if rate <= 0 or not self.options.fault_kinds or key in self.faulted:
            return None, False
        digest = hashlib.blake2b(f"{self.options.fault_seed}:{key}".encode(), digest_size=16).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= rate:
            return None, False
        self.faulted.add(key)
        kinds = self.options.fault_kinds
        pick = int.from_bytes(digest[8:], "big")
        kind = kinds[(pick >> 1) % len(kinds)]
        self.by_kind[kind] += 1
        return kind, bool(pick & 1)

    async def before_answer(self, request: web.Request) -> tuple[web.StreamResponse | None, str | None]:
        """Play a fault that replaces the answer (429, 500, reset, not JSON) or delays it
        (stall). Returns (a response to send instead, or None; the fault kind)."""
        if self.options.fault_rate <= 0:
            return None, None
        fault, variant = self.decide(f"{request.method} {request.path_qs}")
        if fault == "429":
            return self.render_error(429, {"Retry-After": str(self.options.retry_after_s)}), fault
        if fault == "500":
            return self.render_error(500, {}), fault
        if fault == "reset":
            if request.transport is not None:
                request.transport.abort()  # the client sees the connection drop, no answer
            return web.Response(status=500), fault  # never sent
        if fault == "not_json":
            return web.Response(body=HTML_ERROR_PAGE, status=502 if variant else 200, content_type="text/html"), fault
        if fault == "stall":
            await asyncio.sleep(self.options.stall_s)
        return None, fault

    @staticmethod
    def shape_body(body: bytes, fault: str | None) -> bytes:
        """A "truncated" fault sends the first half of the real body (status 200)."""
        return body[: len(body) // 2] if fault == "truncated" else body


class _AnyMethodRequestHandler(RequestHandler):
    """A connection that parses requests with aiohttp's pure-Python parser, which takes
    any method token. The default C parser (llhttp) refuses a non-standard method such as
    Incoplax's ``LOOKUP`` before any handler runs, and ``AIOHTTP_NO_EXTENSIONS=1`` would
    slow every aiohttp client and server of the process: this swaps the parser for the
    connections of one server only."""

    def __init__(self, manager: web.Server, *, loop: asyncio.AbstractEventLoop,
                 auto_decompress: bool = True, **kwargs: object) -> None:
        super().__init__(manager, loop=loop, auto_decompress=auto_decompress, **kwargs)  # type: ignore[arg-type]
        self._parser = HttpRequestParserPy(
            self, loop, self._read_bufsize, max_line_size=self.max_line_size,
            max_field_size=self.max_field_size, max_headers=self.max_headers,
            payload_exception=RequestPayloadError, auto_decompress=auto_decompress,
            max_msg_queue_size=self._max_msg_queue_size,
        )


class _AnyMethodServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _AnyMethodRequestHandler(self, loop=self._loop, **self._kwargs)


class _AnyMethodAppRunner(web.AppRunner):
    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _AnyMethodServer  # same object, connections get the Python parser
        return server


@asynccontextmanager
async def serving(
    app: web.Application, host: str = "127.0.0.1", port: int = 0, *, any_method: bool = False
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port); yields ``http://host:port``.
    ``any_method``: accept non-standard methods (e.g. ``LOOKUP``) on this server's
    connections, by parsing them with aiohttp's pure-Python parser."""
    runner_class = _AnyMethodAppRunner if any_method else web.AppRunner
    runner = runner_class(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield f"http://{host}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def serve_until_interrupted(
    app: web.Application, host: str = "127.0.0.1", port: int = 8765, *, any_method: bool = False
) -> None:
    if not any_method:
        web.run_app(app, host=host, port=port, access_log=None, print=None, shutdown_timeout=1.0)
        return

    async def forever() -> None:
        async with serving(app, host, port, any_method=True):
            await asyncio.Event().wait()

    try:
        asyncio.run(forever())
    except KeyboardInterrupt:
        pass


def fault_injector_for(options: Any, default_seed: int, render_error: ErrorRenderer) -> FaultInjector:
    """The injector a simulator's options describe (every simulator's options carry
    fault_rate, fault_kinds, retry_after_s, stall_s and fault_seed; None → the data's seed)."""
    seed = default_seed if options.fault_seed is None else options.fault_seed
    return FaultInjector(
        FaultOptions(fault_rate=options.fault_rate, fault_kinds=options.fault_kinds,
                     retry_after_s=options.retry_after_s, stall_s=options.stall_s, fault_seed=seed),
        render_error,
    )


MUTATION_FIELDS = frozenset({"update_share", "add_share", "remove_share"})


@dataclass(frozen=True)
class AdminHooks:
    """What a simulator exposes under ``/_sim/`` (unauthenticated, for tests and the
    benchmark, which drive a simulator running in another process)."""

    health: Callable[[], dict[str, Any]]
    stats: Callable[[], dict[str, Any]]
    reset_stats: Callable[[], None]
    mutate: Callable[..., Any]  # the dataset's mutate(seed=..., <share>=...) → has to_dict()
    truth: Callable[[web.Request], Any]  # may raise ValueError for a bad query
    faults: FaultInjector
    mutation_fields: frozenset[str] = MUTATION_FIELDS


def add_admin_routes(app: web.Application, hooks: AdminHooks) -> None:
    """``GET /_sim/health``, ``GET /_sim/stats``, ``POST /_sim/stats/reset``,
    ``POST /_sim/mutate`` (JSON ``{"seed", <share>...}``; faulty keys are forgotten, so a
    sync after a change meets faults again) and ``GET /_sim/truth``."""

    def answer(data: Any, status: int = 200) -> web.Response:
        return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")

    async def health(request: web.Request) -> web.Response:
        return answer(hooks.health())

    async def stats(request: web.Request) -> web.Response:
        return answer(hooks.stats())

    async def stats_reset(request: web.Request) -> web.Response:
        hooks.reset_stats()
        return answer(hooks.stats())

    async def mutate(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read() or b"{}")
        except orjson.JSONDecodeError:
            body = None
        allowed = {"seed", *hooks.mutation_fields}
        if not isinstance(body, dict) or "seed" not in body or set(body) - allowed:
            return answer({"message": f"expected JSON with seed and any of {sorted(hooks.mutation_fields)}"}, 400)
        summary = hooks.mutate(**body)
        hooks.faults.faulted.clear()
        return answer(summary.to_dict())

    async def truth(request: web.Request) -> web.Response:
        try:
            return answer(hooks.truth(request))
        except ValueError as exc:
            return answer({"message": str(exc)}, 400)

    app.router.add_get("/_sim/health", health)
    app.router.add_get("/_sim/stats", stats)
    app.router.add_post("/_sim/stats/reset", stats_reset)
    app.router.add_post("/_sim/mutate", mutate)
    app.router.add_get("/_sim/truth", truth)
