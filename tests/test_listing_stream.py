"""A long RAYTeams project list is walked entry by entry (pwh/sources/json_stream.py), never
parsed whole: whatever the answer, the entries (or the error) must be exactly those of the
whole parse, and a sync over a listing read that way loads the same warehouse."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pwh.flows.syncs import sync_rayteams
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.sources import json_stream
from pwh.sources.http import Answer, loads_json
from pwh.sources.rayteams import client as rayteams_client
from pwh.sources.rayteams.client import read_envelope, read_listing
from tests.live import CLIENT_ID, TOKEN
from tests.warehouse_checks import content_hashes

FAST = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(autouse=True)
def every_listing_streamed(monkeypatch):
    """The walk applies to lists of any length here (by default only to long ones)."""
    monkeypatch.setattr(rayteams_client, "STREAMED_LISTING_BYTES", 0)


def outcome(read, body: bytes, status: int = 200):
    """What a read makes of an answer: its entries (listed) or its error (type and text)."""
    try:
        data = read(Answer(status, {}, body))
    except Exception as exc:  # noqa: BLE001 - the error itself is compared
        return ("error", type(exc).__name__, str(exc))
    return ("data", list(data) if isinstance(data, (list, json_stream.StreamedArray)) else data)


def same_as_whole(body: bytes, status: int = 200) -> None:
    assert outcome(read_listing, body, status) == outcome(read_envelope, body, status)


@FAST
@given(entries=st.lists(JSON_VALUES, max_size=6), extra=st.dictionaries(st.sampled_from(["status", "count", "x"]),
                                                                        JSON_VALUES, max_size=2),
       indent=st.sampled_from([None, 0, 2, "\t"]), data_first=st.booleans())
def test_any_listing_reads_as_the_whole_parse_reads_it(entries, extra, indent, data_first):
    envelope = {"status": "success", **extra}
    envelope = {"data": entries, **envelope} if data_first else {**envelope, "data": entries}
    same_as_whole(json.dumps(envelope, indent=indent).encode())


@pytest.mark.parametrize("body", [
    b'{"status": "success", "data": [{"_id": "a", "updated": NaN}, {"_id": "b", "n": 123456789012345678901234567890}]}',
    b'{"status": "success", "data": [{"_id": "a", "name": "\\ud83d"}, {"_id": "\xff\xfe"}]}',  # lone surrogate, not UTF-8
    b'{"status": "success", "data": [{"_id": "a", "size": 1e400}]}',
    b'{"status": "success", "data": []}',
    b' \n{ "data" : [ {"_id":"a"} , {"_id":"b"} ] , "status" : "success" }\r\n',
    b'{"status": "success", "data": {}}',
    b'{"status": "success", "data": null}',
    b'{"status": "success", "data": "not a list"}',
    b'{"status": "success", "data": [1], "data": [2, 3]}',  # a repeated member: the last one counts
    b'{"status": "failure", "data": [{"_id": "a"}]}',
    b'{"errorCode": "NO_ITEM", "data": [{"_id": "a"}]}',
    b'{"errorCode": "THROTTLED", "status": "success", "data": []}',
    b'{"status": "success"}',
    b'{"status": "success", "data": [{"_id": "a"}, ]}',
    b'{"status": "success", "data": [{"_id": "a"}]} trailing',
    b'{"status": "success", "data": [{"_id": "a"}, {"_id": "b"',  # cut short: transient, retried
    b'[{"_id": "a"}]',
    b'<html>proxy error</html>',
    b'',
    b'{"status": "success", "data": [' + b'[' * 5000 + b']' * 5000 + b']}',  # deeper than either parser goes
])
def test_odd_and_hostile_listings_read_as_the_whole_parse_reads_them(body):
    same_as_whole(body)


def test_an_error_status_is_read_as_before():
    same_as_whole(b'{"errorCode": "FORBIDDEN", "data": []}', status=403)


def test_a_long_listings_entries_are_parsed_only_as_they_are_taken():
    body = json.dumps({"status": "success", "data": [{"_id": str(i)} for i in range(3)]}).encode()
    data = read_listing(Answer(200, {}, body))
    assert isinstance(data, json_stream.StreamedArray) and len(data) == 3
    taken = iter(data)
    assert next(taken) == {"_id": "0"}  # the others are still text
    assert [entry["_id"] for entry in taken] == ["1", "2"]


def test_a_short_listing_is_parsed_whole(monkeypatch):
    monkeypatch.setattr(rayteams_client, "STREAMED_LISTING_BYTES", 1 << 20)
    body = json.dumps({"status": "success", "data": [{"_id": "a"}]}).encode()
    assert read_listing(Answer(200, {}, body)) == loads_json(body)["data"]


@pytest.mark.parametrize("strategy", ["aggregate", "per_resource"])
async def test_a_sync_over_a_streamed_listing_loads_what_one_over_the_whole_parse_loads(
        tmp_path, monkeypatch, strategy):
    """per_resource takes each project's own record from its list entry: the entries must
    come through the walk whole."""
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    dataset = RayteamsDataset(DatasetConfig(seed=29, n_projects=30, invalid_records=2))
    summaries = {}
    async with running_simulator(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as base_url:
        for name, threshold in (("streamed", 0), ("whole", 1 << 30)):
            monkeypatch.setattr(rayteams_client, "STREAMED_LISTING_BYTES", threshold)
            summaries[name] = await sync_rayteams(base_url=base_url, db_path=str(tmp_path / f"{name}.duckdb"),
                                                  strategy=strategy, batch_size=8)
    assert summaries["streamed"]["status"] == "success" and summaries["streamed"]["units_new"] == 30
    assert content_hashes(tmp_path / "streamed.duckdb") == content_hashes(tmp_path / "whole.duckdb")
