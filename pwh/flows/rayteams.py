"""The Prefect flows of pwh/flows/rayteams_sync.py: the same functions, run as Prefect flow runs
(deployments, `pwh serve`, and `pwh sync` when a Prefect API is configured or --prefect).
Inside a flow run the sync's stages become Prefect tasks (pwh/flows/runner.py)."""

from __future__ import annotations

from pwh.flows import rayteams_shards as shards
from pwh.flows import rayteams_sync as plain
from pwh.flows.prefect_flows import sync_flow

sync_rayteams = sync_flow("sync-rayteams")(plain.sync_rayteams)
sync_rayteams_account = sync_flow("sync-rayteams-account")(plain.sync_rayteams_account)
sync_rayteams_accounts = sync_flow("sync-rayteams-accounts")(plain.sync_rayteams_accounts)
stage_rayteams_shard = sync_flow("stage-rayteams-shard")(shards.stage_rayteams_shard)
sync_rayteams_sharded = sync_flow("sync-rayteams-sharded")(shards.sync_rayteams_sharded)
