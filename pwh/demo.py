"""``pwh demo``: a source's built-in simulator on a free loopback port (each source of the
registry, or all of them), a full sync into a local DuckDB file, a per-table summary and
example queries."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from pwh.flows.registry import SOURCES, source

# Example queries shown after a source's demo sync, by source (checked against the registry).
EXAMPLE_QUERIES: dict[str, tuple[tuple[str, str], ...]] = {
    "rayteams": (
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
    ),
    "openproject": (
        (
            "OpenProject: projects by status, with their work packages",
            """SELECT coalesce(p.status_title, '(no status)') AS status, count(DISTINCT p.project_id) AS projects,
           count(w.id) AS work_packages, round(avg(w.percentage_done), 1) AS avg_done
    FROM openproject.projects p LEFT JOIN openproject.work_packages w USING (account, project_id)
    WHERE p.deleted_at IS NULL GROUP BY ALL ORDER BY projects DESC""",
        ),
        (
            "OpenProject: work packages by type and status",
            """SELECT type_title AS type, status_title AS status, count(*) AS work_packages
    FROM openproject.work_packages GROUP BY ALL ORDER BY type, work_packages DESC LIMIT 10""",
        ),
        (
            "OpenProject: custom fields in use",
            """SELECT owner_type, field, kind, count(*) AS values_set, any_value(value_text) AS example
    FROM openproject.custom_values WHERE value IS NOT NULL GROUP BY ALL ORDER BY owner_type, field""",
        ),
    ),
}

DEMO_SOURCES = (*(s.name for s in SOURCES), "all")


def run_demo(*, db: Path, projects: int, seed: int, run_flow, print_summary, sync_function,
             source_name: str = "rayteams") -> None:
    """``sync_function(source)``: the sync to call (pwh/cli.py: the Prefect flow when a Prefect API
    is configured, else the same function in this process)."""
    if source_name not in DEMO_SOURCES:
        raise typer.BadParameter(f"--source must be one of {', '.join(DEMO_SOURCES)}")
    from pwh.schemas import pipeline
    from pwh.warehouse.catalog import tables_of

    chosen = SOURCES if source_name == "all" else (source(source_name),)
    for declared in chosen:
        print_summary(run_flow(lambda declared=declared: _simulate_and_sync(
            declared, db=db, projects=projects, seed=seed, sync=sync_function(declared))))
    _show(db, [t for declared in chosen for t in tables_of(declared.name)] + [pipeline.REJECTED_RECORDS, pipeline.RUNS],
          [q for declared in chosen for q in EXAMPLE_QUERIES.get(declared.name, ())])


async def _simulate_and_sync(declared, *, db: Path, projects: int, seed: int, sync) -> dict:
    async with declared.simulated()(projects, seed) as simulator:
        typer.echo(f"{declared.title} simulator serving {projects} projects at {simulator.base_url}")
        # Fresh credentials each demo: they only have to match between the simulator and the sync.
        os.environ.update(simulator.credentials)
        return await sync(base_url=simulator.base_url, db_path=str(db), mode="full_refresh")


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
