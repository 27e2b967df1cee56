"""`pwh sync rayteams` without --base-url: the accounts of pwh.toml, each renewing its OAuth
token; one summary per account; exit 1 if any account failed (the others still ran)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from pwh.flows.registry import Source


def sync_configured_accounts(source: Source, *, config: Path | None, account: str | None, all_accounts: bool,
                             quiet: bool, prefect: bool | None, **common: Any) -> None:
    from pwh.cli import fail, print_summary, run_flow, sync_flow
    from pwh.config import ConfigError
    from pwh.sources.rayteams.accounts import rayteams_account, rayteams_accounts
    from pwh.validate import SettingError, check_config, check_secrets

    if account and all_accounts:
        fail("give --account NAME or --all-accounts, not both")
    loaded = check_config(config)
    try:
        chosen = [rayteams_account(loaded, account)] if account else list(rayteams_accounts(loaded).values())
    except ConfigError as exc:
        fail(str(exc))
    if not chosen:
        fail("give --base-url, or configure RAYTeams accounts in pwh.toml ([rayteams.accounts.<name>], "
             "see docs/accounts.md)")
    refusals = []
    for configured in chosen:  # an account without its secrets fails alone, the others still run
        try:
            check_secrets(([] if configured.client_id else [configured.client_id_variable])
                          + [configured.client_secret_variable, configured.refresh_token_variable])
        except SettingError as exc:
            refusals.append(exc)
    if len(refusals) == len(chosen):
        raise refusals[0]
    from pwh.flows.rayteams_sync import AccountsFailedError

    sync_accounts = sync_flow(source.name, prefect, "sync_rayteams_accounts")

    async def run() -> dict:
        try:
            return await sync_accounts(config_path=str(loaded.path), account=account, **common)
        except AccountsFailedError as exc:
            return exc.outcome

    outcome = run_flow(run, show_progress=not quiet and sys.stderr.isatty())
    for name, summary in outcome["accounts"].items():
        typer.echo(f"account {name} ({summary['region']}):")
        print_summary(summary, source)
    for name, message in outcome["failed"].items():
        typer.echo(f"account {name}: failed: {message}", err=True)
    if outcome["failed"]:
        raise typer.Exit(1)
    if any(summary["status"] == "partial" for summary in outcome["accounts"].values()):
        raise typer.Exit(3)
