"""Scheduled syncs: which flows ``pwh serve`` serves, on what schedule, with what
parameters.

Schedules come from ``pwh.toml`` (one ``[schedules.<name>]`` table per deployment) and
CLI overrides. Every key of a table except ``source``, ``cron``, ``interval_seconds`` and
``enabled`` is a flow parameter; parameters are stored by Prefect in its database, so
names that look like credentials are refused (flows read those from the environment or
Secret blocks). Each deployment allows one run at a time and *skips* (cancels) a run
that would overlap a running one; across deployments the warehouse writer lock makes a
run wait for the file (see pwh/flows/runner.py).
"""

from __future__ import annotations

import importlib
import inspect
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pwh.errors import PwhError
from pwh.flows.registry import schedulable_flows

# source name → "module:flow", from the source registry.
SCHEDULABLE_FLOWS: dict[str, str] = schedulable_flows()

DEFAULT_CRON = "0 * * * *"  # hourly, on the hour
CONFIG_FILE = Path("pwh.toml")
_RESERVED = ("source", "cron", "interval_seconds", "enabled")
_SECRET_HINTS = ("token", "password", "passwd", "secret", "api_key", "apikey", "client_id", "credential", "pseudonym_key")


class ScheduleError(PwhError, ValueError):
    """A schedule that cannot be served as written."""


@dataclass(frozen=True)
class Schedule:
    name: str  # the deployment's name
    source: str
    cron: str | None = DEFAULT_CRON
    interval_seconds: float | None = None  # instead of cron (e.g. every few seconds)
    parameters: dict[str, Any] = field(default_factory=dict)


def resolve_flow(source: str):
    try:
        target = SCHEDULABLE_FLOWS[source]
    except KeyError:
        raise ScheduleError(f"unknown source {source!r}; schedulable: {', '.join(sorted(SCHEDULABLE_FLOWS))}") from None
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def check_parameters(schedule: Schedule) -> None:
    """Parameters must be ones the flow takes, and none may look like a credential."""
    for name in schedule.parameters:
        if any(hint in name.lower() for hint in _SECRET_HINTS):
            raise ScheduleError(
                f"schedule {schedule.name!r}: {name!r} looks like a secret; parameters are stored by "
                "Prefect, so set it in the environment of `pwh serve` or as a Prefect Secret block"
            )
    accepted = inspect.signature(resolve_flow(schedule.source).fn).parameters
    unknown = sorted(set(schedule.parameters) - set(accepted))
    if unknown:
        raise ScheduleError(f"schedule {schedule.name!r}: the {schedule.source} flow takes no parameter "
                            f"{', '.join(map(repr, unknown))}; it takes {', '.join(accepted)}")


# Prefect's shorthands, as the five fields cronsim reads.
_CRON_ALIASES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                 "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}


def cron_fields(cron: str) -> str:
    """The five-field form of a cron expression (Prefect's ``@hourly``… spelt out)."""
    return _CRON_ALIASES.get(cron.strip().lower(), cron)


def check_cron(where: str, cron: object) -> None:
    """A cron expression Prefect would accept, checked without importing Prefect: the
    error names ``where`` (the key) and the value."""
    from cronsim import CronSim, CronSimError

    if not isinstance(cron, str):
        raise ScheduleError(f"{where} must be a cron expression in quotes, e.g. '0 * * * *', not {cron!r}")
    try:
        CronSim(cron_fields(cron), datetime(2000, 1, 1))
    except CronSimError as exc:
        raise ScheduleError(f"{where} = {cron!r} is not a valid cron expression ({exc}; "
                            "five fields: minute hour day month weekday, e.g. '0 * * * *')") from None


