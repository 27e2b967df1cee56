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
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pwh.errors import PwhError
from pwh.flows.streams import Stream

PLAIN_FLOWS = "pwh.flows.syncs"  # every source's sync functions, made from its declaration
PREFECT_FLOWS = "pwh.flows.prefect_flows"  # the same as Prefect flows (deployments' entrypoints)
REQUIRED = inspect.Parameter.empty
# An option's flow parameter type by its kind, when its default is set (None makes it Optional).
_FLOW_TYPES: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "list": list[str],
                               "choice": str}


class UnknownSourceError(PwhError, ValueError):
    """A source name the registry does not hold."""


@dataclass(frozen=True)
class Option:
    """A source's own setting: a flow parameter, and the `pwh sync` (or `pwh simulate`) option
    that gives it. ``kind``: str, int, float, bool, list (repeatable text) or choice."""

    parameter: str
    help: str
    default: Any = None
    kind: str = "str"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    flag: str | None = None  # default: --<parameter with dashes>
    # "module:function" turning the option's text into the parameter's value; its ValueError
    # is the one-line error (checked before anything slow).
    convert: str | None = None
    # The flow parameter's type when it is not the kind's (the option's text converted);
    # its default is then the converted default.
    flow_type: Any = None

    @property
    def flow_parameter(self) -> FlowParameter:
        kind = self.flow_type or _FLOW_TYPES[self.kind]
        default = self.default
        if self.flow_type is not None and self.convert is not None and default is not None:
            default = resolve(self.convert)(default)
        # A converted option may be None (e.g. an empty --order: none sent).
        optional = default is None or self.convert is not None
        return FlowParameter(self.parameter, kind | None if optional else kind, default, self.help)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.parameter.replace("_", "-")


@dataclass(frozen=True)
class FlowParameter:
    """One parameter of a sync flow: its name, type (Prefect validates and documents it) and default."""

    name: str
    type: Any
    default: Any = REQUIRED
    help: str = ""  # what Prefect shows beside the parameter


@dataclass(frozen=True)
class CredentialFlag:
    """An option that stands in for a credential variable (prefer the variable: flags show in `ps`)."""

    flag: str
    variable: str


@dataclass(frozen=True)
class OtherFlow:
    """A further flow of a source (RAYTeams' configured accounts)."""

    function: str  # "module:function" of the plain function; its Prefect flow has the same name
    flow_name: str
    schedule: str | None = None  # the `source` a pwh.toml schedule names it by, if schedulable

    @property
    def name(self) -> str:
        return self.function.partition(":")[2]


