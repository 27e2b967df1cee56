"""The RAYTeams sync as shards (pwh/flows/shards.py): the shard, which stages one part of
one account, and the parent, which starts the shards (on a work pool through a deployment
of the shard flow, or in this process) and loads them. The Prefect flows are in
pwh/flows/prefect_flows.py, as for the plain syncs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pwh.config import ConfigError, load_config
from pwh.errors import PwhError
from pwh.flows.host import flow_run_context
from pwh.flows.rayteams_sync import (
    RayteamsAdapter,
    default_key_file,
    oauth_credentials,
)
from pwh.flows.registry import RAYTEAMS
from pwh.flows.secrets import read_secret
from pwh.flows.shards import Shard, run_sharded, stage_shard
from pwh.schemas import rayteams as tables
from pwh.settings import KEY_VARIABLE, choose_key
from pwh.sources.http import HttpSettings
from pwh.sources.rayteams.accounts import rayteams_account, rayteams_accounts
from pwh.sources.rayteams.client import CLIENT_ID_VARIABLE, DEFAULT_STRATEGY, TOKEN_VARIABLE, RayteamsClient
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.warehouse.pseudonym_keys import PseudonymKeyError

SHARD_FLOW = "stage-rayteams-shard"
# How often the parent asks whether a shard's flow run has finished (Prefect's default, 5 s,
# is a tenth of a small shard's run).
SHARD_POLL_S = 1.0


async def stage_rayteams_shard(
    staging: str,
    parent_run_id: str,
    account: str,
    part: int = 0,
    parts: int = 1,
    base_url: str | None = None,
    config_path: str | None = None,
    key_file: str | None = None,
    mode: str = "incremental",
    strategy: str = DEFAULT_STRATEGY,
    concurrency: int = RAYTEAMS.concurrency,
    batch_size: int = RAYTEAMS.batch_size,
    timeout_s: float = 30.0,
    max_attempts: int = 6,
    allow_mass_delete: bool = False,
) -> dict[str, Any]:
    """Stage part ``part`` of ``parts`` of one RAYTeams account into ``staging`` (never the
    warehouse). The account is ``base_url`` with RAYTEAMS_TOKEN / RAYTEAMS_CLIENT_ID, or
    the configured ``account`` of ``config_path`` (OAuth). The pseudonym key comes from
    PWH_PSEUDONYM_KEY, else ``key_file``; a shard never makes one."""
    settings = HttpSettings.for_run(concurrency, timeout_s, max_attempts, None)
    region = None
    if base_url is not None:
        client = RayteamsClient.connect(base_url, token=read_secret(TOKEN_VARIABLE),
                                        client_id=read_secret(CLIENT_ID_VARIABLE), settings=settings)
    else:
        configured = rayteams_account(load_config(config_path), account)
        client = RayteamsClient.connect(configured.base_url, oauth=oauth_credentials(configured, settings),
                                        settings=settings)
        region = configured.region
    key = choose_key(Path(key_file) if key_file else None)
    if key.origin == "new":
        raise PseudonymKeyError(f"the shard has no pseudonym key: set {KEY_VARIABLE} on its worker to the "
                                "warehouse's key")
    adapter = RayteamsAdapter(client, account=account, strategy=strategy, pseudonyms=Pseudonymizer(key.secret),
                              region=region)
    return await stage_shard(adapter, Shard(parent_run_id, account, part, parts), staging=staging, mode=mode,
                             batch_size=batch_size, fingerprint=key.fingerprint, allow_mass_delete=allow_mass_delete)


async def sync_rayteams_sharded(
    staging: str,
    parts: int = 1,
    shard_deployment: str | None = None,
    base_url: str | None = None,
    config_path: str | None = None,
    account: str | None = None,
    db_path: str = "warehouse.duckdb",
    mode: str = "incremental",
    strategy: str = DEFAULT_STRATEGY,
    concurrency: int = RAYTEAMS.concurrency,
    batch_size: int = RAYTEAMS.batch_size,
    timeout_s: float = 30.0,
    max_attempts: int = 6,
    allow_mass_delete: bool = False,
) -> dict[str, Any]:
    """Sync RAYTeams as shards: ``base_url`` (one account, named ``account`` or `default`)
    or every account of ``config_path`` (or only ``account``), each split into ``parts``
    by unit key. ``shard_deployment`` names the deployment of the `stage-rayteams-shard`
    flow whose work pool runs the shards (one flow run per shard, idempotency key
    ``<parent run id>:<shard>``: a retried parent starts none twice); without it the shards
    run in this process. Then the staged shards are loaded, each once, and the replica
    published (pwh/flows/shards.py)."""
    if base_url is not None:
        accounts = [account or "default"]
    else:
        config = load_config(config_path)
        accounts = [rayteams_account(config, account).name] if account else sorted(rayteams_accounts(config))
        if not accounts:
            raise ConfigError(f"{config.path}: no RAYTeams accounts; add [rayteams.accounts.<name>] tables")
    key = choose_key(default_key_file(db_path))

    async def start_shard(shard: Shard) -> Any:
        parameters: dict[str, Any] = dict(
            staging=str(Path(staging).resolve()), parent_run_id=shard.parent_run_id, account=shard.account,
            part=shard.part, parts=shard.parts, base_url=base_url,
            config_path=None if config_path is None else str(Path(config_path).resolve()),
            key_file=str(default_key_file(db_path)), mode=mode, strategy=strategy, concurrency=concurrency,
            batch_size=batch_size, timeout_s=timeout_s, max_attempts=max_attempts,
            allow_mass_delete=allow_mass_delete,
        )
        if shard_deployment is None:
            stage = stage_rayteams_shard
            if flow_run_context() is not None:
                stage = RAYTEAMS.flow_function("stage_rayteams_shard", prefect=True)  # each shard its own subflow run
            return await stage(**parameters)
        return await run_shard_deployment(f"{SHARD_FLOW}/{shard_deployment}", shard, parameters)

    return await run_sharded(db_path=db_path, staging=staging, source=RayteamsAdapter.source, tables=tables.TABLES,
                             accounts=accounts, parts=parts, start_shard=start_shard, pseudonym_key=key)


class ShardRunError(PwhError, RuntimeError):
    """A shard's flow run on the work pool did not complete."""


async def run_shard_deployment(deployment: str, shard: Shard, parameters: dict[str, Any]) -> Any:
    """Start the shard's flow run on the deployment's work pool and wait for it."""
    from prefect.deployments import run_deployment

    flow_run = await run_deployment(  # type: ignore[misc]  # Prefect's sync/async dispatch: awaited in a flow it is a coroutine
        deployment, parameters=parameters, idempotency_key=shard.manifest_id, timeout=None,
        poll_interval=SHARD_POLL_S, as_subflow=True)
    if flow_run.state is None or not flow_run.state.is_completed():
        state = flow_run.state.name if flow_run.state is not None else "unknown"
        raise ShardRunError(f"shard flow run {flow_run.id} ended {state}")
    return flow_run.id
