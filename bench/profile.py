"""Where a pwh sync spends its CPU: py-spy samples of one ``bench.driver`` run against the
simulator (in its own process), grouped by pipeline stage and by function.
``python -m bench.profile --projects 2000 [--strategy aggregate] [--wrapper plain]``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench import runs
from bench.procs import PYTHON, measure
from bench.servers import simulator

PY_SPY = Path(sys.executable).with_name("py-spy")
# The deepest frame from our own code names the stage; library frames under it count for it.
STAGES = (
    ("transforms/", "transform (transforms/)"),
    ("pwh/schemas/rows.py", "transform (transforms/)"),  # the rows a transform makes (moved from transforms/)
    ("pwh/schemas/validate.py", "validate (pandera)"),
    ("warehouse/", "load (warehouse/, duckdb)"),
    ("sources/", "HTTP (sources/, aiohttp)"),
    ("flows/", "engine (flows/)"),
)
LIBRARIES = (
    ("aiohttp/", "HTTP (sources/, aiohttp)"), ("asyncio/", "event loop (asyncio)"),
    ("selectors.py", "event loop (asyncio)"), ("prefect/", "Prefect"), ("<frozen", "imports"),
)


def stage_of(frames: list[str]) -> str:
    if any("_find_and_load" in frame for frame in frames):
        return "imports"
    for frame in reversed(frames):
        for marker, stage in STAGES:
            if f"/{marker}" in frame or f"({marker}" in frame:
                return stage
    for frame in reversed(frames):
        for marker, stage in LIBRARIES:
            if marker in frame:
                return stage
    return "other"


def summarise(raw: Path, top: int = 25) -> str:
    stages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")[1:]  # the first entry is the thread
        n = int(count)
        total += n
        stages[stage_of(frames)] += n
        if frames:
            functions[frames[-1]] += n
    lines = [f"{total} samples (threads busy; imports included)", "", "By stage:"]
    lines += [f"  {100 * n / total:5.1f}%  {stage}" for stage, n in stages.most_common()]
    lines += ["", f"Top {top} functions (own time):"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in functions.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    p.add_argument("--projects", type=int, default=2000)
    p.add_argument("--strategy", choices=("aggregate", "per_resource"), default="aggregate")
    p.add_argument("--wrapper", choices=("plain", "flow"), default="plain")
    p.add_argument("--latency-ms", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--rate", type=int, default=100, help="samples per second")
    p.add_argument("--raw", type=Path, help="keep py-spy's raw samples here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="pwh-profile-") as tmp:
        work = Path(tmp)
        raw = args.raw or work / "samples.txt"
        env = runs.child_env(work / "prefect-home", os.environ.get("PREFECT_API_URL"))
        with simulator(args.projects, seed=args.seed, latency_ms=args.latency_ms) as sim:
            ctx = runs.Context(sim, work, env)
            runs.ceiling(ctx, args.strategy, 0)  # warm the simulator's body cache
            cmd = [str(PY_SPY), "record", "--format", "raw", "--rate", str(args.rate), "--threads",
                   "--output", str(raw), "--", PYTHON, "-m", "bench.driver", "--wrapper", args.wrapper,
                   "--base-url", sim.base_url, "--db", str(work / "profiled.duckdb"), "--strategy", args.strategy]
            m = measure(cmd, env).check("py-spy")
        print(f"{args.wrapper} sync of {args.projects} projects ({args.strategy}): "
              f"{m.report.get('run_s', 0):.2f} s run, {m.wall_s:.2f} s process wall")
        print(summarise(raw))


if __name__ == "__main__":
    main()
