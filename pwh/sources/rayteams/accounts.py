"""RAYTeams accounts of ``pwh.toml``: ``[rayteams.accounts.<name>]``, one RAYTeams account
(a lab, or one regional branch of a lab) per table::

    [rayteams.accounts.seoul]
    region = "ap-northeast-2"     # required: one of pwh.sources.rayteams.oauth.REGIONS
    sandbox = ""                  # optional: "rayteams<sandbox>.com"
    client_id = "…"               # optional here: else RAYTEAMS_SEOUL_CLIENT_ID
    base_url = "https://…/v1.0"   # optional: else derived from region and sandbox
    token_url = "https://…/oauth2/token"  # optional: else derived from region, sandbox, oauth_stage
    oauth_stage = "development"   # optional: the stage in the token host

Secrets never live in the file: the client secret and the refresh token are read inside
the flow from ``RAYTEAMS_<NAME>_CLIENT_SECRET`` and ``RAYTEAMS_<NAME>_REFRESH_TOKEN`` (or
the Prefect Secret blocks ``rayteams-<name>-client-secret`` / ``…-refresh-token``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pwh.config import ConfigError, PwhConfig
from pwh.sources.rayteams.oauth import (
    DEFAULT_OAUTH_STAGE,
    REGIONS,
    api_base_url,
    token_endpoint,
)

_ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
_ACCOUNT_KEYS = ("region", "sandbox", "base_url", "token_url", "client_id", "oauth_stage")
# Keys that would put a secret into a file people commit and share.
_SECRET_KEYS = ("client_secret", "refresh_token", "token", "access_token", "secret", "password")


def env_name(account: str) -> str:
    """The account's part of its variable names: ``lab-eu`` → ``LAB_EU``."""
    return re.sub(r"[^A-Z0-9]", "_", account.upper())


@dataclass(frozen=True)
class RayteamsAccount:
    """One RAYTeams account: where it lives and where its secrets are (never their values)."""

    name: str
    region: str
    base_url: str
    token_url: str
    sandbox: str = ""
    client_id: str | None = None  # None: read from client_id_variable

    @property
    def client_id_variable(self) -> str:
        return f"RAYTEAMS_{env_name(self.name)}_CLIENT_ID"

    @property
    def client_secret_variable(self) -> str:
        return f"RAYTEAMS_{env_name(self.name)}_CLIENT_SECRET"

    @property
    def refresh_token_variable(self) -> str:
        return f"RAYTEAMS_{env_name(self.name)}_REFRESH_TOKEN"


def rayteams_accounts(config: PwhConfig) -> dict[str, RayteamsAccount]:
    """Every account of ``config``, by name; :class:`ConfigError` names what to fix."""
    path = config.where
    section = config.raw.get("rayteams", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [rayteams] must be a table")
    tables = section.get("accounts", {})
    if not isinstance(tables, dict):
        raise ConfigError(f"{path}: [rayteams.accounts] must hold one table per account, e.g. [rayteams.accounts.seoul]")
    accounts: dict[str, RayteamsAccount] = {}
    seen_env: dict[str, str] = {}
    for name, table in tables.items():
        where = f"{path}: [rayteams.accounts.{name}]"
        if not _ACCOUNT_NAME.match(name):
            raise ConfigError(f"{where}: an account name is letters, digits, '-' and '_' (at most 63)")
        if not isinstance(table, dict):
            raise ConfigError(f"{where} must be a table")
        other = seen_env.setdefault(env_name(name), name)
        if other != name:
            raise ConfigError(f"{where}: its variables (RAYTEAMS_{env_name(name)}_…) clash with account {other!r}")
        accounts[name] = _account(name, table, where)
    return accounts


def rayteams_account(config: PwhConfig, name: str) -> RayteamsAccount:
    """The account ``name`` of ``config``; :class:`ConfigError` lists the configured ones."""
    accounts = rayteams_accounts(config)
    try:
        return accounts[name]
    except KeyError:
        known = ", ".join(sorted(accounts)) or "none"
        raise ConfigError(
            f"{config.where}: no RAYTeams account {name!r} (configured: {known}); add [rayteams.accounts.{name}]"
        ) from None


def _account(name: str, table: Mapping[str, Any], where: str) -> RayteamsAccount:
    secrets = sorted(k for k in table if k.lower() in _SECRET_KEYS)
    if secrets:
        prefix = f"RAYTEAMS_{env_name(name)}_"
        raise ConfigError(
            f"{where}: {', '.join(secrets)} must not be in the file; set {prefix}CLIENT_SECRET and "
            f"{prefix}REFRESH_TOKEN in the environment (or as Prefect Secret blocks)"
        )
    unknown = sorted(set(table) - set(_ACCOUNT_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(_ACCOUNT_KEYS)}")
    for key, value in table.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where}: {key} must be a string")
    region = table.get("region")
    if not region:
        raise ConfigError(f"{where}: region is required (one of {', '.join(REGIONS)})")
    if region not in REGIONS:
        raise ConfigError(f"{where}: unknown region {region!r}; the regions are {', '.join(REGIONS)}")
    sandbox = table.get("sandbox", "")
    try:
        base_url = table.get("base_url") or api_base_url(region, sandbox)
        token_url = table.get("token_url") or token_endpoint(region, sandbox, table.get("oauth_stage", DEFAULT_OAUTH_STAGE))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    for key, url in (("base_url", base_url), ("token_url", token_url)):
        if not url.startswith(("https://", "http://")):
            raise ConfigError(f"{where}: {key} must be an http(s) URL")
    return RayteamsAccount(
        name=name, region=region, base_url=base_url.rstrip("/"), token_url=token_url,
        sandbox=sandbox, client_id=table.get("client_id") or None,
    )
