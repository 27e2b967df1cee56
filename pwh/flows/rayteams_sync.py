"""The RAYTeams adapter: the client, transform and tables wired into the engine, and the
syncs of configured accounts. The syncs run in this process as they are (a plain `pwh sync`)
or as the Prefect flows of pwh/flows/prefect_flows.py, which wrap these very functions."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pwh.config import ConfigError, load_config
from pwh.errors import PwhError
from pwh.flows.engine import ClientAdapter, Listing, Unit, listed_units
from pwh.flows.host import flow_run_context
from pwh.flows.registry import RAYTEAMS, FlowParameter
from pwh.flows.runner import OpenedAdapter
from pwh.flows.secrets import read_secret
from pwh.flows.streams import UnitStreams
from pwh.flows.syncs import flow_doc, flow_signature, run_opened, settings_of, taking
from pwh.schemas import rayteams as tables
from pwh.settings import choose_key
from pwh.sources.http import HttpSettings
from pwh.sources.rayteams.accounts import RayteamsAccount, rayteams_account, rayteams_accounts
from pwh.sources.rayteams.client import (
    CLIENT_ID_VARIABLE,
    TOKEN_VARIABLE,
    RayteamsClient,
    region_of,
)
from pwh.sources.rayteams.oauth import OAuthCredentials, SecretNames
from pwh.transforms.coerce import CoercionError, as_timestamp_ms
from pwh.transforms.frames import TableBatch
from pwh.transforms.pseudonym import Pseudonymizer
from pwh.transforms.rayteams import FetchedProject, route, transform_projects
from pwh.transforms.redact import Redactor
from pwh.warehouse.load import UnitState

log = logging.getLogger("pwh.rayteams")

# The tables each strategy sees only in part. ``per_resource`` reads the five documented
# sub-resources: records of any other kind (``other_records``) are in the aggregate answer
# only, so a per_resource run that does not see them proves nothing about them (rows it
# does see there are upserted by key). ``aggregate`` sees every record of a project.
PARTIAL_TABLES: dict[str, frozenset[str]] = {
    "aggregate": frozenset(),
    "per_resource": frozenset({tables.OTHER_RECORDS.name}),
}


FILE_TYPES = ("maxilla", "mandible", "face")  # what GET /file/{_projectId}/{_type} takes


def check_file_types(file_types: Sequence[str] | None) -> tuple[str, ...]:
    """The file types to fetch (empty: all, one request), each once; ValueError names the valid ones."""
    chosen = tuple(dict.fromkeys(file_types or ()))
    unknown = [kind for kind in chosen if kind not in FILE_TYPES]
    if unknown:
        raise ValueError(f"unknown file type {', '.join(map(repr, unknown))}; expected {', '.join(FILE_TYPES)}")
    return chosen


class RayteamsAdapter(ClientAdapter[RayteamsClient]):
    source = "rayteams"
    strategy: str
    tables = tables.TABLES
    streams = RAYTEAMS.streams  # `projects` and `other_records` come with the project itself

    def __init__(self, client: RayteamsClient, *, account: str, strategy: str, pseudonyms: Pseudonymizer,
                 region: str | None = None, file_types: Sequence[str] = ()) -> None:
        self.client = client
        self.account = account
        self.region = region or region_of(client.http.base_url)
        self.strategy = strategy
        if strategy not in PARTIAL_TABLES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {tuple(PARTIAL_TABLES)}")
        self.file_types = check_file_types(file_types)
        # Files of the other types are not fetched: a project's rows there are kept (and
        # those of the chosen types upserted by key), never taken as deleted.
        self.partial_tables = PARTIAL_TABLES[strategy] | (
            {tables.FILES.name} if self.file_types and set(self.file_types) != set(FILE_TYPES) else set())
        self.pseudonyms = pseudonyms
        self.redact = Redactor(pseudonyms)  # a unit without its own (the transform gives each one)

    async def list_units(self, known: Mapping[str, UnitState]) -> Listing:
        # GET /project has no server-side filter: list everything, compare cursors.
        units = listed_units(await self.client.list_projects(), "_id", project_cursor, self.source)
        return Listing(units)

    async def fetch_unit(self, unit: Unit, streams: UnitStreams) -> FetchedProject:
        payload = await self.client.fetch_project(unit.key, self.strategy, self.file_types, streams.fetch)
        records = payload.records
        if self.strategy == "aggregate" and not any(_is_group(record) for record in records):
            # The aggregate answer may be scoped without groups (the seed's 4.3.2-4.3.6 leave
            # them out): then the groups stream is fetched on its own.
            no_groups: list[dict[str, Any]] = []
            records = records + await streams.fetch(
                "groups", lambda: self.client.fetch_sub_resource(unit.key, "groups"), no_groups)
        return FetchedProject(unit.key, unit.entry, records, payload.files)

    def transform(self, fetched: list[FetchedProject]) -> TableBatch:
        return transform_projects(fetched, account=self.account, pseudonyms=self.pseudonyms)


def _is_group(record: Any) -> bool:
    return isinstance(record, dict) and isinstance(record.get("sk"), str) and route(record["sk"]) == "groups"


def project_cursor(record: dict[str, Any]) -> str | None:
    """The incremental cursor of a listed project: its `updated` (in any written form) as
    epoch ms text. None (unreadable) makes the project count as changed on every run."""
    try:
        updated = as_timestamp_ms(record.get("updated"), "updated")
    except CoercionError:
        return None
    return None if updated is None else str(updated)


def default_key_file(db_path: str) -> Path:
    """Pseudonyms must match across runs of one warehouse: its key lives beside it."""
    return Path(db_path).resolve().parent / ".pwh" / "pseudonym.key"



def open_rayteams(parameters: dict[str, Any], settings: HttpSettings) -> OpenedAdapter:
    """The adapter of a sync's parameters (pwh/flows/syncs.py): one account, ``base_url``, whose
    credentials are RAYTEAMS_TOKEN and RAYTEAMS_CLIENT_ID (or Prefect Secret blocks
    ``rayteams-token`` / ``rayteams-client-id``)."""
    client = RayteamsClient.connect(parameters["base_url"], token=read_secret(TOKEN_VARIABLE),
                                    client_id=read_secret(CLIENT_ID_VARIABLE), settings=settings)
    return opened_adapter(client, parameters)


def opened_adapter(client: RayteamsClient, parameters: dict[str, Any], region: str | None = None) -> OpenedAdapter:
    """One account's adapter through ``client`` (what every RAYTeams sync runs).

    The pseudonym key comes from PWH_PSEUDONYM_KEY (or a key file beside the warehouse). It
    must be the one that made the warehouse's pseudonyms; ``rekey`` makes it so (a full
    refresh; pwh/warehouse/pseudonym_keys.py). ``file_types`` (``maxilla``, ``mandible``,
    ``face``; default all) fetches only those files (``GET /file/{_projectId}/{_type}``, one
    request a type); files of the other types are kept as they are."""
    key = choose_key(default_key_file(parameters["db_path"]))
    adapter = RayteamsAdapter(client, account=parameters["account"], strategy=parameters["strategy"],
                              pseudonyms=Pseudonymizer(key.secret), region=region,
                              file_types=parameters["file_types"] or ())
    return OpenedAdapter(adapter, tables.TABLES, pseudonym_key=key, rekey=parameters["rekey"])


def oauth_credentials(account: RayteamsAccount, settings: HttpSettings) -> OAuthCredentials:
    """The account's OAuth credentials, its secrets read here (environment or Secret blocks)."""
    client_id_source = (f"client_id of [rayteams.accounts.{account.name}]" if account.client_id
                        else account.client_id_variable)
    return OAuthCredentials(
        account=account.name,
        token_url=account.token_url,
        client_id=account.client_id or read_secret(account.client_id_variable),
        client_secret=read_secret(account.client_secret_variable),
        refresh_token=read_secret(account.refresh_token_variable),
        names=SecretNames(client_id_source, account.client_secret_variable, account.refresh_token_variable),
        settings=settings,
    )


