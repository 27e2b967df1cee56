"""Secrets are read here, inside the run, never taken as flow parameters (Prefect stores
parameters in its database): from the environment, or, in a run with Prefect and a Prefect
API, from a Prefect Secret block. A plain run (no Prefect) reads the environment only."""

from __future__ import annotations

from pwh.errors import PwhError
from pwh.flows.host import loaded_prefect_api_url
from pwh.settings import environment_value


class MissingSecretError(PwhError, RuntimeError):
    pass


def block_name(variable: str) -> str:
    """The Prefect Secret block that may hold a variable: RAYTEAMS_TOKEN → rayteams-token."""
    return variable.lower().replace("_", "-")


def read_secret(variable: str) -> str:
    value = environment_value(variable)
    if value:
        return value
    # Prefect already loaded (a run with Prefect), with a server in its settings or
    # profile: its Secret blocks count too. Never loaded for this: a plain run stays fast.
    if not loaded_prefect_api_url():
        raise MissingSecretError(missing_secrets_message([variable], prefect=False))
    from prefect.blocks.system import Secret

    try:
        # _sync: inside an async flow, load() would otherwise return a coroutine. Prefect's
        # async_dispatch takes _sync, but its type has no such parameter (so: maybe a coroutine).
        return Secret.load(block_name(variable), _sync=True).get()  # type: ignore[call-arg, union-attr]
    except ValueError:
        pass  # no such block: fall through to the clear error below
    raise MissingSecretError(missing_secrets_message([variable]))


def missing_secrets_message(variables: list[str], flags: str = "", prefect: bool = True) -> str:
    """One line naming the unset variables and the ways to set them (Secret blocks only
    where a Prefect server would be asked for them)."""
    names = variables[0] if len(variables) == 1 else f"{', '.join(variables[:-1])} and {variables[-1]}"
    blocks = ", ".join(f"'{block_name(v)}'" for v in variables)
    one = len(variables) == 1
    return (f"{names} {'is' if one else 'are'} not set: export {'it' if one else 'them'}"
            + (f" (or pass {flags})" if flags else "")
            + (f", or (with a Prefect server) create {'a Secret block' if one else 'Secret blocks'} named {blocks}"
               if prefect else ""))
