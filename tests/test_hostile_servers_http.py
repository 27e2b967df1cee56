"""Hostile and broken servers against the shared HTTP layer (issue 15, items 1, 2, 3, 8, 9):
compression bombs, echoed credentials, server text in errors, redirects off the origin,
answers with one bad character. Every server is the test's own aiohttp app on 127.0.0.1;
the end-to-end tests put a hostile proxy in front of the RAYTeams simulator and run the
engine's plain stages into a real DuckDB file."""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import struct
import time
import traceback
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import duckdb
import orjson
import pytest
from aiohttp import ClientSession, web

from pwh.flows.rayteams_sync import RayteamsAdapter
from pwh.flows.runner import sync_into_warehouse
from pwh.schemas import rayteams as tables
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.simulators.simulation import serving
from pwh.sources.clarity.client import ClarityClient
from pwh.sources.errors import (
    RedirectRefusedError,
    ResponseTooLargeError,
    SourceError,
    TransientError,
)
from pwh.sources.http import (
    Answer,
    HttpClient,
    HttpSettings,
    StaticHeaders,
    decode_json,
    scrub,
)
from pwh.sources.incoplax.client import IncoplaxClient
from pwh.sources.openproject.client import OpenProjectClient
from pwh.sources.rayteams.client import RayteamsClient
from pwh.transforms.pseudonym import Pseudonymizer

FAST = dict(backoff_initial_s=0.001, backoff_max_s=0.01, timeout_s=10.0, max_attempts=3)
TOKEN = "tok-HOSTILE-5e4d3c2b1a09f8e7"
CLIENT_ID = "cid-HOSTILE-77aa88bb99cc"


