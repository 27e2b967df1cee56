"""Every source's flows as Prefect flows (deployments, `pwh serve`, and `pwh sync` when a
Prefect API is configured or --prefect): the functions of pwh/flows/syncs.py wrapped, under
the flow names the registry declares, with one set of options for all. Inside a flow run
the sync's stages become Prefect tasks (pwh/flows/runner.py). prefect.yaml's entrypoints
are ``pwh/flows/prefect_flows.py:<function>``.

Prefect serialises a flow call's parameters for its flow run record with FastAPI's
``jsonable_encoder``: the first flow call of a process imports FastAPI and Starlette for
it (~70 modules, ~0.1 s; a `pwh sync` with a Prefect API configured is such a process).
pwh's flow parameters are strings, numbers, booleans, None, and lists and dicts of them,
which are their own JSON form (stored as they are, as the encoder would store them);
anything else still goes through Prefect's encoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from prefect import Flow

from pwh.flows import syncs
from pwh.flows.prefect_tls import share_tls_contexts
from pwh.flows.registry import SOURCES

# Every flow run of this process: one TLS context for Prefect's clients of an http API.
share_tls_contexts()

P = ParamSpec("P")
R = TypeVar("R")

_SCALARS = (str, int, float, bool, type(None))


def _is_json(value: object, depth: int = 0) -> bool:
    """Whether ``value`` is its own JSON form: scalars, and lists and string-keyed dicts
    of them (nested up to a depth; deeper or anything else: Prefect's encoder decides)."""
    if isinstance(value, _SCALARS):
        return True
    if depth >= 16:
        return False
    if isinstance(value, list):
        return all(_is_json(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and _is_json(item, depth + 1) for key, item in value.items())
    return False


class SyncFlow(Flow[P, R]):
    """A Prefect flow whose JSON parameters are stored as they are (FastAPI not imported)."""

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        others = {name: value for name, value in parameters.items() if not _is_json(value)}
        encoded = super().serialize_parameters(others) if others else {}
        serialized: dict[str, Any] = {}
        for name, value in parameters.items():
            if name not in others:
                serialized[name] = value
            elif name in encoded:  # Prefect leaves some out (a method's bound self)
                serialized[name] = encoded[name]
        return serialized


def sync_flow(name: str) -> Callable[[Callable[P, R]], SyncFlow[P, R]]:
    """``sync_flow("sync-x")(fn)``: ``fn`` as the flow ``name``. Its parameters are validated;
    its result (a run summary: counts) is never persisted, which also spares the flow run
    the API round trip that asks the server for a default result storage."""

    def make(fn: Callable[P, R]) -> SyncFlow[P, R]:
        return SyncFlow(fn, name=name, log_prints=False, validate_parameters=True, persist_result=False)

    return make


def _flows() -> dict[str, Any]:
    made: dict[str, Any] = {}
    for source in SOURCES:
        names = {source.flow: source.flow_name} | {other.name: other.flow_name for other in source.other_flows}
        for function, flow_name in names.items():
            # Two flows of one name, or a flow named like this module's own names, would
            # silently replace one another.
            if function in made or function in globals():
                raise RuntimeError(f"the registry names the flow function {function!r} twice")
            made[function] = sync_flow(flow_name)(getattr(syncs, function))
    return made


FLOWS = _flows()
globals().update(FLOWS)  # an entrypoint names a module attribute
