"""``python -m bench.shards`` (part of ``make bench``): the figures of a sharded sync
(docs/scale.md), on the RAYTeams simulator in its own process.

1. One shard's production rate (rows staged per second: fetch, transform, validate,
   write Parquet) against the loader's throughput (rows per second from staged Parquet
   into DuckDB): their ratio is how many workers one loader can feed.
2. Several accounts, each limited to a few requests in flight with a real API's latency
   (a per-account rate limit): one process syncing them one after another (as
   ``pwh sync rayteams`` does with configured accounts) against the sharded sync (one
   shard per account, here run concurrently in this process, then loaded)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

from bench.procs import ROOT
from bench.servers import CLIENT_ID, TOKEN, simulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.shards", description=__doc__)
    p.add_argument("--projects", type=int, default=2000, help="projects of the loader-vs-shard run")
    p.add_argument("--latency-ms", type=float, default=2.0, help="simulator latency of the loader-vs-shard run")
    p.add_argument("--accounts", type=int, default=4, help="accounts of the sharded-vs-single run")
    p.add_argument("--account-projects", type=int, default=300, help="projects per account")
    p.add_argument("--account-concurrency", type=int, default=4, help="requests in flight per account")
    p.add_argument("--account-latency-ms", type=float, default=25.0, help="simulator latency of that run")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "shards.json")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def loader_vs_shard(base_url: str, work: Path) -> dict:
    from pwh.flows.rayteams_shards import stage_rayteams_shard
    from pwh.flows.shards import state_file, write_state
    from pwh.warehouse.connection import connect
    from pwh.warehouse.migrations import migrate
    from pwh.warehouse.shard_load import load_staged

    staging = work / "staging"
    write_state(state_file(staging, "bench", "rayteams", "lab"), {})
    started = time.perf_counter()
    summary = await stage_rayteams_shard(str(staging), "bench", "lab", base_url=base_url)
    stage_s = time.perf_counter() - started
    con = connect(work / "loaded.duckdb")
    try:
        migrate(con)
        started = time.perf_counter()
        [load] = load_staged(con, str(staging / "bench" / "shards"))
        load_s = time.perf_counter() - started
    finally:
        con.close()
    rows = sum(summary["rows_loaded"].values())
    assert load.rows == rows, (load.rows, rows)
    return {"projects": summary["units_new"], "rows": rows, "shard_s": stage_s, "load_s": load_s,
            "shard_rows_per_s": rows / stage_s, "loader_rows_per_s": rows / load_s,
            "workers_one_loader_feeds": stage_s / load_s}


async def sharded_vs_single(base_url: str, work: Path, accounts: list[str], concurrency: int) -> dict:
    from pwh.flows.rayteams_shards import stage_rayteams_shard
    from pwh.flows.shards import run_sharded
    from pwh.flows.syncs import sync_rayteams
    from pwh.schemas import rayteams

    single_db, sharded_db = work / "single.duckdb", work / "sharded.duckdb"
    started = time.perf_counter()
    for account in accounts:
        await sync_rayteams(base_url, db_path=str(single_db), account=account, concurrency=concurrency)
    single_s = time.perf_counter() - started

    async def start_shard(shard):
        return await stage_rayteams_shard(str(work / "staging"), shard.parent_run_id, shard.account,
                                          base_url=base_url, concurrency=concurrency)

    started = time.perf_counter()
    await run_sharded(db_path=str(sharded_db), staging=str(work / "staging"), source="rayteams",
                      tables=rayteams.TABLES, accounts=accounts, parts=1, start_shard=start_shard,
                      pseudonym_key=None)
    sharded_s = time.perf_counter() - started
    return {"accounts": len(accounts), "concurrency_per_account": concurrency, "single_process_s": single_s,
            "sharded_s": sharded_s, "speedup": single_s / sharded_s}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("RAYTEAMS_TOKEN", TOKEN)
    os.environ.setdefault("RAYTEAMS_CLIENT_ID", CLIENT_ID)
    os.environ.setdefault("PWH_PSEUDONYM_KEY", "bench-pseudonym-key-0123456789")
    results: dict = {"started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "machine": {"cpus": os.cpu_count()}, "settings": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="pwh-bench-shards-") as scratch:
        work = Path(scratch)
        log(f"loader vs one shard: {args.projects} projects, {args.latency_ms} ms latency")
        with simulator(args.projects, seed=args.seed, latency_ms=args.latency_ms) as sim:
            (work / "one").mkdir()
            results["loader_vs_shard"] = asyncio.run(loader_vs_shard(sim.base_url, work / "one"))
        log(f"{args.accounts} accounts x {args.account_projects} projects, {args.account_concurrency} in flight "
            f"each, {args.account_latency_ms} ms latency: one process vs shards")
        with simulator(args.account_projects, seed=args.seed, latency_ms=args.account_latency_ms) as sim:
            (work / "many").mkdir()
            results["sharded_vs_single"] = asyncio.run(sharded_vs_single(
                sim.base_url, work / "many", [f"lab{i}" for i in range(args.accounts)], args.account_concurrency))
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    one, many = results["loader_vs_shard"], results["sharded_vs_single"]
    print(f"one shard stages   {one['shard_rows_per_s']:>10,.0f} rows/s  ({one['rows']:,} rows in {one['shard_s']:.1f} s)")
    print(f"the loader loads   {one['loader_rows_per_s']:>10,.0f} rows/s  ({one['load_s']:.1f} s): "
          f"one loader feeds ~{one['workers_one_loader_feeds']:.0f} workers")
    print(f"{many['accounts']} rate-limited accounts: one process {many['single_process_s']:.1f} s, "
          f"sharded {many['sharded_s']:.1f} s ({many['speedup']:.1f}x)")
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
