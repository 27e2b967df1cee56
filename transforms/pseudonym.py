"""Patient identifiers never land raw: names and patient ids become keyed pseudonyms
(HMAC-SHA256 with a secret key), birth dates become a birth year.

The key comes from ``PWH_PSEUDONYM_KEY`` (read inside the flow, never a flow parameter)
or a key file beside the warehouse. A keyed hash, unlike a plain one, cannot be reversed by
hashing a list of likely names. The warehouse records the key's fingerprint and refuses
another key (warehouse/pseudonym_keys.py).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
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


# What the fingerprint of a key is an HMAC of: a fixed label, so the fingerprint proves
# which key made a warehouse's pseudonyms without being the key or a plain hash of it.
FINGERPRINT_LABEL = b"pwh pseudonym key fingerprint v1"


@dataclass(frozen=True)
class PseudonymKey:
    """The key pseudonyms are made with and where it came from: ``PWH_PSEUDONYM_KEY``, the
    key file beside the warehouse, or (neither there) a fresh random key that is written to
    the key file only once the warehouse accepts it (:meth:`keep`)."""

    secret: bytes = field(repr=False)
    origin: str  # "environment", "file" or "new"
    file: Path | None = None

    @property
    def fingerprint(self) -> str:
        return hmac.new(self.secret, FINGERPRINT_LABEL, hashlib.sha256).hexdigest()

    def keep(self) -> None:
        """Write a new key to its file (owner-readable only); a key read from somewhere stays there."""
        if self.origin != "new" or self.file is None:
            return
        self.file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(self.secret.decode())


def choose_key(key_file: Path | None = None) -> PseudonymKey:
    """The pseudonym key from the environment or, when a key file is given, from it; with
    neither, a new random key (not yet written: see :meth:`PseudonymKey.keep`)."""
    from_env = os.environ.get(KEY_VARIABLE)
    if from_env:
        return PseudonymKey(from_env.encode(), "environment", key_file)
    if key_file is None:
        raise RuntimeError(
            f"{KEY_VARIABLE} is not set: set it to a secret of at least 16 characters "
            "(the same one on every run, or pseudonyms will not match across runs)"
        )
    if key_file.exists():
        return PseudonymKey(key_file.read_text().strip().encode(), "file", key_file)
    return PseudonymKey(secrets.token_hex(32).encode(), "new", key_file)


def load_key(key_file: Path | None = None) -> bytes:
    """The pseudonym key, a new key file created when there is none (for callers that do
    not check the warehouse's fingerprint: the benchmark's fresh warehouses)."""
    key = choose_key(key_file)
    key.keep()
    return key.secret
