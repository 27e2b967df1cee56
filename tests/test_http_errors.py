"""What the shared HTTP client retries and what it gives up on at once, and how its errors
name the place to fix: a real aiohttp server on 127.0.0.1, a closed port, a host name
under ``.invalid`` (RFC 2606: never resolves)."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections import Counter

import pytest
from aiohttp import web

from pwh.simulators.simulation import HTML_ERROR_PAGE, serving
from pwh.sources.errors import ApiError, NotFoundError, RetriesExhaustedError, SourceError
from pwh.sources.http import HttpClient, HttpSettings, StaticHeaders, decode_json
from pwh.sources.openproject.client import read_hal
from pwh.sources.rayteams.client import RayteamsClient, read_envelope

FAST = dict(backoff_initial_s=0.001, backoff_max_s=0.01, timeout_s=5.0, max_attempts=6)

BODIES = {
    "html": (HTML_ERROR_PAGE, "text/html"),
    "empty": (b"", "text/plain"),
    "cut-json": (b'{"errorCode": "NO_', "application/json"),
    "xml": (b"<?xml version='1.0'?><error>nope</error>", "application/xml"),
}


def answering(status: int, body: bytes, content_type: str, hits: Counter) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        hits[request.path] += 1
        return web.Response(status=status, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def client(base_url: str) -> HttpClient:
    return HttpClient(base_url, source="test", settings=HttpSettings(**FAST),
                      credentials=StaticHeaders({"Authorization": "Bearer secret-token-1234"}, setting_name="T"))


@pytest.mark.parametrize("decode", [decode_json, read_envelope, read_hal], ids=["json", "rayteams", "openproject"])
@pytest.mark.parametrize("body", sorted(BODIES))
@pytest.mark.parametrize("status", [400, 404, 405, 410, 422])
async def test_a_client_error_status_is_final_whatever_its_body(status, body, decode):
    """A 4xx (other than 401, 408, 425, 429) is the server's final word: one request, a
    permanent error; its body is not read as a truncated answer to retry."""
    hits: Counter = Counter()
    async with serving(answering(status, *BODIES[body], hits)) as url:
        async with client(url) as http:
            with pytest.raises((NotFoundError, ApiError)) as caught:
                await http.request("GET", "/project", decode)
    assert hits["/project"] == 1
    assert not isinstance(caught.value, RetriesExhaustedError)
    assert isinstance(caught.value, NotFoundError) == (status == 404)
    assert f"HTTP {status}" in str(caught.value)
    assert "secret-token" not in str(caught.value) and "nope" not in str(caught.value)


@pytest.mark.parametrize("status", [408, 425, 429, 503])
async def test_timeout_and_throttling_statuses_are_retried(status):
    hits: Counter = Counter()
    async with serving(answering(status, HTML_ERROR_PAGE, "text/html", hits)) as url:
        async with client(url) as http:
            with pytest.raises(RetriesExhaustedError, match=f"HTTP {status}"):
                await http.request("GET", "/x", decode_json)
    assert hits["/x"] == FAST["max_attempts"]


async def test_a_404_carries_the_url_without_its_query():
    hits: Counter = Counter()
    async with serving(answering(404, HTML_ERROR_PAGE, "text/html", hits)) as url:
        port = url.rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}/v1.0"
        rayteams = RayteamsClient.connect(base, token="tok-secret", client_id="c", settings=HttpSettings(**FAST))
        async with rayteams:
            with pytest.raises(NotFoundError) as caught:
                await rayteams.http.request("GET", "/project?key=tok-secret", read_envelope)
    assert caught.value.url == f"http://127.0.0.1:{port}/v1.0/project"
    assert hits["/v1.0/project"] == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_refused_connection_names_host_and_port():
    port = closed_port()
    async with client(f"http://127.0.0.1:{port}/api") as http:
        with pytest.raises(RetriesExhaustedError) as caught:
            await http.request("GET", "/projects", decode_json)
    assert f"cannot connect to 127.0.0.1:{port}: connection refused" in str(caught.value)


@pytest.mark.parametrize("host", ["pwh-test.invalid", "api.eu-central-9-project.rayteams.invalid"])
async def test_a_host_that_does_not_resolve_is_tried_twice_and_named(host):
    async with client(f"https://{host}/v1.0") as http:
        with pytest.raises(RetriesExhaustedError) as caught:
            await http.request("GET", "/project", decode_json)
        assert http.stats.retries == 1
    assert str(caught.value) == (f"GET /project: still failing after 2 attempts "
                                 f"(GET /project: cannot resolve host {host})")


@pytest.fixture
def self_signed(tmp_path) -> ssl.SSLContext:
    """A server context with a certificate no trust store holds."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


async def test_an_untrusted_certificate_is_final_and_names_host_and_port(self_signed):
    """A self-signed certificate is not a hiccup: one attempt, the host and port named."""
    hits: Counter = Counter()
    runner = web.AppRunner(answering(200, b"{}", "application/json", hits))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self_signed)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        async with client(f"https://127.0.0.1:{port}/api") as http:
            with pytest.raises(SourceError) as caught:
                await http.request("GET", "/projects", decode_json)
            assert http.stats.retries == 0
    finally:
        await runner.cleanup()
    assert str(caught.value) == (f"GET /projects: the TLS certificate of 127.0.0.1:{port} is not trusted; "
                                 "check the base URL's host (or add its CA: SSL_CERT_FILE)")
    assert not isinstance(caught.value, RetriesExhaustedError)
