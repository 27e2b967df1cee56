"""The Incoplax client against the Incoplax simulator on 127.0.0.1: paging (a server that
caps ``limit`` included), masks, flat form, CRUD, LOOKUP, auth; and the simulator served
by ``pwh simulate incoplax`` answering LOOKUP."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from pwh.simulators.incoplax.dataset import DatasetConfig, IncoplaxDataset
from pwh.simulators.incoplax.simulator import SIMULATOR_KEY, SimulatorOptions, build_app
from pwh.simulators.simulation import serving
from pwh.sources.errors import ApiError, AuthError, NotFoundError
from pwh.sources.incoplax.client import (
    PROJECTS_PATH,
    IncoplaxClient,
    LookupNotFoundError,
    unflatten,
)

TOKEN = "inc-SECRET-token-51c2"


@asynccontextmanager
async def simulated(dataset: IncoplaxDataset, page_size: int = 5, **options):
    app = build_app(dataset, SimulatorOptions(token=TOKEN, **options))
    async with serving(app, any_method=True) as url:
        async with IncoplaxClient.connect(url, token=TOKEN, page_size=page_size) as client:
            yield client, app[SIMULATOR_KEY]


async def test_paging_walks_every_page_and_ends_at_the_empty_one():
    dataset = IncoplaxDataset(DatasetConfig(seed=1, n_projects=23))
    async with simulated(dataset, page_size=5) as (client, sim):
        listed = await client.list_projects()
    assert [p["id"] for p in listed] == list(dataset.projects)
    # 5+5+5+5+3, then the empty page that proves the end (a short page does not).
    assert sim.stats["list"] == 6 and sim.stats["limits"] == {5: 6}


@pytest.mark.parametrize("n_projects, listing_requests", [(23, 7), (20, 6)])
async def test_a_server_that_caps_limit_is_read_to_the_end(n_projects, listing_requests):
    dataset = IncoplaxDataset(DatasetConfig(seed=2, n_projects=n_projects))
    async with simulated(dataset, page_size=10, max_limit=4) as (client, sim):
        listed = await client.list_projects()
        # A client that stopped at the first page shorter than asked would hold 4 projects.
        first = await client.list_page(0, 10)
    assert len(first) == 4
    assert [p["id"] for p in listed] == list(dataset.projects)
    # Offsets advance by what each page held: 0, 4, 8, ...; the empty page ends it
    # (23: six pages and the empty one; 20: five full pages and the empty one).
    assert sim.stats["list"] == listing_requests + 1  # + the single list_page above
    assert sim.stats["limits"] == {4: listing_requests + 1}  # the server's cap, not the 10 asked


async def test_mask_and_flat_answers_are_parsed():
    dataset = IncoplaxDataset(DatasetConfig(seed=3, n_projects=6))
    target = next(p for p in dataset.projects.values() if p.get("opts"))
    async with simulated(dataset) as (client, _):
        masked = await client.list_page(0, 3, mask=["id", "ext.lwt"])
        flat = await client.list_page(0, 3, mask=["id", "opts.title", "ext.ct"], flat=True)
        detail_flat = await client.get_project(target["id"], flat=True)
        detail = await client.get_project(target["id"])
        code_only = await client.get_project(target["id"], mask=["id", "code"])
        with pytest.raises(ApiError, match="400"):
            await client.list_page(0, 3, mask=["opts.comment"])  # not a list field
        # The raw flat answer really is flat.
        async with client.http.session.get(client.http.url(f"{PROJECTS_PATH}/{target['id']}"),
                                           params={"flat": "true"}, headers={"Authorization": f"Bearer {TOKEN}"}) as r:
            raw = await r.json()
    projects = list(dataset.projects.values())
    assert masked == [{"id": p["id"], "ext": {"lwt": p["ext"]["lwt"]}} for p in projects[:3]]
    assert flat == [
        {"id": p["id"], **({"opts": {"title": p["opts"]["title"]}} if p.get("opts") else {}), "ext": {"ct": p["ext"]["ct"]}}
        for p in projects[:3]
    ]
    assert raw == {"id": target["id"], "code": target["code"], "name": target["name"],
                   "opts.title": target["opts"]["title"], "opts.comment": target["opts"]["comment"],
                   "ext.ct": target["ext"]["ct"], "ext.lwt": target["ext"]["lwt"]}
    assert detail_flat == detail == target
    assert code_only == {"id": target["id"], "code": target["code"]}


def test_unflatten():
    assert unflatten({"id": "x", "opts.title": "", "opts.comment": "c", "ext.lwt": "t"}) == {
        "id": "x", "opts": {"title": "", "comment": "c"}, "ext": {"lwt": "t"}}
    assert unflatten({"a": {"b": 1}}) == {"a": {"b": 1}}
    with pytest.raises(ApiError):
        unflatten({"opts": 1, "opts.title": "x"})


async def test_the_list_without_mask_omits_opts_like_the_seed():
    dataset = IncoplaxDataset(DatasetConfig(seed=4, n_projects=3))
    async with simulated(dataset) as (client, _):
        listed = await client.list_projects()
    assert all(set(p) == {"id", "code", "name", "ext"} for p in listed)


async def test_order_and_filter_are_passed_through():
    dataset = IncoplaxDataset(DatasetConfig(seed=5, n_projects=12))
    async with simulated(dataset, page_size=5) as (client, _):
        newest_first = await client.list_projects(mask=["id", "ext.lwt"], order=[{"ext.lwt": "desc"}, "id"])
        by_code = await client.list_projects(filter={"code": "5103"})
    expected = sorted(dataset.projects.values(), key=lambda p: p["id"])
    expected.sort(key=lambda p: p["ext"]["lwt"], reverse=True)
    assert [p["id"] for p in newest_first] == [p["id"] for p in expected]
    assert [p["code"] for p in by_code] == ["5103"]


async def test_crud_through_the_api():
    dataset = IncoplaxDataset(DatasetConfig(seed=6, n_projects=2))
    async with simulated(dataset) as (client, _):
        created = await client.create_project({"code": "7001", "name": "New", "opts": {"title": "T", "comment": ""}})
        assert created["ext"]["ct"] == created["ext"]["lwt"] and created["code"] == "7001"
        changed = await client.update_project(created["id"], {"name": "Renamed"})
        assert changed["name"] == "Renamed" and changed["ext"]["lwt"] > created["ext"]["lwt"]
        assert changed["ext"]["ct"] == created["ext"]["ct"]
        with pytest.raises(ApiError) as refused:
            await client.update_project(created["id"], {"id": "another"})
        assert str(refused.value) == "HTTP 400 error_code 1400" and refused.value.code == "1400"  # no server text
        assert await client.get_project(created["id"]) == changed
        assert await client.delete_project(created["id"]) is None  # 204 No Content
        with pytest.raises(NotFoundError):
            await client.get_project(created["id"])
        with pytest.raises(NotFoundError):
            await client.delete_project(created["id"])


async def test_lookup_found_and_not_found():
    dataset = IncoplaxDataset(DatasetConfig(seed=7, n_projects=8))
    [pid] = dataset.lookup("5102")
    async with simulated(dataset) as (client, sim):
        assert await client.lookup("5102") == [pid]
        assert await client.lookup("5102", by="code") == [pid]
        assert await client.lookup(pid, by="id") == [pid]
        assert await client.lookup(pid) == [pid]
        with pytest.raises(LookupNotFoundError, match=r"no Incoplax project with code '9999' \(HTTP 404 error_code 1404\)$"):
            await client.lookup("9999", by="code")
        with pytest.raises(LookupNotFoundError, match="id '5102'"):
            await client.lookup("5102", by="id")  # matches a code, not an id
    assert sim.stats["lookup"] == 6


async def test_basic_auth_and_wrong_credentials():
    dataset = IncoplaxDataset(DatasetConfig(seed=8, n_projects=3))
    app = build_app(dataset, SimulatorOptions(auth="basic", username="ann", password="pw-SECRET-9"))
    async with serving(app, any_method=True) as url:
        async with IncoplaxClient.connect(url, auth_scheme="basic", username="ann", password="pw-SECRET-9") as client:
            assert len(await client.list_projects()) == 3
        async with IncoplaxClient.connect(url, auth_scheme="basic", username="ann", password="wrong") as client:
            with pytest.raises(AuthError, match="INCOPLAX_USERNAME and INCOPLAX_PASSWORD") as info:
                await client.list_projects()
            assert "wrong" not in str(info.value)
        async with IncoplaxClient.connect(url, auth_scheme="bearer", token="pw-SECRET-9") as client:
            with pytest.raises(AuthError, match="INCOPLAX_TOKEN"):
                await client.lookup("5100")
    with pytest.raises(ValueError):
        IncoplaxClient.connect(url, auth_scheme="digest", token="x")


async def test_faults_are_retried_lookup_included():
    dataset = IncoplaxDataset(DatasetConfig(seed=9, n_projects=30))
    kinds = ("429", "500", "truncated", "not_json", "reset")  # every one costs a retry
    async with simulated(dataset, page_size=4, fault_rate=0.5, fault_kinds=kinds) as (client, sim):
        listed = await client.list_projects()
        ids = await client.lookup("5105")
    assert [p["id"] for p in listed] == list(dataset.projects) and ids == dataset.lookup("5105")
    # (aiohttp itself resends a GET whose reused connection was reset: not every fault
    # reaches the client's retry loop.)
    assert sim.faults.total > 0 and 0 < client.retries <= sim.faults.total


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_pwh_simulate_incoplax_answers_lookup():
    port = _free_port()
    pwh = Path(sys.executable).with_name("pwh")
    env = {k: v for k, v in os.environ.items() if k != "AIOHTTP_NO_EXTENSIONS"}
    proc = subprocess.Popen([str(pwh), "simulate", "incoplax", "--port", str(port), "--projects", "5"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    async with session.get(f"{url}/_sim/health") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read().decode()[-2000:]
                await asyncio.sleep(0.2)
        async with IncoplaxClient.connect(url, token="sim-token") as client:
            ids = await client.lookup("5102")
            assert len(ids) == 1 and (await client.get_project(ids[0]))["code"] == "5102"
            with pytest.raises(LookupNotFoundError):
                await client.lookup("nope")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
