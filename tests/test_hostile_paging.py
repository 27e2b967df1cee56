"""Servers that do not page honestly, of the test's own on 127.0.0.1: a page that adds
nothing new fails the listing (and so the run: nothing is marked deleted), an element
served again under another offset is kept once, and the distinct elements a walk may
hold are bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp import web

from pwh.flows.engine import run_sync
from pwh.flows.incoplax_sync import IncoplaxAdapter
from pwh.simulators.simulation import serving
from pwh.sources.clarity.client import ClarityClient
from pwh.sources.errors import ApiError
from pwh.sources.incoplax.client import IncoplaxClient
from pwh.sources.openproject.client import OpenProjectClient
from pwh.sources.paging import collect_pages
from pwh.warehouse.connection import connect
from pwh.warehouse.migrations import migrate

TOKEN = "tok-SECRET-paging-5e"
N = 10


def entity(i: int) -> dict:
    return {"id": f"p{i:03d}", "code": str(1000 + i), "name": f"Project {i}",
            "opts": {"title": f"T{i}", "comment": ""},
            "ext": {"ct": "2026-01-01T00:00:00+00:00", "lwt": f"2026-01-02T00:00:{i:02d}+00:00"}}


# ------------------------------------------------------------------ Incoplax: offset/limit
# How a server answers offset/limit: (offset, limit, entities) -> the page.
INCOPLAX_PAGING: dict[str, Callable[[int, int, list[dict]], list[dict]]] = {
    "honest": lambda offset, limit, items: items[offset: offset + limit],
    # The 6.9 GB case: every offset gets the first page.
    "same page for every offset": lambda offset, limit, items: items[:limit],
    # Never empty: the same elements again under later offsets, wrapping around.
    "wraps around": lambda offset, limit, items: [items[(offset + i) % len(items)] for i in range(limit)],
    # A window that moves by one element per request whatever the offset says.
    "window shifting by one": lambda offset, limit, items: items[offset // limit: offset // limit + limit],
    # Windows overlapping by half: the walk runs out of new elements before the end.
    "overlapping by half": lambda offset, limit, items: items[offset // 2: offset // 2 + limit],
    # Each page starts with the previous page's last element (as when a project is
    # inserted while paging): every page still brings new ones, the end is an empty page.
    "repeating one at the top": lambda offset, limit, items: items[max(offset - 1, 0): max(offset - 1, 0) + limit],
}


def incoplax_app(state: dict) -> web.Application:
    app = web.Application()

    async def projects(request: web.Request) -> web.Response:
        offset, limit = int(request.query["offset"]), int(request.query["limit"])
        state["requests"] += 1
        return web.json_response(INCOPLAX_PAGING[state["paging"]](offset, limit, state["items"]))

    app.router.add_get("/rest/v1/domain/projects", projects)
    return app


@pytest.mark.parametrize("paging", ["same page for every offset", "wraps around", "window shifting by one",
                                    "overlapping by half"])
async def test_incoplax_paging_that_adds_nothing_fails_the_listing(paging):
    state = {"paging": paging, "items": [entity(i) for i in range(N)], "requests": 0}
    async with serving(incoplax_app(state)) as url:
        async with IncoplaxClient.connect(url, token=TOKEN, page_size=4) as client:
            with pytest.raises(ApiError, match="adds no element not already served"):
                await client.list_projects()
    assert state["requests"] < 2 * N


async def test_incoplax_overlapping_pages_list_each_project_once():
    # Every page brings something new: the listing is whole, each project once (the
    # repeats are dropped while paging, not held).
    state = {"paging": "repeating one at the top", "items": [entity(i) for i in range(N)], "requests": 0}
    async with serving(incoplax_app(state)) as url:
        async with IncoplaxClient.connect(url, token=TOKEN, page_size=4) as client:
            listed = await client.list_projects()
    assert [e["id"] for e in listed] == [f"p{i:03d}" for i in range(N)]


async def test_a_server_that_stops_paging_fails_the_run_and_deletes_nothing(tmp_path):
    state = {"paging": "honest", "items": [entity(i) for i in range(N)], "requests": 0}
    con = connect(tmp_path / "w.duckdb")
    migrate(con)
    try:
        async with serving(incoplax_app(state)) as url:
            async with IncoplaxAdapter(IncoplaxClient.connect(url, token=TOKEN, page_size=4), account="a") as adapter:
                first = await run_sync(adapter, con, run_id="first")
            state["paging"] = "same page for every offset"
            async with IncoplaxAdapter(IncoplaxClient.connect(url, token=TOKEN, page_size=4), account="a",
                                       mode="full_refresh") as adapter:
                with pytest.raises(ApiError, match="paging broken"):
                    await run_sync(adapter, con, run_id="second", mode="full_refresh", allow_mass_delete=True)
        status = con.execute("SELECT status FROM pipeline.runs WHERE run_id = 'second'").fetchall()
        marked = con.execute("SELECT count(*) FROM incoplax.projects WHERE deleted_at IS NOT NULL").fetchall()
    finally:
        con.close()
    assert first.units_new == N and status == [("failed",)] and marked == [(0,)]


# ------------------------------------------------------------------ OpenProject: HAL pages
def openproject_app(paging: str) -> web.Application:
    app = web.Application()

    async def projects(request: web.Request) -> web.Response:
        page = int(request.query.get("offset", "1"))
        size = int(request.query.get("pageSize", "3"))
        served = {"honest": page, "same page, next link moving on": 1}.get(paging, page)
        elements = [{"_type": "Project", "id": i, "identifier": f"p{i}", "name": f"P{i}",
                     "_links": {"self": {"href": f"/api/v3/projects/{i}"}}}
                    for i in range((served - 1) * size + 1, min(served * size, N) + 1)]
        if paging.startswith("empty page before the total") and page == 2:
            elements = []
        if paging == "empty page before the total, no next link" and page == 2:
            size = N  # the links below then say it is the last page
        links = {"self": {"href": str(request.rel_url)}}
        if page * size < N:
            links["nextByOffset"] = {"href": f"/api/v3/projects?offset={page + 1}&pageSize={size}"}
        body = {"_type": "Collection", "total": N, "count": len(elements), "pageSize": size, "offset": page,
                "_embedded": {"elements": elements}, "_links": links}
        return web.json_response(body, content_type="application/hal+json")

    app.router.add_get("/api/v3/projects", projects)
    return app


@pytest.mark.parametrize(("paging", "error"), [
    ("same page, next link moving on", "adds no element not already served"),
    ("empty page before the total", "adds no element not already served"),
    ("empty page before the total, no next link", "empty after 3 of the 10 elements the server states"),
])
async def test_openproject_pages_that_add_nothing_fail_the_listing(paging, error):
    async with serving(openproject_app(paging)) as url:
        async with OpenProjectClient.connect(url, api_key="k" * 40, page_size=3) as client:
            with pytest.raises(ApiError, match=error):
                await client.list_projects()


async def test_openproject_honest_pages_list_every_project():
    async with serving(openproject_app("honest")) as url:
        async with OpenProjectClient.connect(url, api_key="k" * 40, page_size=3) as client:
            listed = await client.list_projects()
    assert [e["id"] for e in listed] == list(range(1, N + 1))


# ------------------------------------------------------------------ Clarity: next-page links
PRJ = "http://genologics.com/ri/project"


def clarity_app() -> web.Application:
    """Every start-index gets the first page's projects, and a next-page link onwards."""
    app = web.Application()

    async def projects(request: web.Request) -> web.Response:
        start = int(request.query.get("start-index", "0"))
        links = "".join(f'<project uri="http://x/api/v2/projects/P{i}" limsid="P{i}"><name>n{i}</name></project>'
                        for i in range(3))
        body = (f'<prj:projects xmlns:prj="{PRJ}">{links}'
                f'<next-page uri="http://x/api/v2/projects?start-index={start + 3}"/></prj:projects>')
        return web.Response(body=body.encode(), content_type="application/xml")

    app.router.add_get("/api/v2/projects", projects)
    return app


