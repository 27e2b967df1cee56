"""prefect.yaml, made from the registry: one deployment of each source's sync flow.

``python -m pwh.flows.prefect_yaml > prefect.yaml`` writes it; tests/test_registry.py checks
that the file is what this makes, so a new source's deployment is never written by hand."""

from __future__ import annotations

import json

from pwh.flows.registry import PREFECT_FLOWS, SOURCES, Source

HEADER = """\
# Made by `python -m pwh.flows.prefect_yaml > prefect.yaml` from the source registry
# (pwh/flows/registry.py); edit there, not here.
#
# Deploy the sync flows to a Prefect work pool (instead of `pwh serve`), e.g.:
#
#   prefect work-pool create pwh-process --type process
#   prefect deploy --all                 # from this directory, PREFECT_API_URL set
#   prefect worker start --pool pwh-process
#
# Workers run each flow run in a subprocess, in the directory named by the pull step,
# with the project installed (`pip install -e .` there). Credentials are NOT here and never
# flow parameters: give the worker's environment the variables each source names
# (`pwh sources`; e.g. RAYTEAMS_TOKEN / RAYTEAMS_CLIENT_ID) and PWH_PSEUDONYM_KEY, or create
# Prefect Secret blocks (`rayteams-token`, `rayteams-client-id`, ...). See docs/operations.md.
#
# Every deployment writes the same DuckDB file; one run per deployment at a time (an
# overlapping scheduled run is cancelled: CANCEL_NEW), and runs of different deployments
# wait for each other on the warehouse writer lock (<db>.lock).
name: project-warehouse
prefect-version: 3.8.8

build: null
push: null
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: /opt/project-warehouse  # where the workers have this repository

definitions:
  work_pool: &pool
    name: pwh-process
    work_queue_name: default
  one_at_a_time: &one_at_a_time
    limit: 1
    collision_strategy: CANCEL_NEW
  warehouse: &warehouse /srv/pwh/warehouse.duckdb

deployments:
"""


def deployment(source: Source) -> str:
    # JSON strings are YAML strings: quoted, escaped.
    return f"""
  - name: {source.name}
    description: {json.dumps(f"Incremental sync of {source.title}: {source.description[:1].lower()}{source.description[1:]}")}
    entrypoint: {PREFECT_FLOWS.replace(".", "/")}.py:{source.flow}
    tags: [pwh, {source.name}]
    parameters:
      base_url: {json.dumps(source.base_url_example)}
      db_path: *warehouse
    schedules:
      - cron: {json.dumps(source.default_cron)}
        timezone: UTC
    concurrency_limit: *one_at_a_time
    work_pool: *pool
"""


def prefect_yaml() -> str:
    return HEADER + "".join(deployment(source) for source in SOURCES).lstrip("\n")


if __name__ == "__main__":
    print(prefect_yaml(), end="")
