"""The Clarity client against the simulator on 127.0.0.1: paging, filters, typed errors,
faults, and credentials that never follow a link to another host."""

from __future__ import annotations

import pytest
from aiohttp import web

from pwh.simulators.clarity.dataset import UDT_NAME, ClarityDataset, DatasetConfig
from pwh.simulators.clarity.simulator import (
    SIMULATOR_KEY,
    SimulatorOptions,
    build_app,
    running_simulator,
)
from pwh.simulators.simulation import serving
from pwh.sources.clarity.client import (
    ClarityApiError,
    ClarityClient,
    ClarityNotFoundError,
    filter_params,
)
from pwh.sources.errors import AuthError
from pwh.sources.http import HttpSettings
from pwh.sources.xml import UnsafeXmlError

USER, PASSWORD = "lims-user", "pw-SECRET-93b1"
FOREIGN = "https://lims.public.invalid/api/v2"


def options(**kw) -> SimulatorOptions:
    return SimulatorOptions(username=USER, password=PASSWORD, **kw)


def client(url: str, password: str = PASSWORD, **settings) -> ClarityClient:
    return ClarityClient.connect(url, username=USER, password=password,
                                 settings=HttpSettings(backoff_initial_s=0.01, **settings))


async def test_list_follows_next_page_across_several_pages_to_the_truth():
    dataset = ClarityDataset(DatasetConfig(seed=1, n_projects=47))
    async with running_simulator(dataset, options(page_size=10, public_url=FOREIGN)) as url:
        async with client(url) as c:
            listing = await c.list_projects()
            detail = await c.fetch_project(listing.links[-1]["limsid"])
    assert [link["limsid"] for link in listing.links] == dataset.project_ids()
    assert listing.pages == 5 and c.requests == 6
    assert listing.server_time is not None
    # Links name the public host; the client replayed their query against its own base.
    assert listing.links[0]["uri"].startswith(FOREIGN)
    assert detail["limsid"] == dataset.project_ids()[-1]


async def test_exact_multiple_of_the_page_size_and_empty_list():
    dataset = ClarityDataset(DatasetConfig(seed=2, n_projects=20))
    async with running_simulator(dataset, options(page_size=10)) as url:
        async with client(url) as c:
            assert len((await c.list_projects()).links) == 20 and c.requests == 2
    async with running_simulator(ClarityDataset(DatasetConfig(n_projects=0)), options()) as url:
        async with client(url) as c:
            listing = await c.list_projects()
            assert listing.links == [] and listing.pages == 1


async def test_filters_are_passed_through_and_duplicates_tolerated():
    dataset = ClarityDataset(DatasetConfig(seed=3, n_projects=60))
    projects = [dataset.project(i) for i in dataset.live_indices()]
    names = [projects[4]["name"], projects[9]["name"]]
    with_udt = {p["limsid"] for p in projects if p["udt"]}
    quota = next(u["value"] for u in projects[0]["udfs"] if u["name"] == "Samples Quota")
    with_quota = {p["limsid"] for p in projects
                  if any(u["name"] == "Samples Quota" and u["value"] == quota for u in p["udfs"])}
    opened = {p["limsid"] for p in projects if p["open_date"] and p["open_date"].isoformat() >= "2020-06-01"}
    async with running_simulator(dataset, options(page_size=7)) as url:
        async with client(url) as c:
            async def limsids(params) -> set[str]:
                return {link["limsid"] for link in (await c.list_projects(params)).links}

            assert await limsids(filter_params(names)) == {projects[4]["limsid"], projects[9]["limsid"]}
            assert await limsids(filter_params(udf=[f"udt.name={UDT_NAME}"])) == with_udt
            assert await limsids(filter_params(udf=[f"udf.Samples Quota={quota}"])) == with_quota
            assert await limsids(filter_params(open_date="2020-06-01")) == opened and opened
            # A duplicated single-valued parameter is tolerated (the first counts).
            assert await limsids([("open-date", "2020-06-01"), ("open-date", "1999-01-01")]) == opened
            assert await limsids([("start-index", "0"), ("start-index", "5")]) == {p["limsid"] for p in projects}


async def test_exception_answers_are_typed_errors_with_their_code():
    dataset = ClarityDataset(DatasetConfig(seed=4, n_projects=3))
    async with running_simulator(dataset, options()) as url:
        async with client(url) as c:
            with pytest.raises(ClarityNotFoundError, match="HTTP 404 Clarity exception 404") as missing:
                await c.fetch_project("NOPE9")
            assert "Project not found" not in str(missing.value)  # the server's words are not kept
            with pytest.raises(ClarityApiError, match="HTTP 400 Clarity exception 400") as info:
                await c.list_projects([("open-date", "2020-13-01")])
            assert info.value.status == 400 and "Invalid open-date" not in str(info.value)
        async with client(url, password="wrong") as c:
            with pytest.raises(AuthError, match="CLARITY_USERNAME and CLARITY_PASSWORD") as info:
                await c.list_projects()
            assert "wrong" not in str(info.value)


async def test_faults_are_retried_to_the_same_answers():
    dataset = ClarityDataset(DatasetConfig(seed=5, n_projects=30))
    async with running_simulator(dataset, options(page_size=6, public_url=FOREIGN)) as url:
        async with client(url) as c:
            clean = await c.list_projects()
            clean_details = [await c.fetch_project(link["limsid"]) for link in clean.links]
    faulty = options(page_size=6, public_url=FOREIGN, fault_rate=0.5, stall_s=1.0)
    async with running_simulator(dataset, faulty) as url:
        async with client(url, timeout_s=0.5, max_attempts=8) as c:
            listing = await c.list_projects()
            details = [await c.fetch_project(link["limsid"]) for link in listing.links]
            assert c.retries > 0
    assert listing.links == clean.links and details == clean_details


async def test_credentials_never_travel_to_the_host_a_link_names():
    """A next-page link naming another host (a proxy's public name, or a hostile server)
    is followed on our own base URL: the other host never sees a request."""
    seen: list[str] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        return web.Response(status=500)

    other = web.Application()
    other.router.add_route("*", "/{tail:.*}", record)
    dataset = ClarityDataset(DatasetConfig(seed=6, n_projects=9))
    async with serving(other) as other_root:
        async with running_simulator(dataset, options(page_size=4, public_url=f"{other_root}/api/v2")) as url:
            async with client(url) as c:
                listing = await c.list_projects()
    assert len(listing.links) == 9 and seen == []


async def test_simulator_counts_requests():
    dataset = ClarityDataset(DatasetConfig(seed=7, n_projects=5))
    app = build_app(dataset, options(page_size=2))
    async with serving(app) as root:
        async with client(f"{root}/api/v2") as c:
            await c.list_projects()
    assert app[SIMULATOR_KEY].snapshot()["list"] == 3


async def test_a_hostile_server_answer_is_refused_once_not_retried(tmp_path):
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("SECRET-FILE-CONTENT-77")
    xxe = (f'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file://{secret_file}">]>'
           '<prj:project xmlns:prj="http://genologics.com/ri/project" limsid="X1"><name>&x;</name></prj:project>')

    async def hostile(request: web.Request) -> web.Response:
        return web.Response(text=xxe, content_type="application/xml")

    app = web.Application()
    app.router.add_get("/api/v2/projects/{limsid}", hostile)
    async with serving(app) as root:
        async with client(f"{root}/api/v2") as c:
            with pytest.raises(UnsafeXmlError) as info:
                await c.fetch_project("X1")
            assert c.requests == 1 and c.retries == 0
    assert "SECRET-FILE-CONTENT-77" not in str(info.value) and str(secret_file) not in str(info.value)
