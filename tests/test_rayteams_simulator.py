"""The RAYTeams simulator and its dataset, exercised through a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from collections import Counter
from contextlib import asynccontextmanager
from urllib.parse import quote

import aiohttp
import orjson
import pytest

from pwh.simulators.rayteams.dataset import (
    SUB_KINDS,
    TABLES,
    UNDOCUMENTED_SK_PREFIXES,
    DatasetConfig,
    RayteamsDataset,
)
from pwh.simulators.rayteams.simulator import FAULT_KINDS, SimulatorOptions, running_simulator

AUTH = {"Authorization": "Bearer sim-token", "x-rayteams-client-id": "sim-client"}
KIND_PREFIX = {
    "memo": "memo:",
    "attachments": "attachments:",
    "histories": "his:",
    "orders": "order:",
    "groups": "project:institute:",
}
CONFIG = DatasetConfig(seed=7, n_projects=50, invalid_records=6)


@asynccontextmanager
async def serve(dataset: RayteamsDataset | None = None, **options):
    dataset = dataset or RayteamsDataset(CONFIG)
    async with running_simulator(dataset, SimulatorOptions(**options)) as base:
        async with aiohttp.ClientSession(headers=AUTH) as session:
            yield base, session, dataset


async def get_json(session: aiohttp.ClientSession, url: str, **kw):
    async with session.get(url, **kw) as resp:
        assert resp.status == 200, (url, resp.status, await resp.text())
        return orjson.loads(await resp.read())


async def get_bytes(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as resp:
        assert resp.status == 200
        return await resp.read()


async def raw_get(url: str) -> bytes:
    """Everything the server sends back for one GET on a fresh connection (b"": dropped)."""
    hostport, path = url.removeprefix("http://").split("/", 1)
    host, port = hostport.split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    head = f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in AUTH.items())
    writer.write((head + "\r\n").encode())
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


def admin(base: str) -> str:
    return base.rsplit("/v1.0", 1)[0] + "/_sim"


def is_ms(value) -> bool:
    """Epoch ms as a number or a numeric string (the documented quirk)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value > 10**12
    return isinstance(value, str) and value.isdigit() and int(value) > 10**12


# --------------------------------------------------------------------------- dataset alone


def test_dataset_is_lazy_and_cheap_for_20000_projects():
    tracemalloc.start()
    t = time.perf_counter()
    ds = RayteamsDataset(DatasetConfig(n_projects=20_000))
    elapsed = time.perf_counter() - t
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert elapsed < 0.5
    assert peak < 2_000_000, peak  # nothing generated yet
    last = ds.project_ids()[-1]
    assert ds.project_info(last)["_id"] == last
    assert len(ds.aggregate(last)) > 5


