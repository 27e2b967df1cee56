"""The source registry: one declaration per source, and every list of sources made from it.

A :class:`Source` names what the rest of the code needs to know about a source: its flows
(plain and Prefect), its streams, the credentials it reads, its simulator, its defaults.
The CLI's commands (`pwh sync`, `pwh simulate`, `pwh sources`, `pwh demo`), the schedules
of `pwh serve` and the checks of prefect.yaml and the table reference read this registry;
a new source is one declaration here plus its own code (client, transform, tables,
simulator, adapter).

Imports stay light (no Prefect, aiohttp, polars or pandera): the CLI reads the registry
before anything slow. Modules are named by path and imported when used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pwh.flows.streams import Stream

# The flow parameters every source's sync takes, with their meaning (defaults vary per source).
COMMON_PARAMETERS = (
    "base_url", "db_path", "account", "mode", "concurrency", "batch_size", "timeout_s", "max_attempts",
    "max_response_bytes", "allow_mass_delete", "select", "exclude",
)


class UnknownSourceError(ValueError):
    """A source name the registry does not hold."""


@dataclass(frozen=True)
class OtherFlow:
    """A further flow of a source (RAYTeams' configured accounts)."""

    function: str  # its name in the source's plain and Prefect modules
    flow_name: str
    schedule: str | None = None  # the `source` a pwh.toml schedule names it by, if schedulable


@dataclass(frozen=True)
class Source:
    name: str  # CLI and schedule name, table schema, `source` column
    title: str
    description: str  # one line: what a sync loads
    sync: str  # "module:function" of the plain sync function (runs in this process)
    flows: str  # module of the Prefect flows wrapping the plain functions (same names)
    flow: str  # the sync function's name in both modules
    flow_name: str  # the Prefect flow's name (deployments and schedules rely on it)
    secrets: tuple[str, ...]  # environment variables / Secret blocks the default auth reads
    streams: tuple[Stream, ...]  # per-project sub-resources and per-account dimensions
    simulator: str  # "module:function": simulated(projects, seed, ...) -> an async context manager
    base_url_example: str
    default_cron: str = "0 * * * *"
    other_flows: tuple[OtherFlow, ...] = ()

    @property
    def stream_names(self) -> tuple[str, ...]:
        return tuple(stream.name for stream in self.streams)

    def sync_function(self, prefect: bool = False) -> Callable[..., Any]:
        """The sync, as a Prefect flow (``prefect``) or as the plain function."""
        module = self.flows if prefect else self.sync.partition(":")[0]
        return getattr(importlib.import_module(module), self.flow)

    def simulated(self) -> Callable[..., Any]:
        module, _, function = self.simulator.partition(":")
        return getattr(importlib.import_module(module), function)

    def flow_entrypoints(self) -> dict[str, str]:
        """Prefect flow name → ``module:function`` of every flow of this source."""
        flows = {self.flow_name: f"{self.flows}:{self.flow}"}
        flows.update({other.flow_name: f"{self.flows}:{other.function}" for other in self.other_flows})
        return flows

    def schedulable(self) -> dict[str, str]:
        """Schedule source name → ``module:function`` of the flows `pwh serve` can serve."""
        flows = {self.name: f"{self.flows}:{self.flow}"}
        flows.update({other.schedule: f"{self.flows}:{other.function}" for other in self.other_flows if other.schedule})
        return flows


RAYTEAMS = Source(
    name="rayteams",
    title="RAYTeams",
    description="Every project of a dental-lab account with its memos, comments, attachments, histories, "
                "orders, groups and files (patient data pseudonymised).",
    sync="pwh.flows.rayteams_sync:sync_rayteams",
    flows="pwh.flows.rayteams",
    flow="sync_rayteams",
    flow_name="sync-rayteams",
    other_flows=(OtherFlow("sync_rayteams_accounts", "sync-rayteams-accounts", schedule="rayteams-accounts"),
                 OtherFlow("sync_rayteams_account", "sync-rayteams-account")),
    secrets=("RAYTEAMS_TOKEN", "RAYTEAMS_CLIENT_ID"),
    streams=(
        Stream("memos", ("memos", "memo_comments"), "Memos and their comments.", calls=r"/project/[^/]+/memo$"),
        Stream("attachments", ("attachments",), "Attachments (metadata; download links removed).",
               calls=r"/project/[^/]+/attachments$"),
        Stream("histories", ("histories",), "Change histories.", calls=r"/project/[^/]+/histories$"),
        Stream("orders", ("orders",), "Orders.", calls=r"/project/[^/]+/orders$"),
        Stream("groups", ("groups",), "Groups the project is shared with (fetched on their own when the "
                                      "aggregate answer carries none).", calls=r"/project/[^/]+/groups$"),
        Stream("files", ("files",), "Downloadable files and their sizes (the FILE scope: GET /file/{_id}).",
               calls=r"/file/[^/]+"),
    ),
    simulator="pwh.sources.rayteams.simulator:simulated",
    base_url_example="https://api-ap-northeast-2-project.rayteams.com/v1.0",
)

OPENPROJECT = Source(
    name="openproject",
    title="OpenProject",
    description="Every project of an OpenProject instance (API v3) with its work packages, versions, "
                "categories, types, memberships and custom values.",
    sync="pwh.flows.openproject_sync:sync_openproject",
    flows="pwh.flows.openproject",
    flow="sync_openproject",
    flow_name="sync-openproject",
    secrets=("OPENPROJECT_API_KEY",),
    streams=(
        # Work packages carry custom values too: skipping them keeps the project's as they were.
        Stream("work_packages", ("work_packages", "custom_values"),
               "Work packages of every status, all pages, with their custom values.",
               calls=r"/api/v3/projects/[^/]+/work_packages$"),
        Stream("versions", ("versions",), "Versions available in the project.",
               calls=r"/api/v3/projects/[^/]+/versions$"),
        Stream("categories", ("categories",), "Work-package categories.",
               calls=r"/api/v3/projects/[^/]+/categories$"),
        Stream("types", ("types",), "Work-package types enabled in the project.",
               calls=r"/api/v3/projects/[^/]+/types$"),
        Stream("memberships", ("memberships",), "Members and their roles.", calls=r"/api/v3/memberships$"),
    ),
    simulator="pwh.sources.openproject.simulator:simulated",
    base_url_example="https://openproject.example.org",
    default_cron="15 * * * *",
)

CLARITY = Source(
    name="clarity",
    title="Clarity LIMS",
    description="Every project of a Clarity LIMS instance with its typed UDFs, files and external ids.",
    sync="pwh.flows.clarity_sync:sync_clarity",
    flows="pwh.flows.clarity",
    flow="sync_clarity",
    flow_name="sync-clarity",
    secrets=("CLARITY_USERNAME", "CLARITY_PASSWORD"),
    streams=(),
    simulator="pwh.sources.clarity.simulator:simulated",
    base_url_example="https://lims.example.org/api/v2",
    default_cron="30 * * * *",
)

INCOPLAX = Source(
    name="incoplax",
    title="Incoplax",
    description="Every project of an Incoplax domain.",
    sync="pwh.flows.incoplax_sync:sync_incoplax",
    flows="pwh.flows.incoplax",
    flow="sync_incoplax",
    flow_name="sync-incoplax",
    secrets=("INCOPLAX_TOKEN",),  # auth_scheme="basic": INCOPLAX_USERNAME and INCOPLAX_PASSWORD
    streams=(),
    simulator="pwh.sources.incoplax.simulator:simulated",
    base_url_example="https://incoplax.example.com",
    default_cron="45 * * * *",
)

SOURCES: tuple[Source, ...] = (RAYTEAMS, OPENPROJECT, CLARITY, INCOPLAX)
_BY_NAME = {source.name: source for source in SOURCES}


def source(name: str) -> Source:
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownSourceError(f"unknown source {name!r}; the sources are {', '.join(_BY_NAME)}") from None


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def streams_of(name: str) -> tuple[Stream, ...]:
    return source(name).streams


def flow_entrypoints(sources: Iterable[Source] = SOURCES) -> dict[str, str]:
    """Every deployable flow: Prefect flow name → ``module:function``."""
    return {name: target for s in sources for name, target in s.flow_entrypoints().items()}


def schedulable_flows(sources: Iterable[Source] = SOURCES) -> dict[str, str]:
    """What a ``[schedules.*]`` table's ``source`` may name → ``module:function``."""
    return {name: target for s in sources for name, target in s.schedulable().items()}
