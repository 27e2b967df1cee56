"""Every source's sync function, made from its registry declaration (pwh/flows/registry.py).

A sync is the same for every source: HTTP settings from the common parameters, the
source's adapter opened from its parameters (the one function a source writes: it reads
its credentials, makes its client, checks its options), then the engine into the warehouse
(pwh/flows/runner.py). The function's signature is the declaration's (common parameters,
then the source's options), so Prefect documents and validates the flow parameters, and
`pwh.flows.prefect_flows` wraps these very functions as the Prefect flows.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from pwh.flows.registry import SOURCES, FlowParameter, Source, resolve
from pwh.flows.runner import OpenedAdapter, Opener, sync_into_warehouse
from pwh.sources.http import HttpSettings

# The sync's first parameters (base_url, db_path, account, mode) may be passed by position,
# as they always could; the others only by name, so a call written for another order
# fails instead of binding a value to the wrong parameter.
POSITIONAL = 4


def flow_signature(source: Source, *, head: Sequence[FlowParameter] | None = None,
                   without: Sequence[str] = ()) -> inspect.Signature:
    """The sync flow's signature. A further flow of the source gives its own positional
    ``head`` instead of the sync's and leaves out the parameters it does not take."""
    parameters = source.flow_parameters()
    first = list(parameters[:POSITIONAL] if head is None else head)
    taken = {p.name for p in first} | set(without)
    return inspect.Signature(
        [inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default, annotation=p.type)
         for p in first]
        + [inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=p.default, annotation=p.type)
           for p in parameters if p.name not in taken],
        return_annotation=dict[str, Any],
    )


def flow_doc(summary: str, signature: inspect.Signature, parameters: Iterable[FlowParameter]) -> str:
    """``summary`` and an ``Args:`` section: what Prefect shows beside each parameter."""
    helps = {p.name: p.help for p in parameters}
    lines = [f"    {name}: {helps[name]}" for name in signature.parameters if helps.get(name)]
    return f"{summary}\n\nArgs:\n" + "\n".join(lines) + "\n"


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
        given = dict(bound.arguments)
        # A default (e.g. a list) is one object shared by every call: each call gets its own copy.
        defaults = {name: copy.deepcopy(p.default) for name, p in signature.parameters.items()
                    if name not in given and p.default is not inspect.Parameter.empty}
        return await run(defaults | given)

    function.__signature__ = signature  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()} | {
        "return": signature.return_annotation}
    function.__name__ = function.__qualname__ = name
    function.__module__ = __name__
    function.__doc__ = doc
    return function


def sync_summary(source: Source) -> str:
    secrets = " and ".join(source.secrets)
    extra = "".join(f"; with {p}={v!r}: {' and '.join(names)}" for p, v, names in source.secrets_when)
    return (f"Sync {source.title} into the DuckDB warehouse at ``db_path``. {source.description}\n\n"
            f"Credentials come from {secrets}{extra} (the environment or Prefect Secret blocks of those "
            "names), never from parameters.")


_MADE: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {}


def sync_function(source: Source) -> Callable[..., Awaitable[dict[str, Any]]]:
    """The plain sync function of ``source`` (made once: one function object a source)."""
    if source.name not in _MADE:
        async def run(parameters: dict[str, Any]) -> dict[str, Any]:
            return await run_source_sync(source, parameters)

        signature = flow_signature(source)
        _MADE[source.name] = taking(signature, run, name=source.flow,
                                    doc=flow_doc(sync_summary(source), signature, source.flow_parameters()))
    return _MADE[source.name]


def __getattr__(name: str) -> Any:
    """``sync_<source>`` and the sources' other plain flows, by function name."""
    for source in SOURCES:
        if name == source.flow:
            return sync_function(source)
        if name in source.plain_functions():
            return resolve(source.plain_functions()[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
