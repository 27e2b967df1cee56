"""The benchmark harness end to end with a tiny N (no dlt): the simulator in its own
process, the ceiling and pwh runs as measured child processes, results.json written.
What `make bench` runs at full size; CI runs only this."""

from __future__ import annotations

import orjson
import pytest

from bench.__main__ import main

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_bench_harness_measures_and_checks_a_tiny_run(tmp_path, capsys):
    from prefect.settings import PREFECT_API_URL

    out = tmp_path / "results.json"
    code = main([
        "--projects", "12", "--large-projects", "20", "--huge-projects", "30", "--runs", "1", "--strategies", "aggregate",
        "--no-dlt", "--no-prefect-overhead", "--no-cold-start",
        "--prefect-api-url", PREFECT_API_URL.value(), "--workdir", str(tmp_path / "work"), "--out", str(out),
    ])
    printed = capsys.readouterr().out
    results = orjson.loads(out.read_bytes())
    summary = results["summary"]
    assert code == 0, [c for c in summary["checks"] if not c["ok"]]
    by_kind = {m["kind"]: m for m in summary["medians"].values()}
    assert by_kind["ceiling"]["requests"] == by_kind["pwh_full"]["requests"] == 1 + 2 * 12
    assert by_kind["pwh_incremental"]["requests"] == 1  # nothing changed: the list only
    assert by_kind["pwh_full"]["rows"] == results["truth"]["aggregate"]
    # The larger sizes: the ceiling and pwh side by side at --large-projects, pwh alone at --huge-projects.
    assert by_kind["ceiling_large"]["requests"] == by_kind["pwh_full_large"]["requests"] == 1 + 2 * 20
    assert by_kind["pwh_full_huge"]["rows"] == results["truth_huge"]["aggregate"] and "ceiling_huge" not in by_kind
    for m in by_kind.values():
        assert m["wall_s"] > 0 and m["cpu_s"] > 0 and m["peak_rss_mb"] > 10
    # Every target of issue 17 that these runs can measure, with a verdict.
    verdicts = {r["ratio"].split(" (")[0]: r["ok"] for r in summary["ratios"] if r["target"] is not None}
    assert set(verdicts) == {
        "pwh sync / bare aiohttp, whole processes, N=12", "pwh sync / bare aiohttp, whole processes, N=20",
        "pwh sync peak RSS MB, N=12", "pwh sync peak RSS at N=20 / at N=12", "pwh sync peak RSS at N=30 / at N=12"}
    assert all(ok in (True, False) for ok in verdicts.values())
    assert "Targets (issue 17" in printed and "pwh sync full aggregate N=30" in printed


def test_prefect_overhead_pairs_the_runs_of_each_round():
    """Flow minus plain is taken round by round (the two runs of a round are adjacent), so
    a slow round does not pair with a fast one; a round missing one of the two is left out."""
    from bench.report import _paired

    def run(kind, round_, inner, wall):
        return {"kind": kind, "round": round_, "inner_s": inner, "wall_s": wall}

    runs = [run("plain", 1, 3.0, 6.0), run("flow", 1, 3.5, 6.4),
            run("plain", 2, 5.0, 8.0), run("flow", 2, 5.2, 8.3),  # a slow round
            run("plain", 3, 3.1, 6.1),  # its flow run missing
            run("ceiling", 1, 1.0, 1.4)]
    assert _paired(runs, "plain", "flow", lambda f, p: round(f["inner_s"] - p["inner_s"], 6)) == [0.5, 0.2]
    assert _paired(runs, "plain", "flow", lambda f, p: round((f["wall_s"] - f["inner_s"]) - (p["wall_s"] - p["inner_s"]), 6)) == [-0.1, 0.1]