class Server:
    """One path → one handler; counts hits and keeps the headers each request carried."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.headers: list[dict[str, str]] = []
        self.routes: dict[str, Callable[[web.Request], Awaitable[web.StreamResponse] | web.StreamResponse]] = {}

    def app(self) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.hits[request.path] += 1
            self.headers.append(dict(request.headers))
            result = self.routes[request.path](request)
            return await result if asyncio.iscoroutine(result) else result

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        return app


@pytest.fixture
async def server():
    script = Server()
    async with serving(script.app()) as url:
        yield script, url


@pytest.fixture
async def foreign():
    """Another origin: same address, another port."""
    script = Server()
    async with serving(script.app()) as url:
        yield script, url


def http(url: str, **settings) -> HttpClient:
    return HttpClient(url, source="test", settings=HttpSettings(**{**FAST, **settings}),
                      credentials=StaticHeaders({"Authorization": f"Bearer {TOKEN}", "x-rayteams-client-id": CLIENT_ID},
                                                setting_name="TEST_TOKEN"))


# ------------------------------------------------------------------ 1. compression bombs

MiB = 1024 * 1024
BOMB_SIZE = 1024 * MiB  # inflated
CAP = 1 * MiB


def _bomb(encoding: str) -> bytes:
    """1 GiB of JSON whitespace (a valid prefix of a JSON document) as a valid gzip or
    zlib ("deflate") stream. Built in ~1 s, not by compressing 1 GiB: after a full flush a
    deflate stream keeps no history, so one compressed MiB repeats as it is."""
    block = b" " * MiB
    raw = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = raw.compress(block) + raw.flush(zlib.Z_FULL_FLUSH)
    stream = piece * (BOMB_SIZE // MiB) + raw.flush(zlib.Z_FINISH)
    if encoding == "gzip":
        crc = 0
        for _ in range(BOMB_SIZE // MiB):
            crc = zlib.crc32(block, crc)
        return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + stream + struct.pack("<II", crc, BOMB_SIZE % 2**32)
    adler = 1
    for _ in range(BOMB_SIZE // MiB):
        adler = zlib.adler32(block, adler)
    return b"\x78\xda" + stream + struct.pack(">I", adler)


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    bombs = {"gzip": _bomb("gzip"), "deflate": _bomb("deflate")}
    assert len(zlib.decompressobj(31).decompress(bombs["gzip"][:64 * 1024], MiB)) == MiB  # a real stream
    return bombs


def bomb_route(body: bytes, encoding: str, chunked: bool):
    async def handle(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding}
        if not chunked:
            return web.Response(body=body, headers=headers)
        response = web.StreamResponse(headers=headers)
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for start in range(0, len(body), 64 * 1024):
                await response.write(body[start:start + 64 * 1024])
        except ConnectionError:
            pass  # the client hung up, as it should
        return response

    return handle


@pytest.mark.parametrize(("encoding", "chunked"), [("gzip", False), ("deflate", False), ("gzip", True)],
                         ids=["gzip-content-length", "deflate-content-length", "gzip-chunked"])
async def test_a_compression_bomb_is_refused_at_the_decoded_cap_without_inflating_it(server, bombs, encoding, chunked):
    script, url = server
    body = bombs[encoding]
    assert len(body) < 2 * MiB  # the Content-Length a server sends: far under any cap
    script.routes["/bomb"] = bomb_route(body, encoding, chunked)
    tracemalloc.start()
    started = time.monotonic()
    try:
        async with http(url, max_response_bytes=CAP) as client:
            with pytest.raises(ResponseTooLargeError, match=r"GET /bomb: answer exceeds the 1,048,576-byte cap"):
                await client.request("GET", "/bomb", decode_json)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 10  # inflating 1 GiB (let alone twice) is not what took the time
    assert peak < 64 * MiB, f"peak {peak / MiB:.0f} MiB while refusing a bomb against a 1 MiB cap"
    assert script.hits["/bomb"] == 1  # refused, not retried


async def test_a_compressed_answer_under_the_cap_is_read_whole(server):
    script, url = server
    payload = orjson.dumps({"data": ["x" * 100] * 1000})
    script.routes["/small"] = lambda r: web.Response(body=gzip.compress(payload), headers={
        "Content-Type": "application/json", "Content-Encoding": "gzip"})
    async with http(url, max_response_bytes=len(payload)) as client:
        assert await client.request("GET", "/small", decode_json) == orjson.loads(payload)
    async with http(url, max_response_bytes=len(payload) - 1) as client:
        with pytest.raises(ResponseTooLargeError):  # one byte over, whatever was on the wire
            await client.request("GET", "/small", decode_json)


# ------------------------------------------------------------------ 8. redirects

REDIRECTS = [301, 302, 303, 307, 308]


def redirect(to: str, status: int):
    return lambda request: web.Response(status=status, headers={"Location": to})


@pytest.mark.parametrize("status", REDIRECTS)
async def test_a_redirect_to_another_origin_is_refused_and_one_within_it_followed(server, foreign, status):
    script, url = server
    elsewhere, foreign_url = foreign
    script.routes["/project"] = redirect(f"{foreign_url}/steal?token=abc", status)
    elsewhere.routes["/steal"] = lambda r: web.json_response({"status": "success", "data": [{"_id": "evil"}]})
    script.routes["/old"] = redirect("/new?x=1", status)
    script.routes["/new"] = lambda r: web.json_response({"method": r.method, "query": dict(r.query),
                                                        "client_id": r.headers.get("x-rayteams-client-id")})
    async with http(url) as client:
        with pytest.raises(RedirectRefusedError) as refused:
            await client.request("GET", "/project", decode_json, params={"page": "2"})
        followed = await client.request("POST", "/old", decode_json, data=b"{}")
    # 303 (and 301/302 after a POST) turn into GET, as browsers and aiohttp do; 307/308 keep the method.
    assert followed == {"method": "POST" if status in (307, 308) else "GET", "query": {"x": "1"},
                        "client_id": CLIENT_ID}
    message = str(refused.value)
    assert message.startswith(f"GET /project: HTTP {status} redirect to another origin ({foreign_url})")
    assert "?" not in message and "token" not in message and "page" not in message
    assert not elsewhere.hits  # no credential, no request at all reached the other origin
    assert script.hits["/project"] == 1  # permanent: not retried


async def test_a_chain_that_leaves_the_origin_on_its_second_hop_is_refused(server, foreign):
    script, url = server
    elsewhere, foreign_url = foreign
    host_alias = url.replace("127.0.0.1", "localhost")  # same port, another host: another origin
    script.routes["/a"] = redirect("/b", 307)
    script.routes["/b"] = redirect(f"{host_alias}/c", 301)
    script.routes["/c"] = lambda r: web.json_response({"stolen": True})
    async with http(url) as client:
        with pytest.raises(RedirectRefusedError, match=r"GET /a: HTTP 301 redirect to another origin \(http://localhost:\d+\)"):
            await client.request("GET", "/a", decode_json)
        script.routes["/b"] = redirect(f"{foreign_url}/c", 308)
        with pytest.raises(RedirectRefusedError, match="another origin"):
            await client.request("GET", "/a", decode_json)
    assert script.hits["/c"] == 0 and not elsewhere.hits
    assert script.hits["/a"] == script.hits["/b"] == 2


async def test_a_redirect_loop_is_a_permanent_error(server):
    script, url = server
    script.routes["/loop"] = redirect("/loop", 302)
    async with http(url) as client:
        with pytest.raises(RedirectRefusedError, match="GET /loop: more than 10 redirects"):
            await client.request("GET", "/loop", decode_json)
    assert script.hits["/loop"] == 11


async def test_openproject_refuses_a_redirect_off_its_origin_as_it_refuses_such_links(server, foreign):
    script, url = server
    elsewhere, foreign_url = foreign
    script.routes["/api/v3/projects/7"] = redirect(f"{foreign_url}/api/v3/projects/7", 307)
    client = OpenProjectClient.connect(url, api_key="k" * 40, settings=HttpSettings(**FAST))
    async with client:
        with pytest.raises(RedirectRefusedError, match="another origin"):
            await client.fetch_project("7")
    assert not elsewhere.hits


# ------------------------------------------------------------------ 2. credentials echoed back


def echo_everything(request: web.Request) -> str:
    """Every form a credential may come back in: raw, decoded Basic parts, base64 of the
    parts, fragments, case changes."""
    sent = request.headers.get("Authorization", "")
    scheme, _, rest = sent.partition(" ")
    forms = [sent, rest, request.headers.get("x-rayteams-client-id", "")]
    if scheme == "Basic":
        user, _, password = base64.b64decode(rest).decode().partition(":")
        forms += [f"{user}:{password}", password, base64.b64encode(password.encode()).decode(),
                  password[3:15].upper(), f"user={user}&pass={password[:-2]}"]
    else:
        forms += [rest[4:14], rest[::-1][:3] + rest[6:16]]
    return " | ".join(forms)


SECRETS = {
    "rayteams": (TOKEN, CLIENT_ID),
    "openproject": ("op-apikey-0d9c8b7a6f5e4d3c2b1a",),
    "clarity": ("clarity-user", "pw-Clarity-1q2w3e4r5t"),
    "incoplax": ("incoplax-ops", "pw-Incoplax-9o8i7u6y"),
}


def fragments(secret: str) -> list[str]:
    return [secret[i:i + 8] for i in range(len(secret) - 7)]


@pytest.mark.parametrize("source", sorted(SECRETS))
async def test_no_form_of_an_echoed_credential_reaches_an_error(server, source):
    """Each source's own error shape, with its machine-code field as well as its free
    text echoing the credentials: the code passes as a token, so scrubbing must catch it."""
    script, url = server

    def answer(request: web.Request) -> web.Response:
        echoed = echo_everything(request)
        token = (request.headers.get("x-rayteams-client-id") or echoed.split(" | ")[-3])[:64]
        if source == "clarity":
            body = (f'<exc:exception xmlns:exc="http://genologics.com/ri/exception" code={quoteattr(token)} '
                    f'category={quoteattr(token)}><message>{escape(echoed)}</message></exc:exception>')
            return web.Response(status=403, body=body.encode(), content_type="application/xml")
        body = {"rayteams": {"errorCode": token, "message": echoed},
                "openproject": {"_type": "Error", "message": echoed,
                                "errorIdentifier": f"urn:openproject-org:api:v3:errors:{token}"},
                "incoplax": {"error_code": token, "error_message": echoed}}[source]
        return web.json_response(body, status=403)

    script.routes.update({p: answer for p in ("/project", "/api/v3/projects", "/projects",
                                             "/rest/v1/domain/projects")})
    settings = HttpSettings(**FAST)
    connect = {
        "rayteams": lambda: RayteamsClient.connect(url, token=TOKEN, client_id=CLIENT_ID, settings=settings),
        "openproject": lambda: OpenProjectClient.connect(url, api_key=SECRETS["openproject"][0], settings=settings),
        "clarity": lambda: ClarityClient.connect(url, username=SECRETS["clarity"][0],
                                                 password=SECRETS["clarity"][1], settings=settings),
        "incoplax": lambda: IncoplaxClient.connect(url, auth_scheme="basic", username=SECRETS["incoplax"][0],
                                                   password=SECRETS["incoplax"][1], settings=settings),
    }[source]()
    async with connect:
        with pytest.raises(SourceError) as caught:
            await connect.list_projects()
    message = str(caught.value) + repr(vars(caught.value))  # its message and its attributes (code, ...)
    assert "403" in message and script.hits and sum(script.hits.values()) == 1
    leaked = [f for s in SECRETS[source] for f in fragments(s) if f.lower() in message.lower()]
    assert not leaked, f"{len(leaked)} fragment(s) of a credential in {message!r}"


def test_scrub_removes_every_form_and_long_fragments_but_not_our_words():
    password = "s3cret-Passw0rd-XYZ"
    sent = {"Authorization": "Basic " + base64.b64encode(f"someone:{password}".encode()).decode()}
    for echoed in (password, base64.b64encode(password.encode()).decode(), password.upper(),
                   f"someone:{password}", password[2:12], "Basic " + sent["Authorization"][6:]):
        clean = scrub(f"GET /x: HTTP 403 {echoed} refused", sent)
        assert clean == "GET /x: HTTP 403 <redacted> refused", echoed
    # A short fragment is not a secret, and the rest of a message stays readable.
    assert scrub("GET /x: HTTP 403 Passw", sent) == "GET /x: HTTP 403 Passw"
    assert scrub("refresh rtok-0123456789 gone", sent, extra=("rtok-0123456789",)) == "refresh <redacted> gone"


# ------------------------------------------------------------------ 3. no server text


async def test_error_messages_keep_the_status_and_a_safe_code_only(server):
    script, url = server
    patient = "Jane Roe born 1980-02-29"
    shapes = {
        "/project/a": (403, {"errorCode": "FORBIDDEN_PROJECT", "message": patient}, "HTTP 403 FORBIDDEN_PROJECT"),
        "/project/b": (409, {"code": f"CONFLICT {patient}", "message": patient}, "HTTP 409"),
        "/project/c": (200, {"errorCode": patient}, "custom error (unrecognised code)"),
        "/project/d": (200, {"status": patient, "data": []}, "envelope status (unrecognised), not success"),
        "/project/e": (422, {"errorCode": "x" * 65, "detail": patient}, "HTTP 422"),
    }
    for path, (status, body, _) in shapes.items():
        script.routes[path] = lambda r, status=status, body=body: web.json_response(body, status=status)
    client = RayteamsClient.connect(url, token=TOKEN, client_id=CLIENT_ID, settings=HttpSettings(**FAST))
    async with client:
        for path, (_, _, expected) in shapes.items():
            with pytest.raises(SourceError) as caught:
                await client.fetch_project_records(path.rsplit("/", 1)[1])
            assert str(caught.value) == expected


# ------------------------------------------------------------------ 9. one bad character


@pytest.mark.parametrize(("raw", "value"), [
    (b'{"name": "Ann \\ud83d"}', {"name": "Ann \ufffd"}),  # lone high surrogate
    (b'{"name": "\\udc00x"}', {"name": "\ufffdx"}),  # lone low surrogate
    (b'{"\\ud800": "\\ud83d\\ude00"}', {"\ufffd": "\U0001f600"}),  # a bad key; a good pair stays whole
    (b'{"name": "caf\xe9 \xff"}', {"name": "caf\ufffd \ufffd"}),  # bytes that are not UTF-8
    (b'{"size": 1e400, "low": -1e400}', {"size": "1e400", "low": "-1e400"}),
    (b'[NaN, Infinity, -Infinity, 1.5]', ["NaN", "Infinity", "-Infinity", 1.5]),
    (b'[1e400, 123456789012345678901234567890]', ["1e400", 1.2345678901234568e29]),
    (b'["\xc3", ' + b"7" * 5000 + b"]", ["\ufffd", "7" * 5000]),  # beyond int() digits limit and a double
    (b"[" * 900 + b'"\\udc00"' + b"]" * 900, functools.reduce(lambda inner, _: [inner], range(900), "\ufffd")),
])
def test_an_answer_with_one_bad_character_is_decoded_but_one_cut_short_stays_transient(raw, value):
    assert decode_json(Answer(200, {}, raw)) == value
    # The same answer cut short is not JSON at all (a dropped connection): retried.
    with pytest.raises(TransientError, match="not valid JSON"):
        decode_json(Answer(200, {}, raw[:-1]))
    # Nor is one nested deeper than any JSON reader here goes: retried, not a crash.
    with pytest.raises(TransientError, match="not valid JSON"):
        decode_json(Answer(200, {}, b"[" * 100_000 + raw + b"]" * 100_000))


# ------------------------------------------------------------------ end to end


def proxy(upstream: str, override: Callable[[web.Request, bytes], web.StreamResponse | None]) -> web.Application:
    """Forwards every request to the simulator; ``override`` may answer instead, given the
    request and the simulator's answer body."""

    async def handle(request: web.Request) -> web.StreamResponse:
        async with ClientSession() as session:
            async with session.request(request.method, upstream + request.path_qs,
                                       headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                                       data=await request.read()) as answer:
                body = await answer.read()
                status = answer.status
        hostile = override(request, body)
        return hostile if hostile is not None else web.Response(status=status, body=body,
                                                                content_type="application/json")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def plain_sync(base_url: str, db: Path) -> dict:
    client = RayteamsClient.connect(base_url, token=TOKEN, client_id=CLIENT_ID,
                                    settings=HttpSettings(**{**FAST, "timeout_s": 5.0}))
    adapter = RayteamsAdapter(client, account="default", strategy="aggregate",
                              pseudonyms=Pseudonymizer(b"k" * 32))
    return await sync_into_warehouse(adapter, db_path=str(db), tables=tables.TABLES, mode="incremental",
                                     batch_size=8)