@pytest.mark.parametrize(("seed", "n"), [(11, 20), (1, 20), (2, 20), (7, 50)])
def test_every_quirk_appears(seed, n):
    ds = RayteamsDataset(DatasetConfig(seed=seed, n_projects=n))
    seen: Counter[str] = Counter()
    for info in ds.project_list():
        pid = info["_id"]
        seen["name_number"] += isinstance(info["name"], int)
        seen["name_string"] += isinstance(info["name"], str)
        seen["count_bool"] += isinstance(info["count"], bool)
        seen["count_number"] += type(info["count"]) is int
        seen["istrash_string"] += isinstance(info["istrash"], str)
        seen["istrash_bool"] += isinstance(info["istrash"], bool)
        seen["project_ts_string"] += isinstance(info["created"], str) or isinstance(info["updated"], str)
        seen["status_absent"] += "status" not in info
        seen["status_present"] += "status" in info
        assert info["subject"]["name"].startswith("Patient ")
        files = ds.files(pid)
        seen["no_files"] += files == {}
        if files:
            assert info["size"] == sum(f["size"] for f in files["files"])
            if type(info["count"]) is int:
                assert info["count"] == len(files["files"])
            for f in files["files"]:
                assert f["filetype"] in ("maxilla", "mandible", "face")
                assert f["downloadLink"].startswith("https://files.sim.rayteams.invalid/")
                assert "X-Amz-Signature=" in f["downloadLink"]
                assert is_ms(f["downloadExpired"])
                seen["expired_string"] += isinstance(f["downloadExpired"], str)
        for memo in ds.sub_resource(pid, "memo"):
            assert is_ms(memo["created"])
            seen["memo_ts_string"] += isinstance(memo["created"], str)
            for c in memo["comments"]:
                assert ("content" in c) != ("contents" in c)
                seen["comment_contents"] += "contents" in c
                seen["comment_content"] += "content" in c
                seen["comment_ts_string"] += isinstance(c["created"], str)
        for h in ds.sub_resource(pid, "histories"):
            seen["his_" + h["updateType"]] += 1
            if h["updateType"] == "RAY_LINK_PROJECT_ADDMEMO":
                assert set(h["data"]) == {"content", "type"} and h["data"]["type"] == "create"
            if h["updateType"] == "RAY_LINK_PROJECT_ADDCOMMENT":
                assert h["data"]["sk"].startswith("memo:") and "content" in h["data"]["data"]
        for o in ds.sub_resource(pid, "orders"):
            seen["orders"] += 1
            assert o["sk"] == f"order:{o['created']}"
            for key in ("ownerGroupId", "labId", "statusName", "patientId", "memo", "updated"):
                assert key in o
            assert o["status"].startswith("node_")
            assert o["statusType"] in ("NEW", "INPROGRESS", "CLOSED")
            assert set(o["product"]) == {"currency", "discount", "price", "productname"}
            assert isinstance(o["product"]["discount"], str) and isinstance(o["product"]["price"], int)
            assert isinstance(o["medicalRecords"], dict) and isinstance(o["treatments"], list)
            assert isinstance(o["workflow"], dict) and o["subject"]["name"] == info["subject"]["name"]
        groups = ds.sub_resource(pid, "groups")
        assert [g["sk"] for g in groups].count("project:institute:owner") == 1
        assert len(groups) >= 2
        seen["undocumented"] += any(r["sk"].split(":")[0] in UNDOCUMENTED_SK_PREFIXES for r in ds.aggregate(pid))
    history_types = [k for k in seen if k.startswith("his_")]
    assert "his_RAY_LINK_PROJECT_ADDMEMO" in history_types and "his_RAY_LINK_PROJECT_ADDCOMMENT" in history_types
    assert len(history_types) >= 4
    missing = [
        k
        for k in (
            "name_number", "name_string", "count_bool", "count_number", "istrash_string", "istrash_bool",
            "project_ts_string", "status_absent", "status_present", "no_files", "expired_string",
            "memo_ts_string", "comment_contents", "comment_content", "comment_ts_string", "orders", "undocumented",
        )
        if not seen[k]
    ]
    assert not missing, (missing, seen)


def test_sk_unique_within_project_and_rows_per_project():
    ds = RayteamsDataset(CONFIG)
    invalid = {(pid, sk) for _, pid, sk in ds.invalid_record_keys}
    for pid in ds.project_ids():
        records = ds.aggregate(pid)
        sks = [r["sk"] for r in records]
        assert len(sks) == len(set(sks)), pid
        # An invalid history or order names another project: that is what makes it invalid.
        assert all(r["_id"] == pid for r in records if (pid, r["sk"]) not in invalid)
        for kind, prefix in KIND_PREFIX.items():
            assert all(r["sk"].startswith(prefix) for r in ds.sub_resource(pid, kind))
    rows = ds.expected_rows("aggregate")
    per_project = (sum(rows.values()) - rows["other_records"]) / rows["projects"]
    assert 20 <= per_project <= 35, rows
    assert set(rows) == set(TABLES)


def test_invalid_records_are_recorded_and_break_a_rule():
    ds = RayteamsDataset(CONFIG)
    keys = ds.invalid_record_keys
    assert len(keys) == 6
    assert len({pid for _, pid, _ in keys}) == 6  # spread over different projects
    for table, pid, sk in keys:
        assert table in ("attachments", "histories", "orders")
        (record,) = [r for r in ds.sub_resource(pid, {"histories": "histories"}.get(table, table)) if r["sk"] == sk]
        assert record.get("size") == -5 or record["_id"] == f"{pid}-elsewhere"
    assert ds.expected_rows("aggregate")["rejected_records"] == 6
    assert RayteamsDataset(CONFIG).invalid_record_keys == keys


