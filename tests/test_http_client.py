"""The shared HTTP client against a small real aiohttp server on 127.0.0.1: what it
retries (and how long it waits), what it gives up on, what it refuses, what it counts."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from aiohttp import web

from pwh.simulators.simulation import HTML_ERROR_PAGE, serving
from pwh.sources.errors import (
    AuthError,
    ResponseTooLargeError,
    RetriesExhaustedError,
)
from pwh.sources.http import (
    DEFAULT_MAX_RESPONSE_BYTES,
    MAX_RESPONSE_VARIABLE,
    HttpClient,
    HttpSettings,
    StaticHeaders,
    decode_json,
    max_response_bytes_from_env,
)
from pwh.sources.rayteams.client import ProjectNotFoundError, RayteamsClient

GOOD = {"status": "success", "data": [{"_id": "p1"}]}
GOOD_BODY = orjson.dumps(GOOD)

# Retries in milliseconds, not seconds: the tests measure behaviour, not patience.
FAST = dict(backoff_initial_s=0.001, backoff_max_s=0.01, timeout_s=2.0, max_attempts=4)


class Script:
    """A server whose answer to the n-th request (1-based) of a path is scripted."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.plans: dict[str, Callable[[web.Request, int], object]] = {}

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            path = request.path
            self.hits[path] += 1
            plan = self.plans[path]
            result = plan(request, self.hits[path])
            if asyncio.iscoroutine(result):
                result = await result
            return result

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


def ok() -> web.Response:
    return web.Response(body=GOOD_BODY, content_type="application/json")


def fail_first(times: int, failure: Callable[[web.Request], object]):
    """Answer with ``failure`` on the first ``times`` requests, then a good answer."""

    def plan(request: web.Request, n: int):
        return failure(request) if n <= times else ok()

    return plan


@pytest.fixture
async def server():
    script = Script()
    async with serving(script.app()) as base_url:
        yield script, base_url


def client(base_url: str, **settings) -> HttpClient:
    return HttpClient(
        base_url, source="test",
        credentials=StaticHeaders({"Authorization": "Bearer t"}, setting_name="TEST_TOKEN"),
        settings=HttpSettings(**{**FAST, **settings}),
    )


async def get(base_url: str, path: str = "/x", **settings):
    async with client(base_url, **settings) as http:
        value = await http.request("GET", path, decode_json)
        return value, http.stats


# ---------------------------------------------------------------- what is retried


@pytest.mark.parametrize("status", [429, 500, 502, 503])
async def test_a_transient_status_is_retried_until_it_clears(server, status):
    script, url = server
    script.plans["/x"] = fail_first(2, lambda r: web.Response(status=status, text="busy"))
    value, stats = await get(url)
    assert value == GOOD
    assert script.hits["/x"] == 3
    assert stats.requests == 3 and stats.retries == 2
    assert stats.by_status == {status: 2, 200: 1}


async def test_retry_after_in_seconds_is_honoured(server):
    script, url = server
    script.plans["/x"] = fail_first(1, lambda r: web.Response(status=429, headers={"Retry-After": "0.4"}))
    started = time.monotonic()
    value, stats = await get(url)
    assert value == GOOD and stats.retries == 1
    assert time.monotonic() - started >= 0.4  # backoff alone would be ~2 ms


async def test_retry_after_as_an_http_date_is_honoured(server):
    script, url = server
    # HTTP dates have whole seconds: two seconds ahead is at least one second of waiting.
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    script.plans["/x"] = fail_first(1, lambda r: web.Response(status=503, headers={"Retry-After": when}))
    started = time.monotonic()
    value, stats = await get(url)
    assert value == GOOD and stats.retries == 1
    assert time.monotonic() - started >= 1.0


async def test_retry_after_is_capped(server):
    script, url = server
    script.plans["/x"] = fail_first(1, lambda r: web.Response(status=429, headers={"Retry-After": "3600"}))
    started = time.monotonic()
    value, _ = await get(url, max_retry_after_s=0.05)
    assert value == GOOD
    assert time.monotonic() - started < 2


