"""``pwh.toml``: the project's configuration file, read with :mod:`tomllib`, with errors
that name the file and the key to fix.

Each section belongs to the part that uses it, which parses it from :attr:`PwhConfig.raw`:
``[rayteams.accounts.*]`` to pwh/sources/rayteams/accounts.py, ``[schedules.*]`` to
pwh/flows/schedules.py (``pwh serve``). This module knows no section, so every layer may
read the file.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pwh.errors import PwhError

CONFIG_FILE = Path("pwh.toml")


class ConfigError(PwhError, ValueError):
    """pwh.toml cannot be used as written; the message names the file and the key."""


@dataclass(frozen=True)
class PwhConfig:
    path: Path | None
    raw: Mapping[str, Any] = field(default_factory=dict)  # the whole parsed file

    @property
    def where(self) -> Path:
        """The file named in messages (the default one when there is none)."""
        return self.path or CONFIG_FILE


def load_config(path: str | Path | None = None) -> PwhConfig:
    """Read ``path`` (default ``pwh.toml`` in the working directory). A missing default
    file is an empty configuration; a missing named file is an error."""
    if path is None:
        if not CONFIG_FILE.exists():
            return PwhConfig(None)
        path = CONFIG_FILE
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return PwhConfig(path, raw)
