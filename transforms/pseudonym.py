"""Patient identifiers never land raw: names and patient ids become keyed pseudonyms
(HMAC-SHA256 with a secret key), birth dates become a birth year.

The key comes from ``PWH_PSEUDONYM_KEY`` (read inside the flow, never a flow parameter).
A keyed hash, unlike a plain one, cannot be reversed by hashing a list of likely names.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path
from typing import Any

KEY_VARIABLE = "PWH_PSEUDONYM_KEY"
_YEAR = re.compile(r"^\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")

# The same patient recurs within a project (project, orders, groups), rarely across many.
CACHE_SIZE = 4096


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError(f"{KEY_VARIABLE} must be at least 16 bytes")
        self._key = key
        self._cache: dict[str, str] = {}

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymizer(<key hidden>)"

    def pseudonym(self, value: Any) -> str | None:
        """A stable 64-hex-digit pseudonym of a name or id (None stays None)."""
        if value is None:
            return None
        text = value if isinstance(value, str) else str(value)
        cached = self._cache.get(text)
        if cached is None:
            cached = hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()  # bounded: a run's memory must not grow with the account
            self._cache[text] = cached
        return cached


def birth_year(value: Any) -> int | None:
    """The year of a birth date "YYYY-MM-DD" (or "YYYY"); None when there is no date."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        match = _YEAR.match(value)
        if match and 1850 <= int(match.group(1)) <= 2200:
            return int(match.group(1))
    raise ValueError(f"subject.birth: expected a date YYYY-MM-DD, got {type(value).__name__}")


def load_key(key_file: Path | None = None) -> bytes:
    """The pseudonym key from the environment or, when a key file is given, from it —
    created (owner-readable only) with a fresh random key when missing."""
    from_env = os.environ.get(KEY_VARIABLE)
    if from_env:
        return from_env.encode()
    if key_file is None:
        raise RuntimeError(
            f"{KEY_VARIABLE} is not set: set it to a secret of at least 16 characters "
            "(the same one on every run, or pseudonyms will not match across runs)"
        )
    if not key_file.exists():
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return key_file.read_text().strip().encode()
