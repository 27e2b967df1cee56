"""``python -m bench`` (``make bench``): pwh against the ceiling (bare aiohttp) and dlt,
on the RAYTeams simulator in its own process; medians of runs taken in alternation;
prints a table and the target ratios, writes bench/results.json."""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

from bench import report, runs
from bench.procs import ROOT
from bench.servers import prefect_server, simulator

STRATEGIES = ("aggregate", "per_resource")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--projects", type=int, default=2000, help="N of the comparison (default 2000)")
    p.add_argument("--large-projects", type=int, default=20000,
                   help="N of the second comparison: the ceiling and pwh, side by side (0: skip)")
    p.add_argument("--huge-projects", type=int, default=200000,
                   help="N of the memory-flatness run (pwh only; 0: skip)")
    p.add_argument("--quick", action="store_true", help="skip the --huge-projects run (the longest part)")
    p.add_argument("--runs", type=int, default=3, help="runs of each kind, in alternation (median reported)")
    p.add_argument("--large-runs", type=int, default=1, help="rounds at --large-projects (and runs at --huge-projects)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--latency-ms", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight, for pwh and the ceiling")
    p.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    p.add_argument("--no-dlt", action="store_true", help="skip dlt (the smoke test does)")
    p.add_argument("--dlt-defaults", action="store_true", help="also run dlt with its defaults (slow: ~70 s a run)")
    p.add_argument("--no-prefect-overhead", action="store_true", help="skip the plain-vs-flow driver runs")
    p.add_argument("--no-cold-start", action="store_true", help="skip the runs without a Prefect server")
    p.add_argument("--prefect-api-url", help="use this Prefect server instead of starting one")
    p.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    p.add_argument("--report-only", action="store_true",
                   help="measure nothing: summarise the runs already in --out again and print the table")
    args = p.parse_args(argv)
    if args.quick:
        args.huge_projects = 0
    return args


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def compare_round(ctx: runs.Context, args, r: int) -> list[runs.Run]:
    """One round of the N comparison: every kind once, in a fixed order (A B C A B C ...)."""
    done: list[runs.Run] = []

    def keep(run: runs.Run) -> None:
        done.append(run)
        log(f"  {run.label:<34} {run.wall_s:7.2f} s wall  {run.cpu_s:6.2f} s CPU  "
            f"{run.peak_rss_mb:5.0f} MB  {run.requests:>6} requests")

    for strategy in args.strategies:
        keep(runs.ceiling(ctx, strategy, r))
        db = ctx.fresh_path(f"pwh-{strategy}.duckdb")
        keep(runs.pwh_sync(ctx, strategy, r, db, incremental=False))
        if strategy == args.strategies[0]:
            keep(runs.pwh_sync(ctx, strategy, r, db, incremental=True))
    if not args.no_dlt:
        keep(runs.dlt(ctx, r, tuned=True))
        if args.dlt_defaults:
            keep(runs.dlt(ctx, r, tuned=False))
    if not args.no_prefect_overhead:
        strategy = args.strategies[0]
        keep(runs.driver(ctx, "plain", strategy, r, ctx.fresh_path("plain.duckdb")))
        keep(runs.driver(ctx, "flow", strategy, r, ctx.fresh_path("flow.duckdb")))
        keep(runs.prefect_import(ctx, r))
    return done


def cold_starts(ctx: runs.Context, args) -> list[runs.Run]:
    """The flow in a fresh process with no Prefect server: a new PREFECT_HOME, then the same
    one again (what `pwh sync` pays when nothing else is set up)."""
    home = ctx.fresh_path("prefect-home-cold")
    env = runs.child_env(home, None)
    out = []
    for label in ("flow, no server, new PREFECT_HOME", "flow, no server, existing PREFECT_HOME"):
        run = runs.driver(ctx, "flow", args.strategies[0], 1, ctx.fresh_path("cold.duckdb"), env=env, label=label)
        run.kind = "cold_start"
        log(f"  {run.label:<34} {run.wall_s:7.2f} s wall  {run.cpu_s:6.2f} s CPU  {run.peak_rss_mb:5.0f} MB")
        out.append(run)
    return out


def larger_n(args, workdir: Path, env: dict[str, str], n: int, kind: str, with_ceiling: bool,
             results: dict) -> list[runs.Run]:
    """Runs at a larger N on a simulator of that size: pwh full (and the ceiling, side by
    side, when ``with_ceiling``), ``--large-runs`` rounds; kinds get a ``_{kind}`` suffix."""
    log(f"simulator: {n} projects ({'the ceiling and pwh' if with_ceiling else 'pwh only'})")
    out: list[runs.Run] = []
    with simulator(n, seed=args.seed, latency_ms=args.latency_ms) as sim:
        ctx = runs.Context(sim, workdir, env, args.concurrency)
        strategy = args.strategies[0]
        results[f"truth_{kind}"] = {strategy: sim.truth(strategy)}
        if with_ceiling:
            runs.ceiling(ctx, strategy, 0)  # warm the simulator's body cache, as at --projects
        for r in range(1, args.large_runs + 1):
            log(f"N={n} round {r}/{args.large_runs}")
            measured = [runs.ceiling(ctx, strategy, r)] if with_ceiling else []
            measured.append(runs.pwh_sync(ctx, strategy, r, ctx.fresh_path(f"{kind}.duckdb"), incremental=False))
            for run in measured:
                run.label += f" N={n}"
                run.kind += f"_{kind}"
                log(f"  {run.label:<34} {run.wall_s:7.2f} s wall  {run.cpu_s:6.2f} s CPU  "
                    f"{run.peak_rss_mb:5.0f} MB  {run.requests:>6} requests")
            out += measured
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_only:
        return report_again(args.out)
    started = time.perf_counter()
    workdir_cm = tempfile.TemporaryDirectory(prefix="pwh-bench-") if args.workdir is None else None
    workdir = Path(workdir_cm.name) if workdir_cm else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": [],
    }
    all_runs: list[runs.Run] = []
    try:
        with _prefect(args, workdir) as (api_url, server_startup_s):
            results["prefect_server_startup_s"] = server_startup_s
            env = runs.child_env(workdir / "prefect-home", api_url)
            log(f"simulator: {args.projects} projects, {args.latency_ms} ms latency, seed {args.seed}")
            with simulator(args.projects, seed=args.seed, latency_ms=args.latency_ms) as sim:
                ctx = runs.Context(sim, workdir, env, args.concurrency)
                results["truth"] = {s: sim.truth(s) for s in STRATEGIES}
                for strategy in args.strategies:  # warm the simulator's body cache for everyone
                    runs.ceiling(ctx, strategy, 0)
                for r in range(1, args.runs + 1):
                    log(f"round {r}/{args.runs}")
                    all_runs += compare_round(ctx, args, r)
                    save(results, all_runs, args, started)
                if not args.no_cold_start:
                    log("Prefect cold starts (no server)")
                    all_runs += cold_starts(ctx, args)
        # The Prefect server is stopped by now: the larger runs need none, and it idles on a core.
        for n, kind, with_ceiling in ((args.large_projects, "large", True), (args.huge_projects, "huge", False)):
            if n:
                all_runs += larger_n(args, workdir, env, n, kind, with_ceiling, results)
                save(results, all_runs, args, started)
    finally:
        if workdir_cm:
            workdir_cm.cleanup()
    summary = save(results, all_runs, args, started, complete=True)
    print(report.render(results, summary))
    log(f"wrote {args.out} ({results['bench_wall_s']:.0f} s in all)")
    return 0 if summary["checks_ok"] else 1


