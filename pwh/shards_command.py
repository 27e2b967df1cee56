"""`pwh sync <source> --shards K`: the sync split into shards, each staged by its own run
(on a work pool with --shard-deployment), then loaded here, each once (docs/scale.md).
One line per shard; exit 1 if a shard failed (what the others staged is loaded), 3 if
one was partial."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from pwh.flows.registry import Source


def sync_sharded(source: Source, *, shards: int, staging: Path | None, shard_deployment: str | None,
                 base_url: str | None, config: Path | None, account: str | None, overrides: dict[str, str | None],
                 quiet: bool, prefect: bool | None, **common: Any) -> None:
    from pwh.cli import fail, run_flow, sync_flow
    from pwh.flows.shards import ShardsFailedError
    from pwh.validate import check_base_url, check_config, check_secrets

    refused = [flag for flag, given in (("--rekey", common.pop("rekey", False)),
                                        ("--max-response-mb", common.pop("max_response_bytes") is not None),
                                        ("--select", common.pop("select")), ("--exclude", common.pop("exclude")),
                                        ("--file-type", common.pop("file_types", None)))
               if given]
    if refused:
        fail(f"{', '.join(refused)} not available with --shards: run without --shards for that")
    if base_url is not None:
        check_base_url(base_url)
        for variable, value in overrides.items():
            if value:
                os.environ[variable] = value
        check_secrets(source.secrets, flags=", ".join(f.flag for f in source.credential_flags))
    elif any(overrides.values()):
        fail(f"{', '.join(f.flag for f in source.credential_flags)} apply with --base-url only")
    loaded = check_config(config) if base_url is None else None
    db_path = common.pop("db_path")
    sharded = sync_flow(source.name, True if shard_deployment else prefect, "sync_rayteams_sharded")

    async def run() -> dict:
        try:
            return await sharded(
                staging=str(staging or Path(db_path).resolve().parent / ".pwh" / "staging"), parts=shards,
                shard_deployment=shard_deployment, base_url=base_url,
                config_path=None if loaded is None else str(loaded.path), account=account, db_path=db_path,
                **common)
        except ShardsFailedError as exc:
            return exc.outcome

    outcome = run_flow(run, show_progress=False)
    for name, shard in sorted(outcome["shards"].items()):
        typer.echo(f"shard {name}: {shard['status']}, {shard['units']:,} projects, {shard['rows']:,} rows"
                   + ("" if shard["loaded_now"] else " (loaded before)"))
    for name, message in sorted(outcome["failed"].items()):
        typer.echo(f"shard {name}: failed: {message}", err=True)
    if outcome["failed"]:
        raise typer.Exit(1)
    if any(shard["status"] == "partial" for shard in outcome["shards"].values()):
        raise typer.Exit(3)