def test_more_invalid_records_than_projects():
    ds = RayteamsDataset(DatasetConfig(seed=3, n_projects=10, invalid_records=25))
    keys = ds.invalid_record_keys
    assert len(keys) == len(set(keys)) == 25
    assert ds.expected_rows("per_resource")["rejected_records"] == 25


def test_many_mutation_rounds_keep_sks_unique():
    ds = RayteamsDataset(DatasetConfig(seed=5, n_projects=30, invalid_records=4))
    for round_ in range(8):
        ds.mutate(seed=round_, update_share=0.5, add_share=0.1, remove_share=0.05)
    ds.add_attachment(ds.project_ids()[0], "late.png", "image/png", 7)
    for pid in ds.project_ids():
        sks = [r["sk"] for r in ds.aggregate(pid)]
        assert len(sks) == len(set(sks)), pid
    for _, pid, sk in ds.invalid_record_keys:
        assert any(r["sk"] == sk for r in ds.aggregate(pid))


def test_mutate_is_deterministic_and_touches_the_shares():
    a, b = RayteamsDataset(CONFIG), RayteamsDataset(CONFIG)
    before = {p["_id"]: p for p in a.project_list()}
    sa = a.mutate(seed=3, update_share=0.1, add_share=0.04, remove_share=0.04)
    sb = b.mutate(seed=3, update_share=0.1, add_share=0.04, remove_share=0.04)
    assert sa == sb and a.project_list() == b.project_list()
    assert (len(sa.updated), len(sa.added), len(sa.removed)) == (5, 2, 2)
    after = {p["_id"]: p for p in a.project_list()}
    assert set(after) == (set(before) - set(sa.removed)) | set(sa.added)
    for pid in sa.updated:
        assert int(after[pid]["updated"]) > int(before[pid]["updated"])
    unchanged = set(after) - set(sa.updated) - set(sa.added)
    assert all(after[p] == before[p] for p in unchanged)
    for pid in sa.removed:
        assert a.project_info(pid) is None and a.aggregate(pid) is None and a.files(pid) is None
    assert a.project_ids()[-2:] == sa.added


# --------------------------------------------------------------------------- through the server


async def test_same_seed_same_bodies_other_seed_other_bodies():
    async with serve(RayteamsDataset(CONFIG)) as (base1, s1, ds1), serve(RayteamsDataset(CONFIG)) as (base2, s2, _):
        assert await get_bytes(s1, f"{base1}/project") == await get_bytes(s2, f"{base2}/project")
        for pid in ds1.project_ids()[:10]:
            for suffix in ("", "/info", *(f"/{k}" for k in SUB_KINDS)):
                assert await get_bytes(s1, f"{base1}/project/{pid}{suffix}") == await get_bytes(s2, f"{base2}/project/{pid}{suffix}")
            assert await get_bytes(s1, f"{base1}/file/{pid}") == await get_bytes(s2, f"{base2}/file/{pid}")
        other = RayteamsDataset(DatasetConfig(seed=8, n_projects=50, invalid_records=6))
        async with serve(other) as (base3, s3, _):
            assert await get_bytes(s3, f"{base3}/project") != await get_bytes(s1, f"{base1}/project")
            assert not set(other.project_ids()) & set(ds1.project_ids())


async def test_envelope_and_endpoints_match_the_dataset():
    async with serve() as (base, session, ds):
        listing = await get_json(session, f"{base}/project")
        assert listing["status"] == "success" and listing["data"] == ds.project_list()
        pid = ds.project_ids()[3]
        assert (await get_json(session, f"{base}/project/{pid}/info"))["data"] == ds.project_info(pid)
        for kind in SUB_KINDS:
            assert (await get_json(session, f"{base}/project/{pid}/{kind}"))["data"] == ds.sub_resource(pid, kind)
        for ftype in ("maxilla", "mandible", "face"):
            data = (await get_json(session, f"{base}/file/{pid}/{ftype}"))["data"]
            assert data == {} or {f["filetype"] for f in data["files"]} == {ftype}


