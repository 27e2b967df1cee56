"""Medians, correctness checks, target ratios and the printed table."""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any

from bench.runs import DLT_TABLES, REQUESTS_PER_PROJECT

# Issue 17's targets. "pwh" is `pwh sync rayteams` as a user runs it: a fresh process,
# no Prefect API configured.
TARGETS = {
    "pwh_over_ceiling": 2.5,  # whole processes, N = --projects
    "pwh_over_ceiling_large": 1.5,  # whole processes, N = --large-projects
    "rss_mb_at_n": 200.0,
    "rss_growth": 1.2,  # peak RSS at --large-projects and at --huge-projects / at --projects
    "dlt_over_pwh": 10.0,  # like for like: per_resource
    "prefect_overhead_share": 0.10,  # a flow run, Prefect server running
}


def _medians(runs: list[dict]) -> dict[str, dict[str, Any]]:
    by_label: dict[str, list[dict]] = defaultdict(list)
    for run in runs:
        by_label[run["label"]].append(run)
    out = {}
    for label, group in by_label.items():
        first = group[0]
        inner = [r["inner_s"] for r in group if r["inner_s"] is not None]
        out[label] = {
            "kind": first["kind"], "strategy": first["strategy"], "projects": first["projects"], "runs": len(group),
            "wall_s": median(r["wall_s"] for r in group),
            "inner_s": median(inner) if inner else None,
            "cpu_s": median(r["cpu_s"] for r in group),
            "peak_rss_mb": median(r["peak_rss_mb"] for r in group),
            "requests": median(r["requests"] for r in group),
            "requests_per_s": median(r["requests_per_s"] for r in group),
            "cpu_ms_per_request": median(r["cpu_ms_per_request"] for r in group),
            "rows": first["rows"],
            "rows_equal_across_runs": all(r["rows"] == first["rows"] for r in group),
            "walls_s": [round(r["wall_s"], 3) for r in group],
        }
    return out


def _paired(runs: list[dict], base: str, other: str, value, strategy: str | None = None) -> list[float]:
    """``value(other run, base run)`` for each round that has both kinds (of ``strategy``,
    when given): the two runs of a round are taken one after the other, so the machine's
    drift (±25 % here) hits both."""
    by_round: dict[int, dict[str, dict]] = defaultdict(dict)
    for run in runs:
        if run["kind"] in (base, other) and run["inner_s"] is not None and strategy in (None, run.get("strategy")):
            by_round[run["round"]][run["kind"]] = run
    return [value(pair[other], pair[base]) for pair in by_round.values() if len(pair) == 2]


