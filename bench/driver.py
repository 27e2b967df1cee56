"""One RAYTeams sync in this process, with or without the Prefect flow wrapper, timed from
inside (imports excluded). ``--wrapper flow`` runs the real ``sync-rayteams`` flow;
``--wrapper plain`` runs the same stages with the engine's plain functions
(``PLAIN_STAGES``): the difference is Prefect's per-run overhead."""

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
from flows.engine import PLAIN_STAGES  # noqa: E402
from flows.rayteams import (  # noqa: E402
    DEFAULT_BATCH_SIZE,
    RayteamsAdapter,
    default_key_file,
    sync_rayteams,
)
from flows.runner import sync_into_warehouse  # noqa: E402
from schemas import rayteams as tables  # noqa: E402
from sources.http import HttpSettings  # noqa: E402
from sources.rayteams.client import CLIENT_ID_VARIABLE, TOKEN_VARIABLE, RayteamsClient  # noqa: E402
from transforms.pseudonym import Pseudonymizer, load_key  # noqa: E402


async def plain_sync(base_url: str, db_path: str, *, mode: str, strategy: str, concurrency: int,
                     batch_size: int) -> dict:
    """What the flow does, minus Prefect: the same adapter, runner and engine stages."""
    client = RayteamsClient.connect(
        base_url, token=os.environ[TOKEN_VARIABLE], client_id=os.environ[CLIENT_ID_VARIABLE],
        settings=HttpSettings(concurrency=concurrency),
    )
    adapter = RayteamsAdapter(client, account="default", strategy=strategy,
                              pseudonyms=Pseudonymizer(load_key(default_key_file(db_path))))
    return await sync_into_warehouse(adapter, db_path=db_path, tables=tables.TABLES, mode=mode,
                                     batch_size=batch_size, stages=PLAIN_STAGES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wrapper", choices=("plain", "flow"), required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--mode", choices=("incremental", "full_refresh"), default="incremental")
    parser.add_argument("--strategy", choices=("aggregate", "per_resource"), default="aggregate")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()

    if args.wrapper == "flow":
        def run():
            return sync_rayteams(base_url=args.base_url, db_path=args.db, mode=args.mode, strategy=args.strategy,
                                 concurrency=args.concurrency, batch_size=args.batch_size)
    else:
        def run():
            return plain_sync(args.base_url, args.db, mode=args.mode, strategy=args.strategy,
                              concurrency=args.concurrency, batch_size=args.batch_size)

    imported = time.perf_counter()
    summary = asyncio.run(run())
    finished = time.perf_counter()
    emit({"startup_s": imported - STARTED, "run_s": finished - imported, "summary": summary})
    exit_without_teardown(0)


if __name__ == "__main__":
    main()