async def _sync_account(parameters: dict[str, Any]) -> dict[str, Any]:
    configured = rayteams_account(load_config(parameters["config_path"]), parameters["account"])
    settings = settings_of(parameters)
    client = RayteamsClient.connect(configured.base_url, oauth=oauth_credentials(configured, settings),
                                    settings=settings)
    summary = await run_opened(opened_adapter(client, parameters | {"account": configured.name},
                                              region=configured.region), parameters)
    return {"account": configured.name, "region": configured.region, **summary}


# The syncs of configured accounts take a sync's parameters without base_url (pwh.toml has it).
CONFIG_PATH = FlowParameter("config_path", str | None, None, "Configuration file (default pwh.toml).")
_DB_PATH, _MODE = (p for p in RAYTEAMS.flow_parameters() if p.name in ("db_path", "mode"))
ACCOUNT_HEAD = (FlowParameter("account", str, help="The [rayteams.accounts.<name>] to sync."), CONFIG_PATH, _DB_PATH,
                _MODE)
ACCOUNTS_HEAD = (CONFIG_PATH, _DB_PATH, FlowParameter("account", str | None, None, "Only this account (default: all)."),
                 _MODE)


def _configured_accounts_flow(head: tuple[FlowParameter, ...], run: Any, name: str, summary: str) -> Any:
    signature = flow_signature(RAYTEAMS, head=head, without=("base_url",))
    return taking(signature, run, name=name, doc=flow_doc(summary, signature, (*head, *RAYTEAMS.flow_parameters())))


