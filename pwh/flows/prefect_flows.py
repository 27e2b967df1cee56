"""Every source's flows as Prefect flows (deployments, `pwh serve`, and `pwh sync` when a
Prefect API is configured or --prefect): the functions of pwh/flows/syncs.py wrapped, under
the flow names the registry declares. Inside a flow run the sync's stages become Prefect
tasks (pwh/flows/runner.py). prefect.yaml's entrypoints are ``pwh/flows/prefect_flows.py:<function>``."""

from __future__ import annotations

from typing import Any

from prefect import flow

from pwh.flows import syncs
from pwh.flows.registry import SOURCES


def _flows() -> dict[str, Any]:
    made: dict[str, Any] = {}
    for source in SOURCES:
        names = {source.flow: source.flow_name} | {other.name: other.flow_name for other in source.other_flows}
        for function, flow_name in names.items():
            # Two flows of one name, or a flow named like this module's own names, would
            # silently replace one another.
            if function in made or function in globals():
                raise RuntimeError(f"the registry names the flow function {function!r} twice")
            made[function] = flow(name=flow_name, log_prints=False, validate_parameters=True)(
                getattr(syncs, function))
    return made


FLOWS = _flows()
globals().update(FLOWS)  # an entrypoint names a module attribute
