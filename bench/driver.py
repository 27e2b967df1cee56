"""One RAYTeams sync in this process, with or without the Prefect flow wrapper, timed from
inside (imports excluded). ``--wrapper flow`` runs the real ``sync-rayteams`` flow;
``--wrapper plain`` runs the function it wraps in this process, as `pwh sync` does
without a Prefect API (the engine's plain stages): the difference is Prefect's per-run
overhead."""

from __future__ import annotations

import time

STARTED = time.perf_counter()

# The process settings of the pwh executable, so both wrappers run as `pwh sync` does.
from pwh.process import exit_without_teardown, tune_collector  # noqa: E402

tune_collector()

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402

os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from bench.procs import emit  # noqa: E402
from pwh.flows.registry import RAYTEAMS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wrapper", choices=("plain", "flow"), required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--mode", choices=("incremental", "full_refresh"), default="incremental")
    parser.add_argument("--strategy", choices=("aggregate", "per_resource"), default="aggregate")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=RAYTEAMS.batch_size)
    args = parser.parse_args()

    # The flow wraps the very function the plain wrapper calls (pwh/flows/prefect_flows.py).
    if args.wrapper == "flow":
        from pwh.flows.prefect_flows import sync_rayteams
    else:
        from pwh.flows.syncs import sync_rayteams

    def run():
        return sync_rayteams(base_url=args.base_url, db_path=args.db, mode=args.mode, strategy=args.strategy,
                             concurrency=args.concurrency, batch_size=args.batch_size)

    imported = time.perf_counter()
    summary = asyncio.run(run())
    finished = time.perf_counter()
    emit({"startup_s": imported - STARTED, "run_s": finished - imported, "summary": summary})
    exit_without_teardown(0)


if __name__ == "__main__":
    main()
