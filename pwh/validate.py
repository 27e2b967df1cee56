"""What a command checks before anything slow starts (Prefect, the warehouse, the network):
the environment's settings, base URLs, credentials and the configuration file. Each problem is one :class:`SettingError`
whose message names what to fix. Nothing here imports Prefect, DuckDB or aiohttp."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from pwh.errors import SettingError
from pwh.flows.host import configured_api_url
from pwh.flows.secrets import missing_secrets_message
from pwh.settings import VARIABLES, environment_value


def check_environment() -> None:
    """Every ``PWH_*`` setting that is set (pwh/settings.py) can be read: the first that
    cannot raises :class:`SettingError` naming it, before any command starts."""
    for variable in VARIABLES:
        variable.read()


def check_base_url(url: str, option: str = "--base-url") -> None:
    """An http(s) URL with a host, a valid port, and no user, password, query or fragment
    (credentials come from the environment; a query would be sent on every request). The
    URL itself is never quoted back: it may hold what should not be printed."""
    if not re.match(r"(?i)^https?://", url.strip()):
        raise SettingError(f"{option} must start with http:// or https://")
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        raise SettingError(f"{option} must not carry a user or password: the credentials come from "
                           "the environment (see --help)")
    if not parts.hostname:
        raise SettingError(f"{option} has no host: write it as https://host[:port]/path")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked for it
    except ValueError:
        raise SettingError(f"{option} has an invalid port: a number from 1 to 65535") from None
    if parts.query or parts.fragment:
        raise SettingError(f"{option} must not carry a query string or fragment: give the API's base path only")


def check_secrets(variables: Iterable[str], *, flags: str = "") -> None:
    """Every variable set, unless a Prefect API is configured: then the flow may still find
    a missing one in a Secret block, and the check is left to it. ``flags``: the options
    that can stand in for the variables, named in the message."""
    missing = [v for v in variables if environment_value(v) is None]
    if missing and not prefect_api_configured():
        raise SettingError(missing_secrets_message(missing, flags=flags))


# Where Prefect 3 reads settings besides the environment and the profile: files in the
# working directory (the table of each TOML file that holds Prefect's settings).
def prefect_api_configured() -> bool:
    """Whether Prefect would talk to an API server, read as Prefect reads its settings,
    without importing it (pwh/flows/host.py)."""
    return configured_api_url() is not None


def check_config(path: Path | None):
    """``pwh.toml`` (``path``, else ./pwh.toml when present) as every part reads it: its
    accounts and its schedules with their cron expressions. Returns the parsed file."""
    from pwh.config import ConfigError, load_config
    from pwh.flows.schedules import ScheduleError, load_schedules
    from pwh.sources.rayteams.accounts import rayteams_accounts

    try:
        loaded = load_config(path)
        rayteams_accounts(loaded)
        if loaded.path is not None:
            load_schedules(loaded.path)
    except (ConfigError, ScheduleError) as exc:
        raise SettingError(str(exc)) from None
    return loaded


def check_streams(source: str, select: Iterable[str] | None, exclude: Iterable[str] | None) -> None:
    """--select/--exclude name streams the source has (pwh/flows/registry.py)."""
    from pwh.flows.registry import streams_of
    from pwh.flows.streams import UnknownStreamError, choose_streams

    try:
        chosen = choose_streams(source, streams_of(source), select or (), exclude or ())
    except UnknownStreamError as exc:
        raise SettingError(f"{exc} (`pwh sources` lists them)") from None
    if streams_of(source) and not chosen:
        raise SettingError(f"--select/--exclude leave no stream of {source} to fetch; "
                           "to sync projects alone, exclude only the streams you do not want")