@dataclass(frozen=True)
class Source:
    name: str  # CLI and schedule name, table schema, `source` column
    title: str
    description: str  # one line: what a sync loads
    # "module:function" making the sync's adapter from its parameters (pwh/flows/syncs.py);
    # the sync function and its Prefect flow are made from the declaration.
    adapter: str
    flow: str  # the sync function's name (pwh.flows.syncs, pwh.flows.prefect_flows)
    flow_name: str  # the Prefect flow's name (deployments and schedules rely on it)
    secrets: tuple[str, ...]  # environment variables / Secret blocks the default auth reads
    streams: tuple[Stream, ...]  # per-project sub-resources and per-account dimensions
    simulator: str  # "module:function": simulated(projects, seed, ...) -> an async context manager
    base_url_example: str
    base_url_help: str = ""  # what the base URL is, beyond the example
    default_cron: str = "0 * * * *"
    other_flows: tuple[OtherFlow, ...] = ()
    # `pwh sync` and flow defaults every source has, and the source's own options.
    concurrency: int = 16
    batch_size: int = 250
    timeout_s: float = 30.0
    options: tuple[Option, ...] = ()
    credential_flags: tuple[CredentialFlag, ...] = ()
    # (parameter, value, variables): the credentials read when an option takes that value.
    secrets_when: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    # (summary key, line): a count the sync reports, printed with ``{count}`` when non-zero.
    summary_notes: tuple[tuple[str, str], ...] = ()
    # "module:function": what `pwh sync <source>` does without --base-url (configured accounts);
    # None: --base-url is required.
    configured_accounts: str | None = None
    # "module:function": `pwh sync <source> --shards K` (pwh/shards_command.py); None: not shardable yet.
    sharded: str | None = None
    # `pwh simulate <source>`: its port, its own options, and "module:function" serving it.
    simulator_port: int = 8765
    simulator_options: tuple[Option, ...] = ()
    serve: str = ""

    @property
    def stream_names(self) -> tuple[str, ...]:
        return tuple(stream.name for stream in self.streams)

    def secrets_for(self, parameters: dict[str, Any]) -> tuple[str, ...]:
        """The credential variables a sync with ``parameters`` reads."""
        for parameter, value, variables in self.secrets_when:
            if parameters.get(parameter) == value:
                return variables
        return self.secrets

    def flow_parameters(self) -> tuple[FlowParameter, ...]:
        """The parameters of the sync flow: those every source takes (with this source's
        defaults; the first four may be given by position), then its options."""
        url = f"API base URL, e.g. {self.base_url_example}" + (f" ({self.base_url_help})" if self.base_url_help else "")
        common = (
            FlowParameter("base_url", str, REQUIRED, url + "."),
            FlowParameter("db_path", str, "warehouse.duckdb", "DuckDB warehouse file."),
            FlowParameter("account", str, "default", "Name recorded with every row."),
            FlowParameter("mode", str, "incremental", "incremental (new and changed projects) or full_refresh "
                                                      "(refetch every project and reconcile)."),
            FlowParameter("concurrency", int, self.concurrency, "Requests in flight."),
            FlowParameter("batch_size", int, self.batch_size, "Projects per load transaction."),
            FlowParameter("timeout_s", float, self.timeout_s, "Per-request timeout, seconds."),
            FlowParameter("max_attempts", int, 6, "Attempts per request (transient failures are retried)."),
            FlowParameter("max_response_bytes", int | None, None, "Largest answer accepted, bytes (default: "
                                                                  "PWH_MAX_RESPONSE_BYTES, else 64 MiB)."),
            FlowParameter("allow_mass_delete", bool, False, "Confirm a run that marks more than a quarter of the "
                                                            "projects deleted (refused otherwise)."),
            FlowParameter("select", list[str] | None, None, "Fetch only these streams (`pwh sources` lists them)."),
            FlowParameter("exclude", list[str] | None, None, "Do not fetch these streams: no request is made for "
                                                             "them and their rows are kept."),
        )
        return common + tuple(option.flow_parameter for option in self.options)

    def flow_function(self, name: str, prefect: bool = False) -> Callable[..., Any]:
        """One of this source's flows by function name (its sync: ``self.flow``), as a Prefect
        flow or the plain function."""
        module = importlib.import_module(PREFECT_FLOWS if prefect else PLAIN_FLOWS)
        return getattr(module, name)

    def plain_functions(self) -> dict[str, str]:
        """Function name → ``module:function`` of the plain functions of its other flows."""
        return {other.name: other.function for other in self.other_flows}

    def simulated(self) -> Callable[..., Any]:
        return resolve(self.simulator)

    def flow_entrypoints(self) -> dict[str, str]:
        """Prefect flow name → ``module:function`` of every flow of this source."""
        flows = {self.flow_name: f"{PREFECT_FLOWS}:{self.flow}"}
        flows.update({other.flow_name: f"{PREFECT_FLOWS}:{other.name}" for other in self.other_flows})
        return flows

    def schedulable(self) -> dict[str, str]:
        """Schedule source name → ``module:function`` of the flows `pwh serve` can serve."""
        flows = {self.name: f"{PREFECT_FLOWS}:{self.flow}"}
        flows.update({other.schedule: f"{PREFECT_FLOWS}:{other.name}" for other in self.other_flows if other.schedule})
        return flows


