"""The OpenProject client against the simulator on 127.0.0.1 (no Prefect): transport rules
(Accept, auth), paging, abbreviated completion, 404 on a linked resource."""

from __future__ import annotations

import aiohttp
import pytest

from pwh.simulators.openproject.dataset import DatasetConfig, OpenProjectDataset
from pwh.simulators.openproject.simulator import (
    SIMULATOR_KEY,
    SimulatorOptions,
    build_app,
    running_simulator,
)
from pwh.simulators.simulation import serving
from pwh.sources.errors import AuthError
from pwh.sources.openproject.client import MEDIA_TYPE, OpenProjectClient

KEY = "op-key-SECRET-51c0"


async def test_strict_accept_and_auth(tmp_path):
    dataset = OpenProjectDataset(DatasetConfig(seed=1, n_projects=3))
    async with running_simulator(dataset, SimulatorOptions(api_key=KEY)) as root:
        basic = {"Authorization": aiohttp.encode_basic_auth("apikey", KEY)}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{root}/api/v3/projects", headers={**basic, "Accept": "application/json"}) as r:
                assert r.status == 406
                assert (await r.json(content_type=None))["errorIdentifier"].endswith(":NotAcceptable")
            async with session.get(f"{root}/api/v3/projects", headers={"Accept": MEDIA_TYPE}) as r:
                assert r.status == 401
                assert (await r.json(content_type=None))["errorIdentifier"].endswith(":Unauthenticated")
            async with session.get(f"{root}/api/v3/projects", headers={**basic, "Accept": MEDIA_TYPE}) as r:
                assert r.status == 200 and r.content_type == MEDIA_TYPE
        async with OpenProjectClient.connect(root, api_key="wrong") as client:
            with pytest.raises(AuthError, match="OPENPROJECT_API_KEY") as caught:
                await client.list_projects()
            assert "wrong" not in str(caught.value)


async def test_every_page_is_followed_and_abbreviated_projects_are_completed():
    dataset = OpenProjectDataset(DatasetConfig(seed=2, n_projects=23, max_work_packages=17))
    app = build_app(dataset, SimulatorOptions(api_key=KEY))
    async with serving(app) as root, OpenProjectClient.connect(root, api_key=KEY, page_size=4) as client:
        listed = await client.list_projects()
        assert [e["id"] for e in listed] == dataset.project_ids()  # 23 projects over 6 pages
        abbreviated = [e for e in listed if e.get("_abbreviated")]
        assert len(abbreviated) == 3 and all("updatedAt" not in e for e in abbreviated)
        for element in abbreviated:
            full = await client.complete(element)
            assert full == dataset.projects[element["id"]].project
        stats = app[SIMULATOR_KEY].stats
        assert stats["list"] == 6 and stats["project"] == 3

        # project index 0: 17 work packages, some closed, over 5 pages of 4
        first = dataset.projects[dataset.project_ids()[0]]
        payload = await client.fetch_project_payload(str(first.id), first.project)
        assert [w["id"] for w in payload.linked["work_packages"]] == [w["id"] for w in first.work_packages]
        assert any(w["readonly"] for w in first.work_packages)  # closed ones: listed only with filters=[]
        assert payload.not_visible == []


async def test_memberships_answering_404_are_recorded_not_fatal():
    dataset = OpenProjectDataset(DatasetConfig(seed=3, n_projects=10))
    hidden = [p for p in dataset.projects.values() if p.memberships_hidden]
    assert len(hidden) == 1
    async with running_simulator(dataset, SimulatorOptions(api_key=KEY)) as root, \
            OpenProjectClient.connect(root, api_key=KEY, page_size=3) as client:
        payload = await client.fetch_project_payload(str(hidden[0].id), hidden[0].project)
        assert payload.not_visible == ["memberships"] and payload.linked["memberships"] == []
        assert len(payload.linked["types"]) == len(hidden[0].types) > 0


async def test_a_server_that_caps_page_size_is_still_read_to_the_end():
    dataset = OpenProjectDataset(DatasetConfig(seed=4, n_projects=17, max_work_packages=20))
    app = build_app(dataset, SimulatorOptions(api_key=KEY, max_page_size=3))
    async with serving(app) as root, OpenProjectClient.connect(root, api_key=KEY, page_size=50) as client:
        listed = await client.list_projects()
        assert [e["id"] for e in listed] == dataset.project_ids()
        assert app[SIMULATOR_KEY].stats["list"] == 6  # 17 projects, 3 a page
        first = dataset.projects[dataset.project_ids()[0]]
        payload = await client.fetch_project_payload(str(first.id), first.project)
        assert len(payload.linked["work_packages"]) == len(first.work_packages) == 20
        marker = await client.work_package_marker(first.project)
        latest = max(w["updatedAt"] for w in first.work_packages)
        assert marker == f"wp:20:{latest}"