def report_again(path: Path) -> int:
    """Summarise the stored runs with the current report code (the settings they ran with)."""
    results = orjson.loads(path.read_bytes())
    summary = write_summarised(results, argparse.Namespace(**results["settings"]), path)
    print(report.render(results, summary))
    return 0 if summary["checks_ok"] else 1


def save(results: dict, all_runs: list[runs.Run], args, started: float, complete: bool = False) -> dict:
    """Write results.json (after every round too: an interrupted bench keeps what it measured)."""
    results["runs"] = [r.to_dict() for r in all_runs]
    results["bench_wall_s"] = time.perf_counter() - started
    results["complete"] = complete
    return write_summarised(results, args, args.out)


def write_summarised(results: dict, args, path: Path) -> dict:
    """Summarise ``results`` (medians, checks, ratios) into it and write it to ``path``."""
    results["summary"] = summary = report.summarise(results, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


class _prefect:
    """A Prefect server for the flow runs (started here unless --prefect-api-url, or no run needs one)."""

    def __init__(self, args, workdir: Path) -> None:
        self.args, self.workdir, self.cm = args, workdir, None

    def __enter__(self) -> tuple[str | None, float | None]:
        if self.args.prefect_api_url:
            return self.args.prefect_api_url, None
        if self.args.no_prefect_overhead and self.args.no_cold_start:
            return None, None  # no run needs one: `pwh sync` runs without a Prefect API
        log("starting a Prefect server")
        self.cm = prefect_server(str(self.workdir / "prefect-home"))
        server = self.cm.__enter__()
        log(f"Prefect server up in {server.startup_s:.1f} s at {server.api_url}")
        return server.api_url, server.startup_s

    def __exit__(self, *exc) -> None:
        if self.cm is not None:
            self.cm.__exit__(*exc)


if __name__ == "__main__":
    sys.exit(main())
