"""Every source's sync function, made from its registry declaration (pwh/flows/registry.py).

A sync is the same for every source: HTTP settings from the common parameters, the
source's adapter opened from its parameters (the one function a source writes: it reads
its credentials, makes its client, checks its options), then the engine into the warehouse
(pwh/flows/runner.py). The function's signature is the declaration's (common parameters,
then the source's options), so Prefect documents and validates the flow parameters, and
`pwh.flows.prefect_flows` wraps these very functions as the Prefect flows.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pwh.flows.registry import SOURCES, FlowParameter, Source, resolve
from pwh.flows.runner import OpenableAdapter, sync_into_warehouse
from pwh.schemas.spec import Table
from pwh.settings import PseudonymKey
from pwh.sources.http import HttpSettings

KEYWORD = inspect.Parameter.POSITIONAL_OR_KEYWORD


@dataclass(frozen=True)
class OpenedAdapter:
    """What a source's ``open_<source>(parameters, settings)`` gives the sync."""

    adapter: OpenableAdapter
    tables: Sequence[Table]  # every table the run may write (per-project and per-account)
    pseudonym_key: PseudonymKey | None = None  # a source that pseudonymises: the key its adapter uses
    rekey: bool = False  # that key becomes the warehouse's (a full refresh)
    # Adds the source's own counts to the run summary (and says what they mean).
    report: Callable[[dict[str, Any]], None] | None = None


Opener = Callable[[dict[str, Any], HttpSettings], OpenedAdapter]


def flow_signature(source: Source, *, leading: Sequence[FlowParameter] = (),
                   without: Sequence[str] = ()) -> inspect.Signature:
    """The sync flow's signature; a further flow of the source puts its own ``leading``
    parameters first and leaves out those it does not take."""
    parameters = list(leading) + [p for p in source.flow_parameters() if p.name not in without]
    return inspect.Signature(
        [inspect.Parameter(p.name, KEYWORD, default=p.default, annotation=p.type) for p in parameters],
        return_annotation=dict[str, Any],
    )


def settings_of(parameters: dict[str, Any]) -> HttpSettings:
    return HttpSettings.for_run(parameters["concurrency"], parameters["timeout_s"], parameters["max_attempts"],
                                parameters["max_response_bytes"])


async def run_source_sync(source: Source, parameters: dict[str, Any]) -> dict[str, Any]:
    """One sync of ``source`` with its flow ``parameters`` (all of them, defaults applied)."""
    opener: Opener = resolve(source.adapter)
    return await run_opened(opener(parameters, settings_of(parameters)), parameters)


async def run_opened(opened: OpenedAdapter, parameters: dict[str, Any]) -> dict[str, Any]:
    """The engine into the warehouse with an opened adapter and the sync's parameters."""
    summary = await sync_into_warehouse(
        opened.adapter, db_path=parameters["db_path"], tables=opened.tables, mode=parameters["mode"],
        batch_size=parameters["batch_size"], allow_mass_delete=parameters["allow_mass_delete"],
        pseudonym_key=opened.pseudonym_key, rekey=opened.rekey, select=parameters["select"],
        exclude=parameters["exclude"],
    )
    if opened.report is not None:
        opened.report(summary)
    return summary


def taking(signature: inspect.Signature, run: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]], *,
           name: str, doc: str) -> Callable[..., Awaitable[dict[str, Any]]]:
    """An async function with ``signature`` that calls ``run`` with every parameter bound
    (defaults applied); typer, Prefect and pydantic read the signature and annotations."""

    async def function(*args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return await run(dict(bound.arguments))

    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {
        "return": signature.return_annotation}
    function.__name__ = function.__qualname__ = name
    function.__module__ = __name__
    function.__doc__ = doc
    return function


def sync_docstring(source: Source) -> str:
    secrets = " and ".join(source.secrets)
    extra = "".join(f"; with {p}={v!r}: {' and '.join(names)}" for p, v, names in source.secrets_when)
    return (f"Sync {source.title} into the DuckDB warehouse at ``db_path``: {source.description}\n\n"
            f"Credentials come from {secrets}{extra} (the environment or Prefect Secret blocks of those "
            "names), never from parameters. ``allow_mass_delete`` confirms a run that marks more than a "
            "quarter of the projects deleted. ``select``/``exclude`` choose the streams (`pwh sources`).")


@cache
def sync_function(source: Source) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The plain sync function of ``source`` (cached: one function object a source)."""

    async def run(parameters: dict[str, Any]) -> dict[str, Any]:
        return await run_source_sync(source, parameters)

    return taking(flow_signature(source), run, name=source.flow, doc=sync_docstring(source))


def __getattr__(name: str) -> Any:
    """``sync_<source>`` and the sources' other plain flows, by function name."""
    for source in SOURCES:
        if name == source.flow:
            return sync_function(source)
        if name in source.plain_functions():
            return resolve(source.plain_functions()[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