async def test_auth_is_required():
    async with serve() as (base, session, ds):
        pid = ds.project_ids()[0]
        bad_headers = [
            {},
            {"Authorization": "Bearer wrong", "x-rayteams-client-id": "sim-client"},
            {"Authorization": "Bearer sim-token"},
            {"Authorization": "Bearer sim-token", "x-rayteams-client-id": "other"},
        ]
        async with aiohttp.ClientSession() as bare:
            for headers in bad_headers:
                for url in (f"{base}/project", f"{base}/project/{pid}/memo", f"{base}/file/{pid}"):
                    async with bare.get(url, headers=headers) as resp:
                        assert resp.status == 401
                        assert await resp.json() == {"message": "Unauthorized"}
            raw = {"Authorization": "sim-token", "x-rayteams-client-id": "sim-client"}
            async with bare.get(f"{base}/project/{pid}/info", headers=raw) as resp:
                assert resp.status == 200


async def test_unknown_project_no_item_and_empty_files():
    async with serve() as (base, session, ds):
        ghost = "00000000-0000-4000-8000-000000000000"
        for suffix in ("", "/info", *(f"/{k}" for k in SUB_KINDS), "/attachment/download/attachments:1"):
            assert await get_json(session, f"{base}/project/{ghost}{suffix}") == {"errorCode": "NO_ITEM"}
        assert await get_json(session, f"{base}/file/{ghost}") == {"status": "success", "data": {}}
        assert await get_json(session, f"{base}/file/{ghost}/face") == {"status": "success", "data": {}}
        no_files = [pid for pid in ds.project_ids() if ds.files(pid) == {}]
        assert no_files
        assert await get_json(session, f"{base}/file/{no_files[0]}") == {"status": "success", "data": {}}
        with_files = next(pid for pid in ds.project_ids() if ds.files(pid))
        data = (await get_json(session, f"{base}/file/{with_files}"))["data"]
        assert data["_id"] == with_files and data["files"]


async def test_aggregate_holds_every_kind_including_the_undocumented_one():
    async with serve() as (base, session, ds):
        undocumented_seen = 0
        for pid in ds.project_ids():
            records = (await get_json(session, f"{base}/project/{pid}"))["data"]
            prefixes = {r["sk"] if r["sk"] == "project" else r["sk"].rsplit(":", 1)[0] for r in records}
            undoc = prefixes - {"project", "memo", "attachments", "his", "order", "project:institute"}
            undocumented_seen += bool(undoc)
            assert undoc <= set(UNDOCUMENTED_SK_PREFIXES)
            per_resource = [ds.project_info(pid)] + [r for k in SUB_KINDS for r in ds.sub_resource(pid, k)]
            assert len(records) == len(per_resource) + len(undoc)
            assert "project" in prefixes and "project:institute" in prefixes and "his" in prefixes
        assert undocumented_seen == 5  # undocumented_kind_share 0.1 of 50


@pytest.mark.parametrize("kind", FAULT_KINDS)
async def test_each_fault_fails_the_first_attempt_only(kind):
    async with serve(fault_rate=1.0, fault_kinds=(kind,), retry_after_s=3, stall_s=0.2) as (base, session, ds):
        pid = ds.project_ids()[1]
        url = f"{base}/project/{pid}/memo"
        expected = {"status": "success", "data": ds.sub_resource(pid, "memo")}
        t = time.perf_counter()
        if kind == "reset":
            # aiohttp's client silently retries an idempotent request once after a dropped
            # connection, so look at the first attempt on a raw socket.
            assert await raw_get(url) == b""
        else:
            async with session.get(url) as resp:
                body = await resp.read()
                if kind == "429":
                    assert resp.status == 429 and resp.headers["Retry-After"] == "3"
                    assert orjson.loads(body) == {"message": "Too Many Requests"}
                elif kind == "500":
                    assert resp.status == 500 and orjson.loads(body) == {"message": "Internal Server Error"}
                elif kind == "stall":
                    assert time.perf_counter() - t >= 0.2
                    assert resp.status == 200 and orjson.loads(body) == expected
                elif kind == "truncated":
                    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
                    with pytest.raises(orjson.JSONDecodeError):
                        orjson.loads(body)
                    assert len(body) == len(orjson.dumps(expected)) // 2
                elif kind == "not_json":
                    assert resp.status in (200, 502) and resp.content_type == "text/html"
                    assert body.startswith(b"<!DOCTYPE html>")
        t = time.perf_counter()
        assert await get_json(session, url) == expected  # the retry goes through
        assert time.perf_counter() - t < 0.2
        stats = await get_json(session, f"{admin(base)}/stats")
        assert stats["faults"] == 1 and stats["faults_by_kind"][kind] == 1


