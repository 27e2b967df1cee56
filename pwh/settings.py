"""Every setting pwh reads from its environment, named, parsed and checked here.

A malformed value is refused in one line that names the variable (:class:`SettingError`);
``pwh`` checks them all (``check_environment`` in pwh/validate.py) before a command starts
anything slow, and the run reads them again where they act, so a flow run started by
a schedule fails as early. A source's credential variables (``RAYTEAMS_TOKEN``, …) are
declared beside its client and read through :func:`environment_value` like these.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pwh.errors import SettingError

T = TypeVar("T")


def environment_value(name: str) -> str | None:
    """The variable's value; None when unset or empty (an empty variable is an unset one)."""
    return os.environ.get(name) or None


@dataclass(frozen=True)
class Variable(Generic[T]):
    """One environment variable: its name, what it sets, and how its text is read (a
    ``parse`` raises ValueError saying what the value must be)."""

    name: str
    meaning: str
    parse: Callable[[str], T]
    secret: bool = False  # a secret's value is never quoted back

    def read(self) -> T | None:
        """The parsed value, None when unset; :class:`SettingError` naming the variable."""
        raw = environment_value(self.name)
        if raw is None:
            return None
        try:
            return self.parse(raw)
        except ValueError as exc:
            quoted = "" if self.secret else f", not {raw.strip()[:40]!r}"
            raise SettingError(f"{self.name} {exc}{quoted}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise ValueError("must be a number of seconds, 0 or more")
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ValueError("must be a share between 0 and 1")
    return value


def _bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("must be a whole number of bytes") from None
    if value < 1:
        raise ValueError("must be at least 1 byte")
    return value


MIN_DUCKDB_MEMORY = 8_000_000
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT])(i?)B\s*", re.IGNORECASE)


def _memory(text: str) -> int:
    """A size as DuckDB writes one (512MB, 2GB, 1.5GiB; MB = 1000², MiB = 1024²), in bytes."""
    size = _SIZE.fullmatch(text)
    if size is None:
        raise ValueError("must be a size such as 512MB or 2GB")
    number, unit, binary = size.groups()
    value = int(float(number) * (1024 if binary else 1000) ** ("KMGT".index(unit.upper()) + 1))
    if value < MIN_DUCKDB_MEMORY:
        raise ValueError("must be at least 8MB (DuckDB cannot open a warehouse in less)")
    return value


MIN_KEY_BYTES = 16


def _key(text: str) -> str:
    if len(text.encode()) < MIN_KEY_BYTES:
        raise ValueError(f"must be at least {MIN_KEY_BYTES} bytes")
    return text


def _crash_point(text: str) -> tuple[str, int]:
    point, colon, nth = text.partition(":")
    if not point or (colon and not (nth.isdigit() and int(nth) >= 1)):
        raise ValueError("must be POINT or POINT:N (N from 1)")
    return point, int(nth) if colon else 1


def _path(text: str) -> Path:
    return Path(text).expanduser()


LOCK_WAIT_S = Variable(
    "PWH_LOCK_WAIT_S", "seconds a sync waits for another writer of the warehouse "
    "(default: 900 in a run started by a schedule, else 0: fail at once)", _seconds)
MAX_DELETE_SHARE = Variable(
    "PWH_MAX_DELETE_SHARE", "the share of a source's live projects a run may mark deleted "
    "without --allow-mass-delete (default 0.25)", _share)
MAX_RESPONSE_BYTES = Variable(
    "PWH_MAX_RESPONSE_BYTES", "the largest answer accepted from a source, in bytes (default 64 MiB)", _bytes)
PSEUDONYM_KEY = Variable(
    "PWH_PSEUDONYM_KEY", "the key patient pseudonyms are made with (else the key file beside the "
    "warehouse)", _key, secret=True)
KEY_VARIABLE = PSEUDONYM_KEY.name
DUCKDB_MEMORY = Variable(
    "PWH_DUCKDB_MEMORY", "DuckDB's memory limit for a sync's warehouse connection, e.g. 512MB or 2GB "
    "(default: 128MiB, or a quarter of the warehouse file's size if that is more)", _memory)
# A sync's DuckDB limit when PWH_DUCKDB_MEMORY is unset. Under DuckDB's own (80 % of the
# machine's memory) it keeps every block a sync writes, and each checkpoint's working set:
# a 200,000-project sync peaked at 1,050 MB, and at 522 MB under 128 MiB, in about the
# same time (docs/performance.md). What it cannot write out grows with the units' keys
# (80–170 bytes a project at 200,000), as the file does (~2 KB a project): a quarter of
# the file leaves that room many times over.
DEFAULT_DUCKDB_MEMORY = 128 * 1024**2
FILE_SHARE_OF_MEMORY = 4


def duckdb_memory(warehouse: Path) -> int:
    """DuckDB's memory limit on a sync's connection to ``warehouse``, in bytes."""
    value = DUCKDB_MEMORY.read()
    if value is not None:
        return value
    try:
        size = warehouse.stat().st_size
    except OSError:  # not made yet
        size = 0
    return max(DEFAULT_DUCKDB_MEMORY, size // FILE_SHARE_OF_MEMORY)

LOG_FILE = Variable(
    "PWH_LOG_FILE", "where an unexpected error's traceback is written "
    "(default $XDG_STATE_HOME/pwh/pwh.log)", _path)
# Test hooks (pwh/warehouse/crashpoints.py): inert unless set.
CRASH_AT = Variable(
    "PWH_CRASH_AT", "test hook: the sync kills itself the N-th time it reaches POINT", _crash_point)
FAIL_AT = Variable("PWH_FAIL_AT", "test hook: the disk is full at POINT", str)

VARIABLES: tuple[Variable[Any], ...] = (
    LOCK_WAIT_S, MAX_DELETE_SHARE, MAX_RESPONSE_BYTES, DUCKDB_MEMORY, PSEUDONYM_KEY, LOG_FILE, CRASH_AT, FAIL_AT,
)

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
    from_env = PSEUDONYM_KEY.read()
    if from_env:
        return PseudonymKey(from_env.encode(), "environment", key_file)
    if key_file is None:
        raise SettingError(
            f"{KEY_VARIABLE} is not set: set it to a secret of at least {MIN_KEY_BYTES} characters "
            "(the same one on every run, or pseudonyms will not match across runs)"
        )
    if key_file.exists():
        return PseudonymKey(key_file.read_text().strip().encode(), "file", key_file)
    return PseudonymKey(secrets.token_hex(32).encode(), "new", key_file)