RAYTEAMS = Source(
    name="rayteams",
    title="RAYTeams",
    description="Every project of a dental-lab account with its memos, comments, attachments, histories, "
                "orders, groups and files (patient data pseudonymised).",
    adapter="pwh.flows.rayteams_sync:open_rayteams",
    flow="sync_rayteams",
    flow_name="sync-rayteams",
    other_flows=(OtherFlow("pwh.flows.rayteams_sync:sync_rayteams_accounts", "sync-rayteams-accounts",
                           schedule="rayteams-accounts"),
                 OtherFlow("pwh.flows.rayteams_sync:sync_rayteams_account", "sync-rayteams-account"),
                 OtherFlow("pwh.flows.rayteams_shards:sync_rayteams_sharded", "sync-rayteams-sharded"),
                 OtherFlow("pwh.flows.rayteams_shards:stage_rayteams_shard", "stage-rayteams-shard")),
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
    simulator="pwh.simulators.rayteams.simulator:simulated",
    base_url_example="https://api-ap-northeast-2-project.rayteams.com/v1.0",
    base_url_help="one account, fixed RAYTEAMS_TOKEN; without it: the accounts of pwh.toml",
    concurrency=32,
    # Projects per load transaction: fewer, larger batches amortise each transaction's fixed
    # costs (commit, one insert per table, a Prefect task); docs/performance.md.
    batch_size=500,
    options=(
        Option("strategy", "aggregate (GET /project/{_id}) or per_resource.", "aggregate", kind="choice",
               choices=("aggregate", "per_resource")),
        Option("rekey", "Make the pseudonym key at hand the warehouse's: every pseudonym is recomputed by a full "
                        "refresh; those of deleted projects become NULL (docs/operations.md).", False, kind="bool"),
        Option("file_types", "Fetch only files of this type (repeatable; GET /file/{_projectId}/{_type}); files of "
                             "other types are kept as they are. Default: every file, one request.", None, kind="list",
               choices=("maxilla", "mandible", "face"), flag="--file-type"),
    ),
    credential_flags=(CredentialFlag("--token", "RAYTEAMS_TOKEN"), CredentialFlag("--client-id", "RAYTEAMS_CLIENT_ID")),
    configured_accounts="pwh.accounts_command:sync_configured_accounts",
    sharded="pwh.shards_command:sync_sharded",
    simulator_port=8765,
    simulator_options=(
        Option("token", "Token the simulator accepts.", "sim-token"),
        Option("client_id", "Client id the simulator accepts.", "sim-client"),
    ),
    serve="pwh.simulators.rayteams.simulator:serve_command",
)

OPENPROJECT = Source(
    name="openproject",
    title="OpenProject",
    description="Every project of an OpenProject instance (API v3) with its work packages, versions, "
                "categories, types, memberships and custom values.",
    adapter="pwh.flows.openproject_sync:open_openproject",
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
        Stream("custom_fields", ("custom_fields",), "Custom field definitions (names, types) of projects and work "
                                                    "packages.", per_unit=False, calls=r"/schemas?$"),
        Stream("statuses", ("statuses",), "The instance's work-package statuses.", per_unit=False,
               calls=r"/api/v3/statuses$"),
        Stream("users", ("users",), "The instance's users, names only (403 unless the key may list users).",
               per_unit=False, calls=r"/api/v3/users$"),
    ),
    simulator="pwh.simulators.openproject.simulator:simulated",
    base_url_example="https://openproject.example.org",
    base_url_help="the instance root (the client adds /api/v3)",
    default_cron="15 * * * *",
    batch_size=100,
    options=(
        Option("page_size", "pageSize of every paged collection (the server may cap it).", 100, kind="int", minimum=1),
        Option("probe_work_packages", "Incremental runs also check each project's work packages (one small request "
                                      "a project): a project's updatedAt does not move when only they change.",
               True, kind="bool"),
        Option("filters", "The project list's filters as the API takes them (JSON), e.g. "
                          "'[{\"active\":{\"operator\":\"=\",\"values\":[\"t\"]}}]'. Projects left out are kept as "
                          "they are, never marked deleted.", None, convert="pwh.sources.openproject.client:check_filters"),
        Option("under", "Only the projects below this project id (its subtree, itself excluded): the filter "
                        "ancestor = ID, added to --filters.", None, kind="int", minimum=1),
    ),
    credential_flags=(CredentialFlag("--api-key", "OPENPROJECT_API_KEY"),),
    simulator_port=8768,
    simulator_options=(
        Option("max_work_packages", "Most work packages of a project.", 23, kind="int", minimum=0),
        Option("max_page_size", "Largest pageSize served.", 100, kind="int", minimum=1),
        Option("api_key", "API key the simulator accepts (basic auth apikey:<key>).", "sim-api-key"),
    ),
    serve="pwh.simulators.openproject.simulator:serve_command",
)

