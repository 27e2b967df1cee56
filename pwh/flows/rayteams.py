"""The Prefect flows of pwh/flows/rayteams_sync.py: the same functions, run as Prefect flow runs
(deployments, `pwh serve`, and `pwh sync` when a Prefect API is configured or --prefect).
Inside a flow run the sync's stages become Prefect tasks (pwh/flows/runner.py)."""

from __future__ import annotations

from prefect import flow

from pwh.flows import rayteams_shards as shards
from pwh.flows import rayteams_sync as plain

sync_rayteams = flow(plain.sync_rayteams, name="sync-rayteams", log_prints=False, validate_parameters=True)
sync_rayteams_account = flow(plain.sync_rayteams_account, name="sync-rayteams-account", log_prints=False,
                             validate_parameters=True)
sync_rayteams_accounts = flow(plain.sync_rayteams_accounts, name="sync-rayteams-accounts", log_prints=False,
                              validate_parameters=True)
stage_rayteams_shard = flow(shards.stage_rayteams_shard, name="stage-rayteams-shard", log_prints=False,
                            validate_parameters=True)
sync_rayteams_sharded = flow(shards.sync_rayteams_sharded, name="sync-rayteams-sharded", log_prints=False,
                             validate_parameters=True)