def _find(medians: dict, kind: str, strategy: str | None = None) -> dict | None:
    for m in medians.values():
        if m["kind"] == kind and (strategy is None or m["strategy"] == strategy):
            return m
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def summarise(results: dict, args) -> dict[str, Any]:
    medians = _medians([r for r in results["runs"]])
    truth = results.get("truth", {})
    n = args.projects
    checks: list[dict[str, Any]] = []

    def check(what: str, ok: bool, detail: str = "") -> None:
        checks.append({"check": what, "ok": bool(ok), "detail": detail})

    for label, m in medians.items():
        want = None
        if m["kind"] in ("ceiling", "pwh_full", "plain", "flow", "cold_start") and m["strategy"] in REQUESTS_PER_PROJECT:
            want = 1 + REQUESTS_PER_PROJECT[m["strategy"]] * m["projects"]
        elif m["kind"].startswith(("ceiling_", "pwh_full_")):
            want = 1 + REQUESTS_PER_PROJECT[m["strategy"]] * m["projects"]
        elif m["kind"] == "pwh_incremental":
            want = 1
        elif m["kind"] in ("dlt", "dlt_defaults"):
            want = 1 + 6 * m["projects"]
        if want is not None:
            check(f"{label}: requests", m["requests"] == want, f"{m['requests']:.0f} made, {want} expected")
        if m["kind"] in ("pwh_full", "plain", "flow", "pwh_incremental") and truth:
            check(f"{label}: rows per table = simulator truth", m["rows"] == truth[m["strategy"]] and m["rows_equal_across_runs"],
                  "" if m["rows"] == truth[m["strategy"]] else f"{m['rows']} != {truth[m['strategy']]}")
        if m["kind"] in ("pwh_full_large", "pwh_full_huge") and results.get("truth_" + m["kind"].rsplit("_", 1)[1]):
            want_rows = results["truth_" + m["kind"].rsplit("_", 1)[1]][m["strategy"]]
            check(f"{label}: rows per table = simulator truth", m["rows"] == want_rows,
                  "" if m["rows"] == want_rows else f"{m['rows']} != {want_rows}")
        if m["kind"] in ("dlt", "dlt_defaults") and truth:
            expected = {dlt_name: truth["per_resource"][ours] for ours, dlt_name in DLT_TABLES.items()}
            got = {name: m["rows"].get(name) for name in expected}
            check(f"{label}: rows per API record = simulator truth", got == expected and m["rows_equal_across_runs"],
                  "" if got == expected else f"{got} != {expected}")

    ratios: list[dict[str, Any]] = []

    def ratio(name: str, value: float | None, target: float | None, *, at_least: bool = False, note: str = "") -> None:
        ok = None if value is None or target is None else (value >= target if at_least else value <= target)
        ratios.append({"ratio": name, "value": value, "target": target, "at_least": at_least, "ok": ok, "note": note})

    first = args.strategies[0]
    runs = results["runs"]
    # pwh / ceiling: whole processes, paired round by round (median of the rounds' ratios).
    for suffix, target in (("", TARGETS["pwh_over_ceiling"]), ("_large", TARGETS["pwh_over_ceiling_large"])):
        for strategy in args.strategies if not suffix else [first]:
            ceiling, full = _find(medians, "ceiling" + suffix, strategy), _find(medians, "pwh_full" + suffix, strategy)
            if not (ceiling and full):
                continue
            paired = _paired(runs, "ceiling" + suffix, "pwh_full" + suffix, lambda p, c: p["wall_s"] / c["wall_s"],
                             strategy)
            ratio(f"pwh sync / bare aiohttp, whole processes, N={full['projects']} ({strategy})",
                  median(paired) if paired else None, target if strategy == first else None,
                  note=f"{full['wall_s']:.2f} s / {ceiling['wall_s']:.2f} s")
            ratio(f"  work only (engine run / fetch), N={full['projects']} ({strategy})",
                  _ratio(full["inner_s"], ceiling["inner_s"]), None,
                  note="interpreter, imports, migrations and replica publishing excluded")
    full = _find(medians, "pwh_full", first)
    if full:
        ratio(f"pwh sync peak RSS MB, N={n} ({first})", full["peak_rss_mb"], TARGETS["rss_mb_at_n"])
    for suffix in ("_large", "_huge"):
        bigger = _find(medians, "pwh_full" + suffix, first)
        if full and bigger:
            ratio(f"pwh sync peak RSS at N={bigger['projects']} / at N={n}",
                  _ratio(bigger["peak_rss_mb"], full["peak_rss_mb"]), TARGETS["rss_growth"],
                  note=f"{bigger['peak_rss_mb']:.0f} MB / {full['peak_rss_mb']:.0f} MB")
    dlt = _find(medians, "dlt")
    for strategy in sorted(args.strategies, key=lambda s: s != "per_resource"):
        full = _find(medians, "pwh_full", strategy)
        if dlt and full:
            like_for_like = strategy == "per_resource"
            ratio(f"dlt wall / pwh sync wall ({strategy})", _ratio(dlt["wall_s"], full["wall_s"]),
                  TARGETS["dlt_over_pwh"] if like_for_like else None, at_least=True,
                  note="like for like: same 6 requests a project" if like_for_like
                  else "pwh's default strategy (2 requests a project; dlt's rest_api has no aggregate notion)")
    if dlt and (d := _find(medians, "dlt_defaults")):
        ratio("dlt defaults / dlt tuned wall", _ratio(d["wall_s"], dlt["wall_s"]), None)
    full, incr = _find(medians, "pwh_full", first), _find(medians, "pwh_incremental", first)
    if full and incr:
        ratio(f"no-change incremental / full ({first}, whole processes)", _ratio(incr["wall_s"], full["wall_s"]), None)
        ratio(f"no-change incremental / full ({first}, engine runs)", _ratio(incr["inner_s"], full["inner_s"]), None)
    plain, flow = _find(medians, "plain"), _find(medians, "flow")
    prefect: dict[str, Any] = {}
    if plain and flow:
        # Round by round, not a difference of medians: each is the difference of two
        # figures that vary by ±25 %, and medians taken apart do not pair them.
        per_run = median(_paired(runs, "plain", "flow", lambda f, p: f["inner_s"] - p["inner_s"]))
        share = median(_paired(runs, "plain", "flow", lambda f, p: (f["inner_s"] - p["inner_s"]) / f["inner_s"]))
        startup_server = median(_paired(runs, "plain", "flow", lambda f, p: (f["wall_s"] - f["inner_s"])
                                        - (p["wall_s"] - p["inner_s"])))
        prefect = {"sync call without Prefect (plain stages)": plain["inner_s"],
                   "sync call as a Prefect flow (server running)": flow["inner_s"],
                   "per-run overhead (flow - plain, median of rounds)": per_run,
                   "start-up beyond plain's (< 0: the flow call does Prefect's lazy imports)": startup_server}
        ratio("Prefect per-run overhead / flow run (server running, by round)", share,
              TARGETS["prefect_overhead_share"])
        imp = _find(medians, "import")
        if imp:
            prefect["import prefect (every pwh process pays it)"] = imp["wall_s"]
        for label, m in medians.items():
            if m["kind"] == "cold_start":
                prefect[f"fixed start-up: {label}"] = m["wall_s"] - plain["wall_s"] - per_run
    if results.get("prefect_server_startup_s") is not None:
        prefect["Prefect server start (once; a deployment keeps it running)"] = results["prefect_server_startup_s"]
    prefect = {k: v for k, v in prefect.items() if v is not None}
    return {"medians": medians, "checks": checks, "ratios": ratios, "prefect": prefect,
            "checks_ok": all(c["ok"] for c in checks)}


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render(results: dict, summary: dict) -> str:
    lines = []
    s = results["settings"]
    lines.append(f"pwh benchmark — {results['started_at']} — {results['machine']['cpus']} CPUs, Python "
                 f"{results['machine']['python']}; simulator in its own process, {s['latency_ms']} ms latency, "
                 f"seed {s['seed']}, concurrency {s['concurrency']}; medians of {s['runs']} alternated runs")
    head = f"{'run':<44} {'n':>3} {'wall s':>8} {'work s':>8} {'req/s':>8} {'CPU s':>7} {'CPU ms/req':>10} {'RSS MB':>7} {'requests':>8}"
    lines += ["", head, "-" * len(head)]
    for label, m in summary["medians"].items():
        lines.append(f"{label:<44} {m['runs']:>3} {_fmt(m['wall_s']):>8} {_fmt(m['inner_s']):>8} "
                     f"{_fmt(m['requests_per_s'], 0):>8} {_fmt(m['cpu_s']):>7} {_fmt(m['cpu_ms_per_request'], 3):>10} "
                     f"{_fmt(m['peak_rss_mb'], 0):>7} {m['requests']:>8.0f}")
    lines.append("(work s: ceiling = fetch time; pwh = engine run from the pipeline.runs ledger; drivers = the "
                 "sync call; dlt = pipeline.run; all exclude interpreter start and imports)")
    for title, rows in (("Targets (issue 17; pwh = `pwh sync` as a user runs it: fresh process, no Prefect API)",
                         [r for r in summary["ratios"] if r["target"] is not None]),
                        ("Other ratios (no target)", [r for r in summary["ratios"] if r["target"] is None])):
        lines += ["", title]
        for r in rows:
            verdict = "" if r["ok"] is None else ("ok" if r["ok"] else "MISSED")
            target = "" if r["target"] is None else f"{'≥' if r['at_least'] else '≤'} {r['target']:g}"
            lines.append(f"  {r['ratio']:<66} {_fmt(r['value'], 3):>9}  {target:<8} {verdict:<6}"
                         + (f"  ({r['note']})" if r["note"] else ""))
    if summary["prefect"]:
        lines += ["", "Prefect"]
        for k, v in summary["prefect"].items():
            lines.append(f"  {k:<72} {_fmt(v):>9} s")
    bad = [c for c in summary["checks"] if not c["ok"]]
    lines += ["", f"Correctness: {len(summary['checks']) - len(bad)}/{len(summary['checks'])} checks passed"
              + ("" if not bad else ":")]
    for c in bad:
        lines.append(f"  FAILED {c['check']}: {c['detail']}")
    lines.append(f"\nbench took {results['bench_wall_s']:.0f} s")
    return "\n".join(lines)
