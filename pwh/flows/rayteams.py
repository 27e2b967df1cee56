"""The Prefect flows of pwh/flows/rayteams_sync.py: the same functions, run as Prefect flow runs
(deployments, `pwh serve`, and `pwh sync` when a Prefect API is configured or --prefect).
Inside a flow run the sync's stages become Prefect tasks (pwh/flows/runner.py)."""

from __future__ import annotations

from prefect import flow

from pwh.flows import rayteams_shards as shards
from pwh.flows import rayteams_sync as plain

sync_rayteams = flow(name="sync-rayteams", log_prints=False, validate_parameters=True)(plain.sync_rayteams)
sync_rayteams_account = flow(name="sync-rayteams-account", log_prints=False,
                             validate_parameters=True)(plain.sync_rayteams_account)
sync_rayteams_accounts = flow(name="sync-rayteams-accounts", log_prints=False,
                              validate_parameters=True)(plain.sync_rayteams_accounts)
stage_rayteams_shard = flow(name="stage-rayteams-shard", log_prints=False,
                            validate_parameters=True)(shards.stage_rayteams_shard)
sync_rayteams_sharded = flow(name="sync-rayteams-sharded", log_prints=False,
                             validate_parameters=True)(shards.sync_rayteams_sharded)
