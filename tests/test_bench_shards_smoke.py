"""`python -m bench.shards` (part of `make bench`) end to end with tiny sizes: the
simulator in its own process, both figures measured, written and printed."""

from __future__ import annotations

import orjson

from bench.servers import CLIENT_ID, TOKEN
from bench.shards import main


def test_the_shard_bench_measures_a_tiny_run(tmp_path, capsys, monkeypatch):
    # The bench's credentials, set here so that they leave with the test.
    monkeypatch.setenv("RAYTEAMS_TOKEN", TOKEN)
    monkeypatch.setenv("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    out = tmp_path / "shards.json"
    assert main(["--projects", "20", "--accounts", "2", "--account-projects", "8",
                 "--account-latency-ms", "1", "--out", str(out)]) == 0
    results = orjson.loads(out.read_bytes())
    assert results["loader_vs_shard"]["projects"] == 20 and results["loader_vs_shard"]["rows"] > 20
    assert results["sharded_vs_single"]["accounts"] == 2
    assert "one loader feeds" in capsys.readouterr().out
