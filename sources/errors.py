"""Typed errors every source client raises.

Messages name the method and path only: never headers, tokens or query strings that
could carry a credential, so they are safe in logs and Prefect state messages.
"""

from __future__ import annotations


class SourceError(Exception):
    """Base of every error a source client raises."""


class AuthError(SourceError):
    """401: the credentials were refused. The message names the setting to fix."""


class NotFoundError(SourceError):
    """The resource does not exist or is not visible to these credentials."""


class ApiError(SourceError):
    """A permanent error answered by the API (4xx, or a custom error in a 200 answer)."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


class TransientError(SourceError):
    """Worth retrying: 429, 5xx, timeouts, dropped connections, truncated or malformed bodies."""

    def __init__(self, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class RetriesExhaustedError(SourceError):
    """A transient failure that did not clear within the allowed attempts."""


class ResponseTooLargeError(SourceError):
    """An answer larger than the configured cap (PWH_MAX_RESPONSE_BYTES)."""