sync_rayteams_account = _configured_accounts_flow(
    ACCOUNT_HEAD, _sync_account, "sync_rayteams_account",
    """Sync one RAYTeams account of ``config_path`` (default ``pwh.toml``), renewing its
OAuth access token from its refresh token whenever it expires.

The client secret and refresh token come from ``RAYTEAMS_<NAME>_CLIENT_SECRET`` and
``RAYTEAMS_<NAME>_REFRESH_TOKEN`` (or Secret blocks), never from parameters.""")


class AccountsFailedError(PwhError, RuntimeError):
    """Some accounts' syncs failed (the others ran); ``outcome`` holds every account's result."""

    def __init__(self, message: str, outcome: dict[str, Any]):
        super().__init__(message)
        self.outcome = outcome


async def _sync_accounts(parameters: dict[str, Any]) -> dict[str, Any]:
    config = load_config(parameters["config_path"])
    if parameters["account"] is not None:
        names = [rayteams_account(config, parameters["account"]).name]
    else:
        names = sorted(rayteams_accounts(config))
    if not names:
        raise ConfigError(f"{config.where}: no RAYTeams accounts; add [rayteams.accounts.<name>] tables")
    # Under Prefect each account is a subflow run of its own.
    sync_account = RAYTEAMS.flow_function("sync_rayteams_account", prefect=flow_run_context() is not None)
    outcome: dict[str, Any] = {"accounts": {}, "failed": {}}
    for name in names:
        try:
            outcome["accounts"][name] = await sync_account(**(parameters | {"account": name}))
        except Exception as error:  # an interrupt stops every account
            outcome["failed"][name] = f"{type(error).__name__}: {error}".splitlines()[0][:2000]
            log.error("RAYTeams account %s failed: %s", name, outcome["failed"][name])
    if outcome["failed"]:
        failed = outcome["failed"]
        raise AccountsFailedError(
            f"{len(failed)} of {len(names)} RAYTeams accounts failed: "
            + "; ".join(f"{name}: {message}" for name, message in failed.items()),
            outcome,
        )
    return outcome


sync_rayteams_accounts = _configured_accounts_flow(
    ACCOUNTS_HEAD, _sync_accounts, "sync_rayteams_accounts",
    """Sync every RAYTeams account of ``config_path`` (or only ``account``), one after
another (one DuckDB writer at a time), each with its own ledger row (and, under Prefect,
its own subflow run). An account that fails (a refused refresh token, say) does not stop the others;
the run then fails naming them, after every account has had its turn.

Returns ``{"accounts": {name: summary}, "failed": {name: message}}``.""")
