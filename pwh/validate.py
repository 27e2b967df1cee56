"""What a command checks before anything slow starts (Prefect, the warehouse, the network):
base URLs, credentials and the configuration file. Each problem is one :class:`SettingError`
whose message names what to fix. Nothing here imports Prefect, DuckDB or aiohttp."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from flows.secrets import missing_secrets_message


class SettingError(ValueError):
    """A setting that cannot work as given; the message names the option or variable."""


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
    missing = [v for v in variables if not os.environ.get(v)]
    if missing and not prefect_api_configured():
        raise SettingError(missing_secrets_message(missing, flags=flags))


# Where Prefect 3 reads settings besides the environment and the profile: files in the
# working directory (the table of each TOML file that holds Prefect's settings).
_SETTINGS_TABLES = (("prefect.toml", ()), ("pyproject.toml", ("tool", "prefect")))
_DOTENV_API_URL = re.compile(r"(?m)^\s*(?:export\s+)?PREFECT_API_URL\s*=\s*['\"]?[^\s'\"#]")


def prefect_api_configured() -> bool:
    """Whether Prefect would talk to an API server (PREFECT_API_URL in the environment, in
    the working directory's .env, prefect.toml or pyproject.toml, or in the active
    profile), read without importing Prefect. A settings file that cannot be read counts
    as configured: deferring to the flow is only slower, never wrong."""
    if os.environ.get("PREFECT_API_URL"):
        return True
    try:
        if _DOTENV_API_URL.search(Path(".env").read_text(errors="replace")):
            return True
    except FileNotFoundError:
        pass
    except OSError:
        return True
    for name, table in _SETTINGS_TABLES:
        try:
            settings = tomllib.loads(Path(name).read_text())
        except FileNotFoundError:
            continue
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            return True
        for key in (*table, "api"):
            settings = settings.get(key, {}) if isinstance(settings, dict) else {}
        if isinstance(settings, dict) and settings.get("url"):
            return True
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles_path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(profiles_path.read_text())
    except FileNotFoundError:
        return False
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return True
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    profile = profiles.get("profiles", {}).get(active, {})
    return isinstance(profile, dict) and bool(profile.get("PREFECT_API_URL"))


def check_config(path: Path | None):
    """``pwh.toml`` (``path``, else ./pwh.toml when present) as every part reads it: its
    accounts and its schedules with their cron expressions. Returns the parsed accounts."""
    from flows.schedules import ScheduleError, load_schedules
    from pwh.config import ConfigError, load_config

    try:
        loaded = load_config(path)
        if loaded.path is not None:
            load_schedules(loaded.path)
    except (ConfigError, ScheduleError) as exc:
        raise SettingError(str(exc)) from None
    return loaded
