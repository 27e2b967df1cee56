"""dlt on the same API: its ``rest_api`` source, a parent ``projects`` resource (GET
/project) and one dependent resource per project for every sub-resource (memo,
attachments, histories, orders, groups) and for the files, loaded into DuckDB.
Run as ``python -m bench.dlt_run`` (a measured child).

``--tuned`` applies the parallelism settings dlt's docs offer ("Optimizing dlt",
"Extract" and "Parallelism" sections): ``parallelized=True`` on the source and on every
dependent resource, ``extract.workers=20``, ``extract.max_parallel_items=64``, and
``loader_file_format="jsonl"`` (cheaper to write than the default for this shape). Without
it, dlt's defaults."""

from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402

SUB_RESOURCES = ("memo", "attachments", "histories", "orders", "groups")

TUNED_CONFIG = {"EXTRACT__WORKERS": "20", "EXTRACT__MAX_PARALLEL_ITEMS": "64"}


def source_config(base_url: str, token: str, client_id: str, *, parallelized: bool) -> dict:
    parent = "{resources.projects._id}"
    children = [
        {"name": kind, "endpoint": {"path": f"project/{parent}/{kind}"}} for kind in SUB_RESOURCES
    ] + [{"name": "files", "endpoint": {"path": f"file/{parent}", "data_selector": "data.files"}}]
    if parallelized:
        for child in children:
            child["parallelized"] = True
    return {
        "client": {
            "base_url": base_url.rstrip("/") + "/",
            "auth": {"type": "bearer", "token": token},
            "headers": {"x-rayteams-client-id": client_id, "Accept": "application/json"},
        },
        "resource_defaults": {
            "write_disposition": "replace",
            "endpoint": {"data_selector": "data", "paginator": "single_page"},
        },
        "resources": [{"name": "projects", "endpoint": {"path": "project"}}, *children],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--workdir", required=True, help="dlt's pipelines directory (state, load packages)")
    parser.add_argument("--token", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--tuned", action="store_true")
    args = parser.parse_args()
    if args.tuned:
        os.environ.update(TUNED_CONFIG)
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

    import dlt
    from dlt.sources.rest_api import rest_api_source

    from bench.procs import emit

    imported = time.perf_counter()
    source = rest_api_source(
        source_config(args.base_url, args.token, args.client_id, parallelized=args.tuned),
        parallelized=args.tuned,
    )
    pipeline = dlt.pipeline(
        pipeline_name="bench_rayteams", destination=dlt.destinations.duckdb(args.db),
        dataset_name="rayteams", pipelines_dir=args.workdir, progress=None,
    )
    pipeline.run(source, loader_file_format="jsonl" if args.tuned else None)
    finished = time.perf_counter()

    import duckdb

    with duckdb.connect(args.db, read_only=True) as con:
        tables = [name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'rayteams' "
            "AND table_name NOT LIKE '_dlt%' ORDER BY 1").fetchall()]
        rows = {name: con.execute(f'SELECT count(*) FROM rayteams."{name}"').fetchall()[0][0] for name in tables}
    emit({"startup_s": imported - STARTED, "run_s": finished - imported, "rows": rows,
          "dlt_version": dlt.__version__})


if __name__ == "__main__":
    main()