def parse_schedules(config: Mapping[str, Any]) -> list[Schedule]:
    """The ``[schedules.*]`` tables of a parsed pwh.toml."""
    tables = config.get("schedules", {})
    if not isinstance(tables, dict):
        raise ScheduleError("[schedules] must hold one table per schedule, e.g. [schedules.rayteams]")
    schedules = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ScheduleError(f"[schedules.{name}] must be a table")
        if not table.get("enabled", True):
            continue
        interval = table.get("interval_seconds")
        if interval is not None and (isinstance(interval, bool) or not isinstance(interval, (int, float))
                                     or not interval > 0):
            raise ScheduleError(f"[schedules.{name}] interval_seconds must be a positive number, not {interval!r}")
        source = table.get("source", name)
        if source not in SCHEDULABLE_FLOWS:
            raise ScheduleError(f"[schedules.{name}] source: unknown source {source!r}; "
                                f"schedulable: {', '.join(sorted(SCHEDULABLE_FLOWS))}")
        cron = None if interval is not None else table.get("cron", DEFAULT_CRON)
        if cron is not None:
            check_cron(f"[schedules.{name}] cron", cron)
        schedules.append(Schedule(
            name=name,
            source=source,
            cron=cron,
            interval_seconds=None if interval is None else float(interval),
            parameters={k: v for k, v in table.items() if k not in _RESERVED},
        ))
    return schedules


def load_schedules(path: Path | None) -> list[Schedule]:
    """The schedules of a config file; none when the default file is absent."""
    if path is None:
        if not CONFIG_FILE.exists():
            return []
        path = CONFIG_FILE
    try:
        with open(path, "rb") as handle:
            schedules = parse_schedules(tomllib.load(handle))
    except FileNotFoundError:
        raise ScheduleError(f"{path}: no such configuration file") from None
    except (tomllib.TOMLDecodeError, ScheduleError) as exc:
        raise ScheduleError(f"{path}: {exc}") from None
    # A relative warehouse path means beside the config file, wherever runs start.
    base = Path(path).resolve().parent
    return [
        replace(s, parameters={**s.parameters, "db_path": str(base / s.parameters["db_path"])})
        if isinstance(s.parameters.get("db_path"), str) and not Path(s.parameters["db_path"]).is_absolute() else s
        for s in schedules
    ]


def select(
    schedules: list[Schedule],
    *,
    only: Iterable[str] = (),
    cron: str | None = None,
    interval_seconds: float | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> list[Schedule]:
    """Apply CLI choices: ``only`` names schedules (or sources) to serve (a source with no
    table gets a default schedule), ``cron``/``interval_seconds`` replace every schedule,
    ``parameters`` are set on every schedule."""
    only = list(only)
    if only:
        chosen = [s for s in schedules if s.name in only or s.source in only]
        named = {s.name for s in chosen} | {s.source for s in chosen}
        chosen += [Schedule(name=n, source=n) for n in only if n not in named]
    else:
        chosen = list(schedules)
    result = []
    for schedule in chosen:
        if interval_seconds is not None:
            schedule = replace(schedule, cron=None, interval_seconds=interval_seconds)
        elif cron is not None:
            schedule = replace(schedule, cron=cron, interval_seconds=None)
        if parameters:
            schedule = replace(schedule, parameters={**schedule.parameters, **parameters})
        check_parameters(schedule)
        result.append(schedule)
    return result


def to_deployment(schedule: Schedule):
    """The Prefect deployment of a schedule: one run at a time, overlapping runs skipped."""
    from prefect.client.schemas.objects import (
        ConcurrencyLimitConfig,
        ConcurrencyLimitStrategy,
    )
    from prefect.deployments.runner import EntrypointType

    flow = resolve_flow(schedule.source)
    timing: dict[str, Any] = (
        {"interval": timedelta(seconds=schedule.interval_seconds)}
        if schedule.interval_seconds is not None else {"cron": schedule.cron or DEFAULT_CRON}
    )
    deployment = flow.to_deployment(
        name=schedule.name,
        parameters=schedule.parameters,
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        tags=["pwh", schedule.source],
        description=f"Scheduled {schedule.source} sync into the DuckDB warehouse (pwh serve).",
        entrypoint_type=EntrypointType.MODULE_PATH,
        **timing,
    )
    # The flow object's module, not its function's (pwh/flows/<source>_sync.py holds the plain
    # function the flow wraps): a run loads the flow from here.
    deployment.entrypoint = SCHEDULABLE_FLOWS[schedule.source].replace(":", ".")
    return deployment


def describe(schedule: Schedule) -> str:
    when = f"every {schedule.interval_seconds:g} s" if schedule.interval_seconds is not None else f"cron {schedule.cron!r}"
    shown = ", ".join(f"{k}={v}" for k, v in sorted(schedule.parameters.items()))
    return f"{schedule.name} ({schedule.source}): {when}; {shown or 'default parameters'}"
