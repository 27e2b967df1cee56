"""Streams: what a source fetches, kind by kind, and which of them a run fetches.

A source declares its streams: each per-unit sub-resource (a project's memos, its files)
or per-account dimension (OpenProject's statuses) with the tables it feeds. The engine
reads one answer only as a unit's fate: the unit's own existence call (RAYTeams
``GET /project/{_id}``). Any other call's 404 (or ``NO_ITEM``) means "no records of that
kind"; its 403 means the stream is forbidden to these credentials: it is skipped for the
rest of the run, the rows it fed are kept, and the run ends ``partial`` naming it.
A unit loaded without one of its streams (excluded, or forbidden) has that stream
recorded as missing in its state; a later run that selects the stream fetches it again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pwh.errors import PwhError
from pwh.sources.errors import ApiError, NotFoundError

T = TypeVar("T")


@dataclass(frozen=True)
class Stream:
    """One kind of record a source fetches, and the tables it feeds."""

    name: str
    tables: tuple[str, ...]
    description: str
    per_unit: bool = True  # False: fetched once per run for the whole account (a dimension)
    # The paths of its own calls, as a regular expression searched in the request path;
    # "" when it makes none (its records come with another answer, e.g. RAYTeams' aggregate).
    calls: str = ""


class UnknownStreamError(PwhError, ValueError):
    """--select/--exclude named a stream the source does not have."""


def choose_streams(
    source: str, streams: Sequence[Stream], select: Iterable[str] = (), exclude: Iterable[str] = ()
) -> frozenset[str]:
    """The names of the streams a run fetches: ``select`` (default: every stream) minus
    ``exclude``. An unknown name is refused, naming the source's streams."""
    known = [stream.name for stream in streams]
    chosen = {name for name in _names(select)}
    excluded = {name for name in _names(exclude)}
    unknown = sorted((chosen | excluded) - set(known))
    if unknown:
        raise UnknownStreamError(
            f"{source} has no stream {', '.join(unknown)}; its streams are {', '.join(known)}"
        )
    return frozenset((chosen or set(known)) - excluded)


def _names(values: Iterable[str]) -> list[str]:
    """Names given as repeated options and/or comma-separated lists."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]


@dataclass
class StreamGate:
    """A run's streams: those selected, minus those found forbidden (403) so far."""

    selected: frozenset[str]
    forbidden: dict[str, str] = field(default_factory=dict)  # stream → "HTTP 403 <code>"

    def open(self, name: str) -> bool:
        return name in self.selected and name not in self.forbidden

    def for_unit(self) -> UnitStreams:
        return UnitStreams(self)


@dataclass
class UnitStreams:
    """One unit's stream fetches; ``skipped`` collects the streams it went without."""

    gate: StreamGate
    skipped: set[str] = field(default_factory=set)

    def wanted(self, name: str) -> bool:
        """Whether to fetch ``name`` for this unit (else it is recorded as skipped)."""
        if self.gate.open(name):
            return True
        self.skipped.add(name)
        return False

    async def fetch(self, name: str, fetch: Callable[[], Awaitable[T]], empty: T) -> T:
        """``fetch()`` for stream ``name``: ``empty`` when the stream is not fetched, when
        it answers 404/NO_ITEM (no records of that kind), or 403 (forbidden: skipped from
        now on in this run)."""
        if not self.wanted(name):
            return empty
        try:
            return await fetch()
        except NotFoundError:
            return empty
        except ApiError as error:
            if error.status != 403:
                raise
            self.gate.forbidden.setdefault(name, str(error))
            self.skipped.add(name)
            return empty
