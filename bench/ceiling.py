"""The ceiling: the requests a pwh sync makes, fetched with bare aiohttp (one session,
bounded concurrency, each body parsed with orjson, nothing else). What the simulator
can serve on this machine. Run as ``python -m bench.ceiling`` (a measured child)."""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import orjson

from bench.procs import emit
from pwh.process import tune_collector

SUB_RESOURCES = ("memo", "attachments", "histories", "orders", "groups")


def project_paths(project_id: str, strategy: str) -> list[str]:
    """The same requests as ``RayteamsClient.fetch_project`` for one project."""
    if strategy == "aggregate":
        return [f"/project/{project_id}", f"/file/{project_id}"]
    return [*(f"/project/{project_id}/{kind}" for kind in SUB_RESOURCES), f"/file/{project_id}"]


async def fetch_all(base_url: str, *, strategy: str, concurrency: int, token: str, client_id: str) -> dict:
    headers = {"Authorization": f"Bearer {token}", "x-rayteams-client-id": client_id, "Accept": "application/json"}
    limit = asyncio.Semaphore(concurrency)
    counts = {"requests": 0, "bytes": 0}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def get(path: str, keep: bool = False):
            async with limit:
                async with session.get(base_url + path) as answer:
                    body = await answer.read()
                    answer.raise_for_status()
            counts["requests"] += 1
            counts["bytes"] += len(body)
            parsed = orjson.loads(body)
            return parsed if keep else None  # parsed, then dropped: nothing else is done

        started = time.perf_counter()
        listed = (await get("/project", keep=True))["data"]
        paths = [path for project in listed for path in project_paths(project["_id"], strategy)]
        await asyncio.gather(*(get(path) for path in paths))
        return {**counts, "fetch_s": time.perf_counter() - started, "projects": len(listed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--strategy", choices=("aggregate", "per_resource"), default="aggregate")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--token", required=True)
    parser.add_argument("--client-id", required=True)
    args = parser.parse_args()
    tune_collector()  # the pwh executable's setting: the ceiling gets whatever it gives pwh
    emit(asyncio.run(fetch_all(args.base_url, strategy=args.strategy, concurrency=args.concurrency,
                               token=args.token, client_id=args.client_id)))


if __name__ == "__main__":
    main()
