"""The root of the project's own errors. A :class:`PwhError` is raised on purpose: its
message is one line that says what went wrong and what to fix, written to be shown to a
user and kept free of secrets and of a server's free text. The CLI prints it as such
(pwh/failures.py); any other exception is a bug or an environment problem, reported as
unexpected with its traceback in the log file.

Each error keeps its name and module (``pwh.sources.errors.SourceError``,
``pwh.warehouse.connection.WarehouseBusyError``, …) and the built-in base it had, so code
that catches it as a ``ValueError`` or ``RuntimeError`` still does."""

from __future__ import annotations


class PwhError(Exception):
    """Base of every error the project raises for a user to read."""


class SettingError(PwhError, ValueError):
    """A setting that cannot work as given; the message names the option or variable."""