async def sync_behind(dataset: RayteamsDataset, db: Path,
                      override: Callable[[web.Request, bytes], web.StreamResponse | None]) -> dict:
    options = SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)
    async with running_simulator(dataset, options) as simulator:
        root = simulator.removesuffix("/v1.0")
        async with serving(proxy(root, override)) as front:
            return await plain_sync(front + "/v1.0", db)


def ledger(db: Path) -> tuple[str, dict, str | None]:
    con = duckdb.connect(str(db), read_only=True)
    status, failed, error = con.execute("SELECT status, failed_units, error FROM pipeline.runs").fetchall()[-1]
    con.close()
    return status, orjson.loads(failed) if failed else {}, error


async def test_sync_behind_a_proxy_that_echoes_credentials_and_patient_data_stores_neither(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=151, n_projects=6))
    victim = dataset.project_ids()[1]
    names = sorted(dataset.patient_names())

    def override(request: web.Request, body: bytes) -> web.Response | None:
        if request.path.endswith(f"/project/{victim}"):
            message = f"{names[0]} (born 1941-02-17) may not be read with {echo_everything(request)}"
            return web.json_response({"errorCode": request.headers["x-rayteams-client-id"], "message": message,
                                      "token": request.headers["Authorization"]}, status=403)
        return None

    db = tmp_path / "w.duckdb"
    summary = await sync_behind(dataset, db, override)
    status, failed, _ = ledger(db)
    assert summary["status"] == status == "partial" and list(failed) == [victim]
    assert failed[victim] == "HTTP 403 <redacted>"

    # The project list itself refused, its error code a piece of the token: the run fails.
    def refuse_list(request: web.Request, body: bytes) -> web.Response | None:
        if not request.path.endswith("/project"):
            return None
        return web.json_response({"errorCode": request.headers["Authorization"][7:27],
                                  "message": echo_everything(request)}, status=403)

    with pytest.raises(SourceError) as refused:
        await sync_behind(dataset, db, refuse_list)
    status, _, error = ledger(db)
    assert status == "failed" and error == "ApiError: HTTP 403 <redacted>"
    text = "".join(traceback.format_exception(refused.value)) + repr(vars(refused.value)) + error
    stored = db.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    for secret in (TOKEN, CLIENT_ID, *fragments(TOKEN), *fragments(CLIENT_ID), *names):
        assert secret.encode() not in stored and secret not in text


