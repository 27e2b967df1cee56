"""The Prefect flows of pwh/flows/incoplax_sync.py: the same functions, run as Prefect flow runs
(deployments, `pwh serve`, and `pwh sync` when a Prefect API is configured or --prefect).
Inside a flow run the sync's stages become Prefect tasks (pwh/flows/runner.py)."""

from __future__ import annotations

from prefect import flow

from pwh.flows import incoplax_sync as plain

sync_incoplax = flow(name="sync-incoplax", log_prints=False, validate_parameters=True)(plain.sync_incoplax)