CLARITY = Source(
    name="clarity",
    title="Clarity LIMS",
    description="Every project of a Clarity LIMS instance with its typed UDFs, files and external ids.",
    adapter="pwh.flows.clarity_sync:open_clarity",
    flow="sync_clarity",
    flow_name="sync-clarity",
    secrets=("CLARITY_USERNAME", "CLARITY_PASSWORD"),
    streams=(
        Stream("researchers", ("researchers",), "The instance's researchers (names) with their lab's name, once a run.",
               per_unit=False, calls=r"/(researchers|labs)(/[^/]+)?$"),
        Stream("file_details", ("files",), "Details of the files of the projects a run fetched, in one batch a run.",
               per_unit=False, calls=r"/files/batch/retrieve$"),
    ),
    simulator="pwh.simulators.clarity.simulator:simulated",
    base_url_example="https://lims.example.org/api/v2",
    default_cron="30 * * * *",
    concurrency=8,
    timeout_s=60.0,
    options=(
        Option("names", "Only projects of this name (repeatable).", None, kind="list", flag="--name"),
        Option("open_date", "Only projects opened since this date (YYYY-MM-DD).", None,
               convert="pwh.sources.clarity.client:checked_open_date"),
        Option("udf", "UDF/UDT filter passed through, e.g. 'udf.Project Type=RNA-Seq' or 'udt.name=Plan' "
                      "(repeatable).", None, kind="list", convert="pwh.sources.clarity.client:checked_udf_filters"),
        Option("since", "Override the incremental watermark (ISO 8601 with zone).", None,
               convert="pwh.sources.clarity.client:checked_since"),
        Option("overlap_s", "Seconds the watermark is moved back for safety.", 300.0, kind="float", minimum=0.0,
               flag="--overlap"),
    ),
    summary_notes=(("udf_parse_errors", "UDF values kept as text (not their declared type): {count:,} "
                                        "(see clarity.project_udfs.parse_error)"),),
    simulator_port=8767,
    simulator_options=(
        Option("page_size", "Project links a list page holds.", 500, kind="int", minimum=1),
        Option("username", "User the simulator accepts.", "sim-user"),
        Option("password", "Password the simulator accepts.", "sim-password"),
    ),
    serve="pwh.simulators.clarity.simulator:serve_command",
)

INCOPLAX = Source(
    name="incoplax",
    title="Incoplax",
    description="Every project of an Incoplax domain.",
    adapter="pwh.flows.incoplax_sync:open_incoplax",
    flow="sync_incoplax",
    flow_name="sync-incoplax",
    secrets=("INCOPLAX_TOKEN",),  # auth_scheme="basic": INCOPLAX_USERNAME and INCOPLAX_PASSWORD
    streams=(),
    simulator="pwh.simulators.incoplax.simulator:simulated",
    base_url_example="https://incoplax.example.com",
    base_url_help="the server root (the client adds /rest/v1/domain/projects)",
    default_cron="45 * * * *",
    options=(
        Option("listing", "auto, minimal (complete list, mask id,ext.lwt) or recent (newest first, stop at the "
                          "cursor; no deletions).", "auto", kind="choice", choices=("auto", "minimal", "recent")),
        Option("order", "List order as JSON, passed through (default [\"id\"]; '' sends none).", '["id"]',
               convert="pwh.sources.incoplax.client:parse_order", flow_type=list[Any]),
        Option("page_size", "limit of each list request.", 500, kind="int", minimum=1),
        Option("auth_scheme", "bearer (INCOPLAX_TOKEN) or basic (INCOPLAX_USERNAME, INCOPLAX_PASSWORD).", "bearer",
               kind="choice", choices=("bearer", "basic"), flag="--auth"),
        Option("filter", "The list's filter as JSON (field values), e.g. '{\"code\": \"5102\"}'. Projects left out "
                         "are kept as they are, never marked deleted.", None,
               convert="pwh.sources.incoplax.client:check_filter", flow_type=dict[str, Any]),
        Option("mask", "Fetch and store only these fields (comma-separated: id, code, name, opts.title, ext.lwt, "
                       "ext.ct; id and ext.lwt always); the other columns load NULL.", None,
               convert="pwh.sources.incoplax.client:parse_mask", flow_type=list[str]),
    ),
    secrets_when=(("auth_scheme", "basic", ("INCOPLAX_USERNAME", "INCOPLAX_PASSWORD")),),
    simulator_port=8766,
    simulator_options=(
        Option("max_limit", "Cap on limit (0: no cap), like a server that caps pages.", 0, kind="int", minimum=0),
        Option("list_opts", "The list outputs opts (no detail requests needed).", False, kind="bool"),
        Option("auth", "bearer or basic.", "bearer", kind="choice", choices=("bearer", "basic")),
        Option("token", "Token the simulator accepts (bearer).", "sim-token"),
        Option("username", "User the simulator accepts (basic).", "sim-user"),
        Option("password", "Password the simulator accepts (basic).", "sim-password"),
    ),
    serve="pwh.simulators.incoplax.simulator:serve_command",
)

SOURCES: tuple[Source, ...] = (RAYTEAMS, OPENPROJECT, CLARITY, INCOPLAX)


def resolve(target: str) -> Any:
    """The object a ``module:name`` string names (imported now)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
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
