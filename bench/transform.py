"""The RAYTeams transform alone, against the same transform at a baseline commit: CPU
seconds of ``transform_projects`` over the simulator's projects (as the aggregate strategy
fetches them, parsed from JSON), each version in its own child process, taken in
alternation; the minimum of each is reported with their ratio.
``python -m bench.transform --projects 2000 --baseline 9e09e15 --rounds 5``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent


def write_dataset(path: Path, projects: int, seed: int) -> int:
    """The simulator's projects as the client hands them over, in one JSON file; their record count."""
    from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset

    dataset = RayteamsDataset(DatasetConfig(seed=seed, n_projects=projects))
    fetched = []
    for listed in dataset.project_list():
        pid = listed["_id"]
        files = dataset.files(pid) or {}
        fetched.append({"project_id": pid, "listed": listed, "records": dataset.aggregate(pid),
                        "files": files.get("files", [])})
    path.write_bytes(orjson.dumps(fetched))
    return sum(len(p["records"]) + len(p["files"]) for p in fetched)


def child(dataset: Path, repeat: int) -> None:
    """Time the transform of the code on this process's path (one warm-up, then ``repeat``)."""
    from pwh.transforms.pseudonym import Pseudonymizer
    from pwh.transforms.rayteams import FetchedProject, transform_projects

    raw = dataset.read_bytes()
    pseudonyms = Pseudonymizer(b"bench-transform-key-0123456789")
    times = []
    for _ in range(repeat + 1):
        fetched = [FetchedProject(**p) for p in orjson.loads(raw)]  # fresh objects, as a fetch gives
        started = time.process_time()
        transform_projects(fetched, account="bench", pseudonyms=pseudonyms)
        times.append(time.process_time() - started)
    print(orjson.dumps({"cpu_s": times[1:]}).decode())


def run_child(code: Path, dataset: Path, repeat: int) -> list[float]:
    # Run as a script from the code's own tree: only that tree's packages are importable.
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run([sys.executable, __file__, "--child", str(dataset), "--repeat", str(repeat)],
                         cwd=code, env=env, capture_output=True, text=True, check=True)
    return orjson.loads(out.stdout.strip().splitlines()[-1])["cpu_s"]


def export(ref: str, into: Path) -> Path:
    """The tree of ``ref`` (its Python packages), for a child's path."""
    archive = into / "tree.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.transform", description=__doc__)
    p.add_argument("--projects", type=int, default=2000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--baseline", default="9e09e15", help="git ref of the transform to compare with")
    p.add_argument("--rounds", type=int, default=5, help="child processes of each version, in alternation")
    p.add_argument("--repeat", type=int, default=2, help="timed transforms in each child")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args.repeat)
        return
    with tempfile.TemporaryDirectory(prefix="pwh-bench-transform-") as tmp:
        work = Path(tmp)
        dataset = work / "projects.json"
        records = write_dataset(dataset, args.projects, args.seed)
        versions = {args.baseline: export(args.baseline, work), "this tree": ROOT}
        times: dict[str, list[float]] = {name: [] for name in versions}
        for _ in range(args.rounds):
            for name, code in versions.items():
                times[name] += run_child(code, dataset, args.repeat)
        print(f"transform of {args.projects} projects ({records} records and files), CPU s, "
              f"min of {args.rounds * args.repeat} (runs taken in alternation):")
        base = min(times[args.baseline])
        for name, cpu in times.items():
            print(f"  {name:<12} {min(cpu):6.3f} s  median {sorted(cpu)[len(cpu) // 2]:6.3f} s  "
                  f"{min(cpu) / base:5.2f}x  {1e3 * (min(cpu) - base) / args.projects:+.3f} ms a project")


if __name__ == "__main__":
    main()