async def test_clarity_next_page_links_serving_the_same_projects_fail_the_listing():
    async with serving(clarity_app()) as url:
        async with ClarityClient.connect(url + "/api/v2", username="u", password="p" * 12) as client:
            with pytest.raises(ApiError, match="adds no element not already served"):
                await client.list_projects()


# ------------------------------------------------------------------ the bound
def test_a_walk_holds_at_most_max_elements_distinct_elements():
    async def fetch(n: int) -> list[int]:  # a server inventing new elements forever
        return list(range(n * 10, n * 10 + 10))

    with pytest.raises(ApiError, match="exceeds 50 elements"):
        asyncio.run(collect_pages(fetch, 0, lambda page, n: n + 1, lambda page: page, lambda e: e, max_elements=50))


@pytest.mark.parametrize("link", [
    "/api/v3/projects?offset=2&token=sekrit-paging-token-42",
    "https://evil.example/api/v3/projects?signature=sekrit-paging-token-42",
    "/api/v3/projects/Kim Minji born 1978-12-28",
])
def test_a_paging_error_never_quotes_a_query_or_free_text_from_a_link(link):
    """A server-given next link that loops back is named by its plain path at most: a query
    may carry a credential, and free text in a path is the server's, not ours to keep."""
    async def fetch(request):
        return [request]

    with pytest.raises(ApiError) as raised:
        asyncio.run(collect_pages(fetch, link, lambda page, request: link, lambda page: page, lambda e: None))
    message = str(raised.value)
    assert message.startswith("paging ")
    for fragment in ("sekrit", "token", "signature", "Kim", "1978", "evil.example"):
        assert fragment not in message