async def test_sync_behind_a_proxy_that_redirects_a_project_off_the_origin_loads_nothing_foreign(tmp_path, foreign):
    elsewhere, foreign_url = foreign
    elsewhere.routes["/v1.0/project/evil"] = lambda r: web.json_response(
        {"status": "success", "data": [{"_id": "evil", "sk": "project", "name": "foreign"}]})
    dataset = RayteamsDataset(DatasetConfig(seed=152, n_projects=5))
    victim = dataset.project_ids()[0]

    def override(request: web.Request, body: bytes) -> web.Response | None:
        if request.path.endswith(f"/project/{victim}"):
            return web.Response(status=302, headers={"Location": f"{foreign_url}/v1.0/project/evil?sig=1"})
        return None

    db = tmp_path / "w.duckdb"
    summary = await sync_behind(dataset, db, override)
    status, failed, _ = ledger(db)
    assert summary["status"] == status == "partial" and list(failed) == [victim]
    assert failed[victim].startswith(f"GET /project/{victim}: HTTP 302 redirect to another origin ({foreign_url})")
    assert not elsewhere.hits
    con = duckdb.connect(str(db), read_only=True)
    ids = {row[0] for row in con.execute("SELECT project_id FROM rayteams.projects").fetchall()}
    con.close()
    assert ids == set(dataset.project_ids()) - {victim}


