"""The settings the project reads from its environment, each named once here.

``PWH_PSEUDONYM_KEY``: the key patient pseudonyms are made with (pwh/transforms/pseudonym.py),
or, when it is unset, the key file beside the warehouse.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

KEY_VARIABLE = "PWH_PSEUDONYM_KEY"

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
