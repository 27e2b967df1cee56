"""The progress bar of the process running a flow. A listener cannot be a flow parameter
(parameters are stored and must serialise), so the CLI registers it here."""

from __future__ import annotations

from collections.abc import Callable

from pwh.flows.engine import Progress

_listener: Callable[[Progress], None] | None = None


def set_listener(listener: Callable[[Progress], None] | None) -> None:
    global _listener
    _listener = listener


def new_progress() -> Progress:
    return Progress(listener=_listener)