async def test_sync_with_a_bad_character_or_a_huge_number_keeps_the_project(tmp_path):
    dataset = RayteamsDataset(DatasetConfig(seed=153, n_projects=5))
    surrogate, invalid_utf8, huge = dataset.project_ids()[1:4]
    marker = "BAD-VALUE-HERE"
    spoil = {surrogate: ("name", b'"Case \\ud83d"'), invalid_utf8: ("name", b'"Case \xff\xfe"'),
             huge: ("size", b"1e400")}

    def override(request: web.Request, body: bytes) -> web.Response | None:
        project = request.path.rsplit("/", 1)[-1]
        if "/project/" not in request.path or project not in spoil:
            return None
        field, raw_value = spoil[project]
        data = orjson.loads(body)
        for record in data["data"]:
            if record.get("sk") == "project":
                record[field] = marker
        raw = orjson.dumps(data).replace(f'"{marker}"'.encode(), raw_value)
        return web.Response(body=raw, content_type="application/json")

    db = tmp_path / "w.duckdb"
    summary = await sync_behind(dataset, db, override)
    status, failed, _ = ledger(db)
    assert status == summary["status"] == "success" and not failed
    assert summary["retries"] == 0  # decoded at once, not retried to failure
    con = duckdb.connect(str(db), read_only=True)
    names = dict(con.execute("SELECT project_id, name FROM rayteams.projects").fetchall())
    rejected = con.execute("SELECT reasons FROM pipeline.rejected_records WHERE record_key LIKE ?",
                           [f"{huge}%"]).fetchall()
    con.close()
    assert names[surrogate] == "Case \ufffd" and names[invalid_utf8] == "Case \ufffd\ufffd"
    # A number beyond a double is kept as its text: the record's schema refuses it, so
    # validation deals with that record (quarantined, or the field NULL with its reason),
    # and the project is not lost.
    assert huge in names or any("1e400" in reasons for (reasons,) in rejected), (names.get(huge), rejected)


CLARITY_PROJECT = (b'<prj:project xmlns:prj="http://genologics.com/ri/project" limsid="ADM1" uri="/api/v2/projects/ADM1">'
                   b"<name>Case NAME</name><open-date>2026-01-02</open-date></prj:project>")


@pytest.mark.parametrize(("name", "read"), [
    (b"A\x01B", "A\ufffdB"),  # a control character XML 1.0 forbids
    (b"caf\xe9", "caf\ufffd"),  # not UTF-8
    (b"&#2;&#x41;&#xFFFE;", "\ufffdA\ufffd"),  # references to forbidden characters (and a fine one)
])
async def test_a_clarity_answer_with_a_character_xml_forbids_is_read_not_retried(server, name, read):
    script, url = server
    body = CLARITY_PROJECT.replace(b"NAME", name)
    script.routes["/projects/ADM1"] = lambda r: web.Response(body=body, content_type="application/xml")
    client = ClarityClient.connect(url, username="u", password="p", settings=HttpSettings(**FAST))
    async with client:
        project = await client.fetch_project("ADM1")
    assert project["name"] == f"Case {read}" and project["open_date"] == "2026-01-02"
    assert script.hits["/projects/ADM1"] == 1