async def test_fault_choice_is_deterministic_and_near_the_rate():
    async def faulted_urls() -> set[str]:
        async with serve(fault_rate=0.3, fault_kinds=("500", "429")) as (base, session, ds):
            bad = set()
            for pid in ds.project_ids():
                for suffix in ("/info", "/memo"):
                    async with session.get(f"{base}/project/{pid}{suffix}") as resp:
                        if resp.status != 200:
                            bad.add(f"{pid}{suffix}")
            return bad

    first, second = await faulted_urls(), await faulted_urls()
    assert first == second
    assert 15 <= len(first) <= 45  # 30% of 100


async def test_always_fail_projects_always_answer_500():
    ds = RayteamsDataset(CONFIG)
    doomed = ds.project_ids()[4]
    async with serve(ds, always_fail_projects=frozenset({doomed})) as (base, session, _):
        for _ in range(3):
            for url in (f"{base}/project/{doomed}", f"{base}/project/{doomed}/memo", f"{base}/file/{doomed}"):
                async with session.get(url) as resp:
                    assert resp.status == 500
        other = ds.project_ids()[5]
        assert (await get_json(session, f"{base}/project/{other}/memo"))["status"] == "success"


async def test_download_link_and_upload():
    async with serve() as (base, session, ds):
        pid = next(p for p in ds.project_ids() if ds.sub_resource(p, "attachments"))
        att = ds.sub_resource(pid, "attachments")[0]
        data = (await get_json(session, f"{base}/project/{pid}/attachment/download/{quote(att['sk'])}"))["data"]
        assert data["sk"] == att["sk"] and data["downloadLink"] in ds.download_links()
        assert "X-Amz-Signature=" in data["downloadLink"]

        list_before = await get_bytes(session, f"{base}/project")
        form = aiohttp.FormData()
        form.add_field("file", b"x" * 1234, filename="scan-notes.pdf", content_type="application/pdf")
        async with session.post(f"{base}/project/{pid}/attachment/add", data=form) as resp:
            assert resp.status == 200
            added = (await resp.json())["data"]
        assert added["name"] == "scan-notes.pdf" and added["size"] == 1234 and added["filetype"] == "application/pdf"
        served = (await get_json(session, f"{base}/project/{pid}/attachments"))["data"]
        assert added in served
        assert await get_bytes(session, f"{base}/project") != list_before  # `updated` moved on
        async with session.post(f"{base}/project/{pid}/attachment/add", data=b"") as resp:
            assert resp.status == 400


async def test_mutate_through_admin_endpoint():
    async with serve() as (base, session, ds):
        before = {p["_id"]: p for p in (await get_json(session, f"{base}/project"))["data"]}
        async with session.post(f"{admin(base)}/mutate", json={"seed": 5, "update_share": 0.1, "add_share": 0.04, "remove_share": 0.04}) as resp:
            summary = await resp.json()
        assert (len(summary["updated"]), len(summary["added"]), len(summary["removed"])) == (5, 2, 2)
        after = {p["_id"]: p for p in (await get_json(session, f"{base}/project"))["data"]}
        changed = {pid for pid in set(before) & set(after) if before[pid] != after[pid]}
        assert changed == set(summary["updated"])
        assert all(int(after[p]["updated"]) > int(before[p]["updated"]) for p in changed)
        assert set(after) - set(before) == set(summary["added"])
        for pid in summary["removed"]:
            assert await get_json(session, f"{base}/project/{pid}/memo") == {"errorCode": "NO_ITEM"}
            assert await get_json(session, f"{base}/file/{pid}") == {"status": "success", "data": {}}
        for pid in summary["updated"]:  # cached bodies are not served stale
            assert (await get_json(session, f"{base}/project/{pid}"))["data"] == ds.aggregate(pid)


