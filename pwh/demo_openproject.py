"""The OpenProject part of ``pwh demo --source openproject|all``: the built-in simulator on
a free loopback port and a full sync into the demo's DuckDB file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import typer

EXAMPLE_QUERIES: tuple[tuple[str, str], ...] = (
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
)


def sync_openproject_demo(*, db: Path, projects: int, seed: int, run_flow, print_summary, sync_module):
    """Simulate, sync, print the summary; returns (tables, example queries) to show."""
    from pwh.schemas import openproject
    from pwh.simulators.openproject.dataset import DatasetConfig, OpenProjectDataset
    from pwh.simulators.openproject.simulator import SimulatorOptions, running_simulator
    from pwh.sources.openproject.client import TOKEN_VARIABLE

    sync_openproject = sync_module("openproject").sync_openproject
    dataset = OpenProjectDataset(DatasetConfig(seed=seed, n_projects=projects))
    # A fresh key each demo: it only has to match between the simulator and the flow.
    options = SimulatorOptions(api_key=secrets.token_urlsafe(24))
    os.environ[TOKEN_VARIABLE] = options.api_key

    async def simulate_and_sync() -> dict:
        async with running_simulator(dataset, options) as base_url:
            typer.echo(f"OpenProject simulator serving {projects} projects at {base_url}")
            return await sync_openproject(base_url=base_url, db_path=str(db), mode="full_refresh", page_size=20)

    print_summary(run_flow(simulate_and_sync))
    return openproject.TABLES, EXAMPLE_QUERIES
