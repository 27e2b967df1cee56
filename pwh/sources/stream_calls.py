"""How a client makes a stream's call: through the run's stream gate (pwh/flows/streams.py),
passed in as a plain function so that clients know nothing of runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

# (stream name, the call, the answer that means "no records") -> the call's answer.
FetchStream = Callable[[str, Callable[[], Awaitable[Any]], Any], Awaitable[Any]]


async def direct(stream: str, fetch: Callable[[], Awaitable[T]], empty: T) -> T:
    """Every stream fetched, every error raised: a client used outside a run."""
    return await fetch()