async def walk(base: str, session: aiohttp.ClientSession, strategy: str, invalid: set[tuple[str, str]]) -> dict[str, int]:
    """Count warehouse rows the way a sync would, from what the server serves."""
    rows = dict.fromkeys(TABLES, 0)
    table_of = {"memo": "memos", "attachments": "attachments", "his": "histories", "order": "orders", "project:institute": "groups"}
    for info in (await get_json(session, f"{base}/project"))["data"]:
        pid = info["_id"]
        rows["projects"] += 1
        if strategy == "aggregate":
            records = [r for r in (await get_json(session, f"{base}/project/{pid}"))["data"] if r["sk"] != "project"]
        else:
            records = [r for k in SUB_KINDS for r in (await get_json(session, f"{base}/project/{pid}/{k}"))["data"]]
        for r in records:
            table = table_of.get(r["sk"].rsplit(":", 1)[0], "other_records")
            if (pid, r["sk"]) in invalid:
                rows["rejected_records"] += 1
                continue
            rows[table] += 1
            if table == "memos":
                rows["memo_comments"] += len(r["comments"])
        files = (await get_json(session, f"{base}/file/{pid}"))["data"]
        rows["files"] += len(files.get("files", []))
    return rows


async def test_truth_matches_what_the_endpoints_serve():
    async with serve() as (base, session, ds):
        async def check():
            invalid = {(pid, sk) for _, pid, sk in ds.invalid_record_keys}
            for strategy in ("aggregate", "per_resource"):
                truth = await get_json(session, f"{admin(base)}/truth?strategy={strategy}")
                assert truth == ds.expected_rows(strategy)
                assert await walk(base, session, strategy, invalid) == truth, strategy
            return truth

        first = await check()
        assert first["other_records"] == 0 and first["rejected_records"] == 6
        async with session.post(f"{admin(base)}/mutate", json={"seed": 9, "update_share": 0.2, "add_share": 0.1, "remove_share": 0.1}):
            pass
        form = aiohttp.FormData()
        form.add_field("file", b"%PDF", filename="late.pdf", content_type="application/pdf")
        async with session.post(f"{base}/project/{ds.project_ids()[0]}/attachment/add", data=form) as resp:
            assert resp.status == 200
        second = await check()
        assert second["attachments"] != first["attachments"] or second["projects"] != first["projects"]


async def test_secrets_are_served_where_expected():
    async with serve() as (base, session, ds):
        names, links = ds.patient_names(), ds.download_links()
        assert len(names) == 50 and all(n.startswith("Patient ") for n in names)
        listing = (await get_bytes(session, f"{base}/project")).decode()
        assert all(n in listing for n in names)
        served_links = set()
        for pid in ds.project_ids():
            for f in (await get_json(session, f"{base}/file/{pid}"))["data"].get("files", []):
                served_links.add(f["downloadLink"])
        assert served_links and served_links <= links
        secrets = await get_json(session, f"{admin(base)}/secrets")
        assert set(secrets["patient_names"]) == names and set(secrets["download_links"]) == links


async def test_stats_count_requests_by_kind():
    async with serve() as (base, session, ds):
        async with session.post(f"{admin(base)}/stats/reset"):
            pass
        pid = ds.project_ids()[0]
        await get_json(session, f"{base}/project")
        await get_json(session, f"{base}/project/{pid}")
        for kind in ("info", *SUB_KINDS):
            await get_json(session, f"{base}/project/{pid}/{kind}")
            await get_json(session, f"{base}/project/{pid}/{kind}")
        await get_json(session, f"{base}/file/{pid}")
        await get_json(session, f"{base}/project/nope/memo")
        async with aiohttp.ClientSession() as bare:
            async with bare.get(f"{base}/project") as resp:
                assert resp.status == 401
        stats = await get_json(session, f"{admin(base)}/stats")
        assert stats["total"] == 1 + 1 + 12 + 1 + 1 + 1
        assert stats["list"] == 2 and stats["aggregate"] == 1 and stats["file"] == 1
        assert all(stats[k] == 2 for k in ("info", "attachments", "histories", "orders", "groups"))
        assert stats["memo"] == 3 and stats["no_item"] == 1 and stats["unauthorized"] == 1
        assert stats["faults"] == 0
        async with session.post(f"{admin(base)}/stats/reset") as resp:
            assert (await resp.json())["total"] == 0


async def test_latency_is_added():
    async with serve(latency_ms=50) as (base, session, ds):
        t = time.perf_counter()
        await asyncio.gather(*(get_json(session, f"{base}/project/{pid}/info") for pid in ds.project_ids()[:10]))
        elapsed = time.perf_counter() - t
        assert 0.05 <= elapsed < 1.0
