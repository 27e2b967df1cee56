"""Where a sync runs: as a Prefect flow run, or in this process alone (a hand-run `pwh
sync` with no Prefect API configured). Found out without importing Prefect: importing it
costs ~1.4 s, and running a flow without an API starts Prefect's temporary server
(10-30 s) on every run (docs/operations.md, "Runs with and without Prefect")."""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any


def flow_run_context() -> Any:
    """The Prefect flow run this code runs in, or None. Prefect not imported: none."""
    context = sys.modules.get("prefect.context")
    return None if context is None else context.FlowRunContext.get()


def loaded_prefect_api_url() -> str | None:
    """Prefect's own answer when Prefect is already imported (its in-process settings,
    e.g. a test harness, included), else None without importing it."""
    settings = sys.modules.get("prefect.settings")
    return None if settings is None else (settings.PREFECT_API_URL.value() or None)


def configured_api_url(cwd: Path | None = None) -> str | None:
    """The Prefect API URL the settings name, read as Prefect reads them, in its order:
    the environment, ./.env, ./prefect.toml, ./pyproject.toml [tool.prefect], then the
    active profile of the profiles file. None: no API (Prefect would start a temporary
    server). When Prefect is imported, its own answer."""
    if "prefect.settings" in sys.modules:
        return loaded_prefect_api_url()
    return read_api_url(cwd or Path.cwd())


def read_api_url(cwd: Path) -> str | None:
    """The Prefect API URL of the settings files and environment (tests compare it with
    Prefect's own reading)."""
    dotenv = _dotenv(cwd / ".env")
    prefect_toml = _toml(cwd / "prefect.toml")
    pyproject = _toml(cwd / "pyproject.toml").get("tool", {}).get("prefect", {})
    found = (os.environ.get("PREFECT_API_URL") or dotenv.get("PREFECT_API_URL")
             or _api_url(prefect_toml) or _api_url(pyproject))
    if found:
        return found
    profiles_path = (os.environ.get("PREFECT_PROFILES_PATH") or dotenv.get("PREFECT_PROFILES_PATH")
                     or prefect_toml.get("profiles_path") or pyproject.get("profiles_path"))
    if profiles_path:
        profiles_file = Path(profiles_path).expanduser()
    else:
        home = Path(os.environ.get("PREFECT_HOME") or "~/.prefect").expanduser()
        profiles_file = home / "profiles.toml"
    profiles = _toml(profiles_file)  # absent: Prefect's packaged default, which names no API
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active")
    profile = profiles.get("profiles", {}).get(active, {}) if active else {}
    return profile.get("PREFECT_API_URL") or None


def _api_url(settings: dict[str, Any]) -> str | None:
    api = settings.get("api")
    return api.get("url") if isinstance(api, dict) else None


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}


def _dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (``export`` and quotes allowed), as a .env file holds them."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    values = {}
    for line in lines:
        key, sep, value = line.strip().removeprefix("export ").partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip("'\"")
    return values
