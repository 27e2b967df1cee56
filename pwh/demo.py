"""``pwh demo``: the built-in RAYTeams simulator on a free loopback port, a full sync into
a local DuckDB file, a per-table summary and three example queries."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

EXAMPLE_QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Projects by status, with their files' total size",
        """SELECT coalesce(status_text, '(no status)') AS status, count(*) AS projects,
       round(sum(size_bytes) / 1e6, 1) AS total_mb
FROM rayteams.projects WHERE deleted_at IS NULL
GROUP BY ALL ORDER BY projects DESC""",
    ),
    (
        "Orders by status type and product, with their value",
        """SELECT status_type, product_name, count(*) AS orders, sum(product_price) AS value
FROM rayteams.orders GROUP BY ALL ORDER BY status_type, orders DESC LIMIT 8""",
    ),
    (
        "Memo and comment activity per month (latest six)",
        """SELECT month, sum(memos) AS memos, sum(comments) AS comments FROM (
  SELECT date_trunc('month', created_at) AS month, 1 AS memos, 0 AS comments FROM rayteams.memos
  UNION ALL
  SELECT date_trunc('month', created_at), 0, 1 FROM rayteams.memo_comments
) GROUP BY month ORDER BY month DESC LIMIT 6""",
    ),
)


DEMO_SOURCES = ("rayteams", "openproject", "all")


def run_demo(*, db: Path, projects: int, seed: int, run_flow, print_summary, sync_module,
             source: str = "rayteams") -> None:
    """``sync_module(source)``: the module whose sync functions to call (pwh/cli.py: Prefect flows
    when a Prefect API is configured, else the same functions in this process)."""
    if source not in DEMO_SOURCES:
        raise typer.BadParameter(f"--source must be one of {', '.join(DEMO_SOURCES)}")
    from pwh.schemas import pipeline

    shown = []  # (tables, example queries) of each source synced
    if source in ("rayteams", "all"):
        shown.append(_sync_rayteams_demo(db=db, projects=projects, seed=seed, run_flow=run_flow, print_summary=print_summary,
                                         sync_module=sync_module))
    if source in ("openproject", "all"):
        from pwh.demo_openproject import sync_openproject_demo

        shown.append(sync_openproject_demo(db=db, projects=projects, seed=seed, run_flow=run_flow, print_summary=print_summary,
                                         sync_module=sync_module))
    _show(db, [t for tables, _ in shown for t in tables] + [pipeline.REJECTED_RECORDS, pipeline.RUNS],
          [q for _, queries in shown for q in queries])


def _sync_rayteams_demo(*, db: Path, projects: int, seed: int, run_flow, print_summary, sync_module):
    from pwh.schemas import rayteams
    from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
    from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
    from pwh.sources.rayteams.client import CLIENT_ID_VARIABLE, TOKEN_VARIABLE

    sync_rayteams = sync_module("rayteams").sync_rayteams
    dataset = RayteamsDataset(DatasetConfig(seed=seed, n_projects=projects))
    # A fresh secret each demo: it only has to match between the simulator and the flow.
    options = SimulatorOptions(token=secrets.token_urlsafe(24), client_id="demo-client")
    os.environ[TOKEN_VARIABLE] = options.token
    os.environ[CLIENT_ID_VARIABLE] = options.client_id

    async def simulate_and_sync() -> dict:
        async with running_simulator(dataset, options) as base_url:
            typer.echo(f"RAYTeams simulator serving {projects} projects at {base_url}")
            return await sync_rayteams(base_url=base_url, db_path=str(db), mode="full_refresh")

    summary = run_flow(simulate_and_sync)
    print_summary(summary)
    return rayteams.TABLES, EXAMPLE_QUERIES


def _show(db: Path, tables, queries) -> None:
    from pwh.warehouse.connection import connect

    con = connect(db, read_only=True)
    try:
        typer.echo(f"\nWarehouse {db.resolve()}:")
        for table in tables:
            count = con.execute(f"SELECT count(*) FROM {table.qualified_name}").fetchall()[0][0]
            typer.echo(f"  {table.qualified_name:<28} {count:>8,} rows")
        for title, sql in queries:
            typer.echo(f"\n-- {title}\n{sql};")
            typer.echo(str(con.sql(sql)))
    finally:
        con.close()
    typer.echo(f"\nQuery it yourself (read-only, on the readers' replica: never blocks a sync): pwh sql --db {db}")
    typer.echo(f"Look at it: pwh dashboard --db {db}   → http://127.0.0.1:8501/  (or one HTML file: pwh report --db {db})")