def truncated(request: web.Request) -> web.Response:
    return web.Response(body=GOOD_BODY[: len(GOOD_BODY) // 2], content_type="application/json")


def html_page(request: web.Request) -> web.Response:
    return web.Response(body=HTML_ERROR_PAGE, content_type="text/html")


@pytest.mark.parametrize("failure", [truncated, html_page], ids=["truncated-json", "html-200"])
async def test_a_body_that_is_not_json_is_retried(server, failure):
    script, url = server
    script.plans["/x"] = fail_first(1, failure)
    value, stats = await get(url)
    assert value == GOOD and stats.retries == 1 and script.hits["/x"] == 2


async def test_a_body_cut_short_below_its_content_length_is_retried(server):
    script, url = server

    async def cut(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "Content-Length": str(len(GOOD_BODY))})
        await response.prepare(request)
        await response.write(GOOD_BODY[:10])
        request.transport.close()
        return response

    script.plans["/x"] = fail_first(1, cut)
    value, stats = await get(url)
    assert value == GOOD and stats.retries == 1


async def test_a_connection_reset_is_retried(server):
    script, url = server

    def reset(request: web.Request) -> web.Response:
        request.transport.abort()
        return web.Response(status=500)  # never sent

    # aiohttp itself silently re-sends a GET once when a pooled connection drops, so
    # reset more often than that: the client must see (and retry) at least one.
    script.plans["/x"] = fail_first(3, reset)
    value, stats = await get(url, max_attempts=6)
    assert value == GOOD
    assert script.hits["/x"] == 4
    assert stats.retries >= 1


async def test_a_stall_longer_than_the_timeout_is_retried(server):
    script, url = server

    async def stall(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return ok()

    script.plans["/x"] = fail_first(1, stall)
    started = time.monotonic()
    value, stats = await get(url, timeout_s=0.2)
    assert value == GOOD and stats.retries == 1
    assert time.monotonic() - started < 1.0  # the stalled answer was not waited for


# ---------------------------------------------------------------- what is not


async def test_gives_up_after_max_attempts(server):
    script, url = server
    script.plans["/x"] = lambda r, n: web.Response(status=500)
    with pytest.raises(RetriesExhaustedError, match=r"GET /x: still failing after 3 attempts \(GET /x: HTTP 500\)"):
        await get(url, max_attempts=3)
    assert script.hits["/x"] == 3


async def test_401_is_an_auth_error_naming_the_variable_and_is_not_retried(server):
    script, url = server
    script.plans["/x"] = lambda r, n: web.json_response({"message": "Unauthorized"}, status=401)
    with pytest.raises(AuthError, match="401 Unauthorized; check TEST_TOKEN") as caught:
        await get(url)
    assert "Bearer" not in str(caught.value)
    assert script.hits["/x"] == 1


async def test_rayteams_errors_in_a_200_answer(server):
    script, url = server
    script.plans["/project/gone"] = lambda r, n: web.json_response({"errorCode": "NO_ITEM"})
    script.plans["/project/empty"] = lambda r, n: web.json_response({"status": "success", "data": {}})
    script.plans["/file/empty"] = lambda r, n: web.json_response({"status": "success", "data": {}})
    rayteams = RayteamsClient.connect(url, token="t", client_id="c", settings=HttpSettings(**FAST))
    async with rayteams:
        with pytest.raises(ProjectNotFoundError, match="NO_ITEM"):
            await rayteams.fetch_project_records("gone")
        assert await rayteams.fetch_project_records("empty") == []
        assert await rayteams.fetch_project_files("empty") == []
        assert rayteams.requests == 3 and rayteams.retries == 0
    assert script.hits["/project/gone"] == 1  # a custom error is permanent: no retry


# ---------------------------------------------------------------- the size cap

CAP = 64 * 1024


def big_with_length(request: web.Request) -> web.Response:
    return web.Response(body=b"[" + b"1," * CAP + b"1]", content_type="application/json")


async def big_chunked(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    await response.write(b"[")
    for _ in range(CAP // 2048):  # the same JSON as big_with_length, 2 * CAP bytes
        try:
            await response.write(b"1," * 2048)
        except (ConnectionResetError, ConnectionError):
            break  # the client hung up, as it should
    await response.write(b"1]")
    return response


@pytest.mark.parametrize("answer", [big_with_length, big_chunked], ids=["content-length", "chunked"])
async def test_an_answer_over_the_cap_is_refused_clearly_and_not_retried(server, answer):
    script, url = server
    script.plans["/big"] = lambda r, n: answer(r)
    with pytest.raises(ResponseTooLargeError) as caught:
        await get(url, "/big", max_response_bytes=CAP)
    message = str(caught.value)
    assert "GET /big" in message and f"{CAP:,}-byte cap" in message and MAX_RESPONSE_VARIABLE in message
    assert script.hits["/big"] == 1
    # Under the cap the same answer is read whole.
    value, _ = await get(url, "/big", max_response_bytes=4 * CAP)
    assert len(value) == CAP + 1


def test_the_cap_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(MAX_RESPONSE_VARIABLE, raising=False)
    assert HttpSettings().max_response_bytes == DEFAULT_MAX_RESPONSE_BYTES
    monkeypatch.setenv(MAX_RESPONSE_VARIABLE, "12345")
    assert HttpSettings().max_response_bytes == 12345
    assert HttpSettings(max_response_bytes=7).max_response_bytes == 7  # explicit wins
    monkeypatch.setenv(MAX_RESPONSE_VARIABLE, "lots")
    with pytest.raises(ValueError, match=MAX_RESPONSE_VARIABLE):
        max_response_bytes_from_env()


async def test_credentials_echoed_by_a_server_are_scrubbed_from_errors(server):
    script, url = server
    # The free-text message is dropped whole; the error code passes as a machine token,
    # so an echoed credential in it must be scrubbed.
    echo = lambda r, n: web.json_response(  # noqa: E731
        {"errorCode": r.headers["x-rayteams-client-id"],
         "message": f"bad credentials: {r.headers['Authorization']} / {r.headers['x-rayteams-client-id']}"},
        status=403)
    script.plans["/project"] = echo
    rayteams = RayteamsClient.connect(url, token="tok-echoed-123456", client_id="cid-echoed-7890",
                                      settings=HttpSettings(**FAST))
    async with rayteams:
        with pytest.raises(Exception) as caught:
            await rayteams.list_projects()
    assert str(caught.value) == "HTTP 403 <redacted>"
