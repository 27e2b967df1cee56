"""The Prefect flows of pwh/flows/clarity_sync.py: the same functions, run as Prefect flow runs
(deployments, `pwh serve`, and `pwh sync` when a Prefect API is configured or --prefect).
Inside a flow run the sync's stages become Prefect tasks (pwh/flows/runner.py)."""

from __future__ import annotations

from pwh.flows import clarity_sync as plain
from pwh.flows.prefect_flows import sync_flow

sync_clarity = sync_flow("sync-clarity")(plain.sync_clarity)
