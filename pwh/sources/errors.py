"""Typed errors every source client raises.

Messages name the method and path only: never headers, tokens or query strings that
could carry a credential, and never a server's free text (only the HTTP status and a
machine error code that passes :func:`safe_token`), so they are safe in logs, the run
ledger and Prefect state messages.
"""

from __future__ import annotations

import re

from pwh.errors import PwhError

# What of a server's answer may appear in our messages: a machine error code (``NO_ITEM``,
# ``MissingPermission``, ``404``), nothing else. A server's free text may quote patient
# data or the credentials it was sent; it is dropped, not filtered.
_TOKEN = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def safe_token(value: object) -> str | None:
    """``value`` as text if it is a short machine token (an error code, a type name), else
    None: the one way server-given text enters an error message."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if _TOKEN.fullmatch(text) else None


class SourceError(PwhError):
    """Base of every error a source client raises."""


class AuthError(SourceError):
    """401: the credentials were refused. The message names the setting to fix."""


class NotFoundError(SourceError):
    """The resource does not exist or is not visible to these credentials. ``url``: the
    address that answered HTTP 404 (scheme, host, port and path only, set by the HTTP
    client), so that a 404 of a whole listing can say which base URL to check."""

    url: str | None = None


class ApiError(SourceError):
    """A permanent error answered by the API (4xx, or a custom error in a 200 answer)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class RedirectRefusedError(SourceError):
    """A redirect off the request's origin (credentials must not follow it), or too many
    redirects. Permanent (not retried)."""


class TransientError(SourceError):
    """Worth retrying: 429, 5xx, timeouts, dropped connections, truncated or malformed bodies."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class UnresolvedHostError(TransientError):
    """The host name did not resolve. Retried once (a resolver hiccup), not until the
    attempts run out: a misspelt host does not start to exist."""

    attempts = 2


class RetriesExhaustedError(SourceError):
    """A transient failure that did not clear within the allowed attempts."""


class ResponseTooLargeError(SourceError):
    """An answer larger than the configured cap (PWH_MAX_RESPONSE_BYTES)."""
