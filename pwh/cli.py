"""``pwh``: the command line of project-warehouse."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pwh.choices import Auth, DemoSource, FileType, Listing, LookupKey, Strategy
from pwh.failures import describe_failure, enable_debug, keep_run_logs_off_console
from pwh.formats import Format as SqlFormat
from pwh.process import exit_without_teardown, tune_collector
from pwh.validate import check_base_url, check_config, check_secrets

# Shell completion (commands, options, choices): `pwh --install-completion`.
app = typer.Typer(no_args_is_help=True, help="project-warehouse: project APIs → DuckDB.")
sync_app = typer.Typer(no_args_is_help=True, help="Sync a source into the warehouse.")
simulate_app = typer.Typer(no_args_is_help=True, help="Serve a built-in API simulator on loopback.")
app.add_typer(sync_app, name="sync")
app.add_typer(simulate_app, name="simulate")

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB warehouse file.")]
# Options every sync or simulate command takes alike.
ConcurrencyOption = Annotated[int, typer.Option(min=1, max=512, help="Requests in flight.")]
BatchSizeOption = Annotated[int, typer.Option(min=1, help="Projects per load transaction.")]
TimeoutOption = Annotated[float, typer.Option(min=0.001, help="Per-request timeout, seconds.")]
QuietOption = Annotated[bool, typer.Option("--quiet", help="No progress bar.")]
FullRefreshOption = Annotated[bool, typer.Option("--full-refresh", help="Refetch every project and reconcile.")]
AllowMassDeleteOption = Annotated[bool, typer.Option(
    "--allow-mass-delete", help="Confirm a run that marks more than a quarter of the projects deleted "
                                "(refused otherwise: an empty or short list looks the same).")]
SeedOption = Annotated[int, typer.Option(help="Seed of the generated data.")]
LatencyOption = Annotated[float, typer.Option(help="Added to every answer.")]
FaultRateOption = Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of requests failing once.")]
PrefectOption = Annotated[Optional[bool], typer.Option(
    "--prefect/--no-prefect", help="Run as a Prefect flow run (needs a Prefect API: PREFECT_API_URL or the "
                                   "active profile), or in this process alone. Default: a flow run when an API is "
                                   "configured.")]


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"pwh {version('project-warehouse')}")
    except PackageNotFoundError:  # run from a source tree that was never installed
        typer.echo("pwh: version unknown (project-warehouse is not installed: pip install -e .)")
    raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Tracebacks and debug logs on the console "
                                        "(otherwise an unexpected error's traceback goes to the log file it names).")] = False,
) -> None:
    """project-warehouse: project APIs → DuckDB."""
    if debug:
        enable_debug()


# Whether a command has printed its one-line failure (run_app then adds nothing).
_failure_printed = False


def fail(message: str, code: int = 1) -> None:
    global _failure_printed
    typer.echo(f"pwh: error: {message}", err=True)
    _failure_printed = True
    raise typer.Exit(code)


def _quiet_prefect() -> None:
    """Our own one-line errors and progress bar replace Prefect's console tracebacks;
    Prefect's run records still get everything."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Without PREFECT_API_URL, Prefect starts a temporary server per run; its default 20 s
    # start-up wait is not enough on a busy 2-core machine (measured: runs failed).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def sync_module(source: str, prefect: Optional[bool]):
    """The module whose sync functions a hand run calls: the Prefect flows of
    pwh/flows/<source>.py when a Prefect API is configured (or --prefect), else the very same
    functions run in this process (pwh/flows/<source>_sync.py): no Prefect import and no
    temporary Prefect server (10-30 s) on every run (docs/operations.md). ``--prefect``
    without an API is refused: Prefect's temporary server would throw the run's records
    away when it ends, and a killed ``pwh`` would leave that server behind."""
    import importlib

    from pwh.flows.host import configured_api_url

    configured = configured_api_url() is not None
    if prefect and not configured:
        fail("--prefect records the run on a Prefect server, and none is configured: set PREFECT_API_URL "
             "(start one with `prefect server start`), or drop --prefect")
    use_prefect = configured if prefect is None else prefect
    return importlib.import_module(f"pwh.flows.{source}" if use_prefect else f"pwh.flows.{source}_sync")


async def _stoppable(coro_factory, stopped_by: list[int]):
    """Run the sync as this task; SIGINT (Ctrl-C, sent to the whole process group) and
    SIGTERM cancel it: the engine stops fetching, lets a load in flight commit, records
    the run ``interrupted`` and the command exits 128 + the signal (130, 143)."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()

    def stop(signum: int) -> None:
        if not stopped_by:  # once: a second Ctrl-C must not cut short the load that is committing
            stopped_by.append(signum)
            task.cancel(f"interrupted by {signal.Signals(signum).name}")

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop, signum)
    return await coro_factory()


def _stopping_signal(exc: BaseException, stopped_by: list[int]) -> int | None:
    """The signal that stopped the sync, or None when ``exc`` is no interruption: ours
    (Ctrl-C, SIGTERM), or, inside a Prefect flow run, Prefect's own SIGTERM handler's
    TerminationSignal (it carries the signal; asyncio.run has cancelled the sync by then,
    so its run is recorded interrupted all the same)."""
    if stopped_by:
        return stopped_by[0]
    if isinstance(exc, (KeyboardInterrupt, asyncio.CancelledError)):
        return signal.SIGINT
    prefect_signal = getattr(exc, "signal", None)
    return prefect_signal if isinstance(prefect_signal, int) else None


def run_flow(coro_factory, *, show_progress: bool = True) -> dict:
    """Run a flow with a progress bar; return its summary or exit with a one-line cause."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from pwh.flows import progress as progress_hook

    bar = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("projects · {task.fields[requests]} requests · {task.fields[retries]} retries"),
        TimeElapsedColumn(), transient=False, disable=not show_progress, console=None,
    )
    task_id = bar.add_task("syncing", total=None, requests=0, retries=0)

    def listener(p) -> None:
        bar.update(task_id, total=p.total, completed=p.done, requests=p.requests, retries=p.retries)

    progress_hook.set_listener(listener)
    stopped_by: list[int] = []
    try:
        with keep_run_logs_off_console(), bar:
            return asyncio.run(_stoppable(coro_factory, stopped_by))
    except BaseException as exc:
        signum = _stopping_signal(exc, stopped_by)
        if signum is not None:
            fail(f"interrupted by {signal.Signals(signum).name}; projects loaded so far are committed, "
                 "the next run resumes", 128 + signum)
        if not isinstance(exc, Exception):
            raise
        fail(describe_failure(exc))  # one line, no traceback: the cause, not the machinery
    finally:
        progress_hook.set_listener(None)
    raise AssertionError("unreachable")


def print_summary(summary: dict) -> None:
    rows = ", ".join(f"{table} {count:,}" for table, count in sorted(summary["rows_loaded"].items()))
    typer.echo(
        f"{summary['status']}: {summary['units_seen']:,} projects listed, "
        f"{summary['units_new']:,} new, {summary['units_changed']:,} changed, "
        f"{summary['units_unchanged']:,} unchanged, {summary['units_deleted']:,} deleted, "
        f"{summary['units_failed']:,} failed; {summary['requests']:,} requests, {summary['retries']:,} retries"
    )
    typer.echo(f"rows loaded: {rows or 'none'}; rejected records: {summary['rows_rejected']:,}"
               + (" (see pipeline.rejected_records)" if summary["rows_rejected"] else ""))
    if summary["failed_units"]:
        typer.echo(f"failed projects (retried next run): {', '.join(summary['failed_units'][:10])}"
                   + (" …" if len(summary["failed_units"]) > 10 else ""))


@sync_app.command("rayteams")
def sync_rayteams_command(
    base_url: Annotated[Optional[str], typer.Option(
        help="API base URL, e.g. https://api-ap-northeast-2-project.rayteams.com/v1.0 (one account, "
             "fixed RAYTEAMS_TOKEN). Without it: the accounts of pwh.toml.")] = None,
    db: DbOption = Path("warehouse.duckdb"),
    account: Annotated[Optional[str], typer.Option(
        help="With --base-url: the name recorded with every row (default 'default'). Without: "
             "the pwh.toml account to sync.")] = None,
    all_accounts: Annotated[bool, typer.Option("--all-accounts", help="Sync every account of pwh.toml (the default without --base-url).")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="Configuration file (default ./pwh.toml).")] = None,
    concurrency: ConcurrencyOption = 32,
    full_refresh: FullRefreshOption = False,
    allow_mass_delete: AllowMassDeleteOption = False,
    strategy: Annotated[Strategy, typer.Option(help="aggregate (GET /project/{_id}) or per_resource.")] = Strategy.aggregate,
    batch_size: BatchSizeOption = 500,  # pwh.flows.rayteams.DEFAULT_BATCH_SIZE (not imported: the CLI starts without Prefect)
    timeout: TimeoutOption = 30.0,
    max_response_mb: Annotated[Optional[float], typer.Option(
        min=0.001, help="Largest answer accepted, MiB (default: PWH_MAX_RESPONSE_BYTES, else 64).")] = None,
    token: Annotated[Optional[str], typer.Option(help="Overrides RAYTEAMS_TOKEN (prefer the variable: flags show in `ps`).")] = None,
    client_id: Annotated[Optional[str], typer.Option(help="Overrides RAYTEAMS_CLIENT_ID.")] = None,
    rekey: Annotated[bool, typer.Option(
        "--rekey", help="Make the pseudonym key at hand the warehouse's: every pseudonym is recomputed by a full "
                        "refresh; those of deleted projects become NULL (docs/operations.md).")] = False,
    file_type: Annotated[Optional[list[FileType]], typer.Option(
        help="Fetch only files of this type (repeatable; GET /file/{_projectId}/{_type}); files of other types "
             "are kept as they are. Default: every file, one request.")] = None,
    quiet: QuietOption = False,
    prefect: PrefectOption = None,
) -> None:
    """Sync every RAYTeams project (and sub-resource, and file) into the warehouse."""
    _quiet_prefect()
    from pwh.sources.rayteams.client import CLIENT_ID_VARIABLE, TOKEN_VARIABLE

    strategy = strategy.value
    file_types = [kind.value for kind in file_type] if file_type else None
    max_response_bytes = None if max_response_mb is None else int(max_response_mb * 1024 * 1024)
    if base_url is None:
        if token or client_id:
            fail("--token and --client-id apply with --base-url only; configured accounts renew their "
                 "tokens from RAYTEAMS_<NAME>_REFRESH_TOKEN (see docs/accounts.md)")
        _sync_rayteams_accounts(
            config=config, db=db, account=account, all_accounts=all_accounts, concurrency=concurrency,
            mode="full_refresh" if full_refresh else "incremental", strategy=strategy,
            batch_size=batch_size, timeout=timeout, max_response_bytes=max_response_bytes, quiet=quiet,
            allow_mass_delete=allow_mass_delete, rekey=rekey, prefect=prefect, file_types=file_types,
        )
        return
    if all_accounts:
        fail("--all-accounts syncs the accounts of pwh.toml: drop --base-url")
    check_base_url(base_url)
    check_config(config)
    # Secrets reach the flow through its environment, never as (stored) flow parameters.
    if token:
        os.environ[TOKEN_VARIABLE] = token
    if client_id:
        os.environ[CLIENT_ID_VARIABLE] = client_id
    check_secrets([TOKEN_VARIABLE, CLIENT_ID_VARIABLE], flags="--token, --client-id")
    sync_rayteams = sync_module("rayteams", prefect).sync_rayteams
    summary = run_flow(lambda: sync_rayteams(
        base_url=base_url, db_path=str(db), account=account or "default",
        mode="full_refresh" if full_refresh else "incremental", strategy=strategy,
        concurrency=concurrency, batch_size=batch_size, timeout_s=timeout,
        max_response_bytes=max_response_bytes, allow_mass_delete=allow_mass_delete, rekey=rekey,
        file_types=file_types,
    ), show_progress=not quiet and sys.stderr.isatty())
    print_summary(summary)
    if summary["status"] == "partial":
        raise typer.Exit(3)


def _sync_rayteams_accounts(*, config: Optional[Path], db: Path, account: Optional[str], all_accounts: bool,
                            quiet: bool, timeout: float, prefect: Optional[bool], **params) -> None:
    """``pwh sync rayteams`` without --base-url: the accounts of pwh.toml, each renewing its
    OAuth token; one summary per account; exit 1 if any account failed (the rest still ran)."""
    from pwh.config import ConfigError
    from pwh.validate import SettingError

    if account and all_accounts:
        fail("give --account NAME or --all-accounts, not both")
    loaded = check_config(config)
    try:
        chosen = [loaded.rayteams_account(account)] if account else list(loaded.rayteams_accounts.values())
    except ConfigError as exc:
        fail(str(exc))
    if not chosen:
        fail("give --base-url, or configure RAYTeams accounts in pwh.toml ([rayteams.accounts.<name>], "
             "see docs/accounts.md)")
    refusals = []
    for configured in chosen:  # an account without its secrets fails alone, the others still run
        try:
            check_secrets(([] if configured.client_id else [configured.client_id_variable])
                          + [configured.client_secret_variable, configured.refresh_token_variable])
        except SettingError as exc:
            refusals.append(exc)
    if len(refusals) == len(chosen):
        raise refusals[0]
    from pwh.flows.rayteams_sync import AccountsFailedError

    sync_rayteams_accounts = sync_module("rayteams", prefect).sync_rayteams_accounts

    async def run() -> dict:
        try:
            return await sync_rayteams_accounts(
                config_path=str(loaded.path), db_path=str(db), account=account, timeout_s=timeout, **params)
        except AccountsFailedError as exc:
            return exc.outcome

    outcome = run_flow(run, show_progress=not quiet and sys.stderr.isatty())
    for name, summary in outcome["accounts"].items():
        typer.echo(f"account {name} ({summary['region']}):")
        print_summary(summary)
    for name, message in outcome["failed"].items():
        typer.echo(f"account {name}: failed: {message}", err=True)
    if outcome["failed"]:
        raise typer.Exit(1)
    if any(summary["status"] == "partial" for summary in outcome["accounts"].values()):
        raise typer.Exit(3)


@simulate_app.command("rayteams")
def simulate_rayteams_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8765,
    projects: Annotated[int, typer.Option(min=0, help="Number of simulated projects.")] = 100,
    seed: SeedOption = 7,
    latency_ms: LatencyOption = 0.0,
    fault_rate: FaultRateOption = 0.0,
    token: Annotated[str, typer.Option(help="Token the simulator accepts.")] = "sim-token",
    client_id: Annotated[str, typer.Option(help="Client id the simulator accepts.")] = "sim-client",
) -> None:
    """Serve the RAYTeams simulator (every endpoint and quirk) until interrupted."""
    from pwh.sources.rayteams.dataset import DatasetConfig, RayteamsDataset
    from pwh.sources.rayteams.simulator import SimulatorOptions, serve_forever

    dataset = RayteamsDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(token=token, client_id=client_id, latency_ms=latency_ms, fault_rate=fault_rate)
    typer.echo(f"RAYTeams simulator: http://127.0.0.1:{port}/v1.0 ({projects} projects, seed {seed}); "
               f"token {token!r}, client id {client_id!r}. Ctrl-C stops it.")
    serve_forever(dataset, options, host="127.0.0.1", port=port)


@app.command()
def demo(
    db: DbOption = Path("warehouse.duckdb"),
    projects: Annotated[int, typer.Option(min=1, help="Simulated projects.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the simulated data.")] = 7,
    source: Annotated[DemoSource, typer.Option(help="Which simulated sources to sync.")] = DemoSource.rayteams,
) -> None:
    """Simulator on a free loopback port → full sync into a local DuckDB file → summary."""
    _quiet_prefect()
    from pwh.demo import run_demo

    run_demo(db=db, projects=projects, seed=seed, run_flow=run_flow, print_summary=print_summary,
             sync_module=lambda name: sync_module(name, None), source=source.value)


@app.command()
def docs(
    write: Annotated[Optional[Path], typer.Option(
        "--write", help="Rewrite the generated references in this docs folder (tables.md, the marts of analytics.md) instead of printing.")] = None,
) -> None:
    """Print the warehouse's table reference (every table and column) as Markdown."""
    from pwh.schemas.catalog import markdown_reference, with_marts_reference, with_reference

    if write is None:
        typer.echo(markdown_reference(), nl=False)
        return
    for name, rewrite in (("tables.md", with_reference), ("analytics.md", with_marts_reference)):
        path = write / name
        try:
            path.write_text(rewrite(path.read_text()))
        except FileNotFoundError:
            fail(f"no {path}: --write takes the project's docs folder")
        typer.echo(f"{path} updated")


@app.command()
def serve(
    config: Annotated[Optional[Path], typer.Option(help="Schedules file (one schedules.<name> table per deployment); default ./pwh.toml if present.")] = None,
    source: Annotated[Optional[list[str]], typer.Option("--source", help="Serve only this schedule or source (repeatable); a source without a table gets the defaults.")] = None,
    cron: Annotated[Optional[str], typer.Option(help="Cron schedule for every served flow (default: the file's, else hourly '0 * * * *').")] = None,
    interval: Annotated[Optional[float], typer.Option(min=1.0, help="Run every N seconds instead of a cron schedule.")] = None,
    param: Annotated[Optional[list[str]], typer.Option("--param", help="KEY=VALUE flow parameter for every served flow (repeatable; never a secret).")] = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="Warehouse file for every served flow (the db_path parameter).")] = None,
) -> None:
    """Serve the sync flows on their schedules (needs a Prefect server: PREFECT_API_URL).

    One run of a deployment at a time: a run that would overlap a running one is skipped
    (cancelled); runs of different sources wait for each other's hold on the warehouse file."""
    _quiet_prefect()
    from pwh.flows.schedules import (
        ScheduleError,
        check_cron,
        describe,
        load_schedules,
        select,
        to_deployment,
    )

    parameters: dict[str, object] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            fail(f"--param takes KEY=VALUE, not {item!r}")
        try:  # numbers and booleans as such; anything else is text
            parameters[key.strip()] = json.loads(value)
        except ValueError:
            parameters[key.strip()] = value
    if db is not None:
        parameters["db_path"] = str(db.resolve())
    try:
        if cron is not None:
            check_cron("--cron", cron)
        schedules = select(load_schedules(config), only=source or (), cron=cron,
                           interval_seconds=interval, parameters=parameters)
    except (ScheduleError, OSError) as exc:
        fail(str(exc))
    if not schedules:
        fail("nothing to serve: write [schedules.<source>] tables in pwh.toml or pass --source")
    if not os.environ.get("PREFECT_API_URL"):
        fail("scheduled runs need a Prefect server: start one (`prefect server start`) and set PREFECT_API_URL")
    from prefect import serve as prefect_serve

    deployments = [to_deployment(s) for s in schedules]
    for s in schedules:
        typer.echo(f"serving {describe(s)}")
    # Overlaps: a deployment's next run while one is running is cancelled by the server
    # (CANCEL_NEW); runs of different sources wait for each other on the writer lock.
    prefect_serve(*deployments, print_starting_message=False)


incoplax_app = typer.Typer(no_args_is_help=True, help="Incoplax calls (LOOKUP).")
app.add_typer(incoplax_app, name="incoplax")
AuthOption = Annotated[Auth, typer.Option("--auth", help="bearer (INCOPLAX_TOKEN) or basic (INCOPLAX_USERNAME, INCOPLAX_PASSWORD).")]


def _check_incoplax(base_url: str, auth: Auth) -> None:
    from pwh.sources.incoplax.client import (
        PASSWORD_VARIABLE,
        TOKEN_VARIABLE,
        USERNAME_VARIABLE,
    )

    check_base_url(base_url)
    check_secrets([TOKEN_VARIABLE] if auth is Auth.bearer else [USERNAME_VARIABLE, PASSWORD_VARIABLE])


@sync_app.command("incoplax")
def sync_incoplax_command(
    base_url: Annotated[str, typer.Option(help="Server root, e.g. https://incoplax.example.com (the client adds /rest/v1/domain/projects).")],
    db: DbOption = Path("warehouse.duckdb"),
    account: Annotated[str, typer.Option(help="Name recorded with every row (the instance/domain).")] = "default",
    auth: AuthOption = Auth.bearer,
    full_refresh: FullRefreshOption = False,
    allow_mass_delete: AllowMassDeleteOption = False,
    listing: Annotated[Listing, typer.Option(help="auto, minimal (complete list, mask id,ext.lwt) or recent (newest first, stop at the cursor; no deletions).")] = Listing.auto,
    order: Annotated[str, typer.Option(help="List order as JSON, passed through (default [\"id\"]; '' sends none).")] = '["id"]',
    page_size: Annotated[int, typer.Option(min=1, help="limit of each list request.")] = 500,
    concurrency: ConcurrencyOption = 16,
    batch_size: BatchSizeOption = 250,
    timeout: TimeoutOption = 30.0,
    filter: Annotated[Optional[str], typer.Option(help='The list\'s filter as JSON (field values), e.g. \'{"code": "5102"}\'. Projects left out are kept as they are, never marked deleted.')] = None,
    mask: Annotated[Optional[str], typer.Option(help="Fetch and store only these fields (comma-separated: id, code, name, opts.title, ext.lwt, ext.ct; id and ext.lwt always); the other columns load NULL.")] = None,
    quiet: QuietOption = False,
    prefect: PrefectOption = None,
) -> None:
    """Sync every project of an Incoplax domain into the warehouse."""
    _quiet_prefect()
    from pwh.sources.incoplax.client import check_filter, check_mask

    try:
        filter_value, mask_fields = check_filter(filter), check_mask([mask] if mask else None)
    except ValueError as exc:
        fail(f"--{exc}")  # "mask: unknown field …" / "filter must be a JSON object …"
    _check_incoplax(base_url, auth)
    check_config(None)
    sync_incoplax = sync_module("incoplax", prefect).sync_incoplax
    try:
        order_value = json.loads(order) if order.strip() else None
    except ValueError:
        fail("--order must be JSON, e.g. '[\"id\"]' or '[{\"ext.lwt\": \"desc\"}]'")
    if order_value is not None and not isinstance(order_value, list):
        fail("--order must be a JSON array")

    summary = run_flow(lambda: sync_incoplax(
        base_url=base_url, db_path=str(db), account=account,
        mode="full_refresh" if full_refresh else "incremental", listing=listing.value, order=order_value,
        page_size=page_size, concurrency=concurrency, batch_size=batch_size, auth_scheme=auth.value, timeout_s=timeout,
        allow_mass_delete=allow_mass_delete, filter=filter_value, mask=list(mask_fields) if mask_fields else None,
    ), show_progress=not quiet and sys.stderr.isatty())
    print_summary(summary)
    if summary["status"] == "partial":
        raise typer.Exit(3)


@incoplax_app.command("lookup")
def incoplax_lookup_command(
    key: Annotated[str, typer.Argument(help="The project code (or id) to look up.")],
    base_url: Annotated[str, typer.Option(help="Server root (the client adds /rest/v1/domain/projects).")],
    by: Annotated[LookupKey, typer.Option(help="Which key field must match.")] = LookupKey.code,
    auth: AuthOption = Auth.bearer,
    timeout: TimeoutOption = 30.0,
) -> None:
    """LOOKUP a project by code or id; prints the matching ids, one per line."""
    _check_incoplax(base_url, auth)
    from pwh.flows.incoplax_sync import read_credentials
    from pwh.sources.errors import SourceError
    from pwh.sources.http import HttpSettings
    from pwh.sources.incoplax.client import IncoplaxClient, LookupNotFoundError

    async def lookup() -> list[str]:
        client = IncoplaxClient.connect(base_url, auth_scheme=auth.value, settings=HttpSettings(timeout_s=timeout),
                                        **read_credentials(auth.value))
        async with client:
            return await client.lookup(key, by=by.value)

    try:
        ids = asyncio.run(lookup())
    except LookupNotFoundError as exc:
        fail(f"not found: {exc}", 4)
    except (SourceError, RuntimeError, ValueError) as exc:
        fail(f"{type(exc).__name__}: {exc}".splitlines()[0])
    for pid in ids:
        typer.echo(pid)


@simulate_app.command("incoplax")
def simulate_incoplax_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8766,
    projects: Annotated[int, typer.Option(min=0, help="Number of simulated projects.")] = 100,
    seed: SeedOption = 7,
    max_limit: Annotated[int, typer.Option(min=0, help="Cap on limit (0: no cap), like a server that caps pages.")] = 0,
    list_opts: Annotated[bool, typer.Option("--list-opts", help="The list outputs opts (no detail requests needed).")] = False,
    latency_ms: LatencyOption = 0.0,
    fault_rate: FaultRateOption = 0.0,
    auth: AuthOption = Auth.bearer,
    token: Annotated[str, typer.Option(help="Token the simulator accepts (bearer).")] = "sim-token",
    username: Annotated[str, typer.Option(help="User the simulator accepts (basic).")] = "sim-user",
    password: Annotated[str, typer.Option(help="Password the simulator accepts (basic).")] = "sim-password",
) -> None:
    """Serve the Incoplax simulator (CRUD, LOOKUP, paging, masks, flat form) until interrupted."""
    from pwh.sources.incoplax.dataset import DatasetConfig, IncoplaxDataset
    from pwh.sources.incoplax.simulator import SimulatorOptions, serve_forever

    dataset = IncoplaxDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(auth=auth.value, token=token, username=username, password=password,
                               max_limit=max_limit or None, list_opts=list_opts, latency_ms=latency_ms,
                               fault_rate=fault_rate)
    typer.echo(f"Incoplax simulator: http://127.0.0.1:{port} ({projects} projects, seed {seed}, {auth} auth); "
               "Ctrl-C stops it.", err=False)
    sys.stdout.flush()
    serve_forever(dataset, options, host="127.0.0.1", port=port)


@sync_app.command("clarity")
def sync_clarity_command(
    base_url: Annotated[str, typer.Option(help="API base URL, e.g. https://lims.example.org/api/v2")],
    db: DbOption = Path("warehouse.duckdb"),
    account: Annotated[str, typer.Option(help="Name recorded with every row (the LIMS instance).")] = "default",
    name: Annotated[Optional[list[str]], typer.Option("--name", help="Only projects of this name (repeatable).")] = None,
    open_date: Annotated[Optional[str], typer.Option(help="Only projects opened since this date (YYYY-MM-DD).")] = None,
    udf: Annotated[Optional[list[str]], typer.Option(
        "--udf", help="UDF/UDT filter passed through, e.g. 'udf.Project Type=RNA-Seq' or 'udt.name=Plan' (repeatable).")] = None,
    full_refresh: Annotated[bool, typer.Option("--full-refresh", help="List and refetch every project; mark vanished ones deleted.")] = False,
    allow_mass_delete: AllowMassDeleteOption = False,
    since: Annotated[Optional[str], typer.Option(help="Override the incremental watermark (ISO 8601 with zone).")] = None,
    overlap: Annotated[float, typer.Option(min=0.0, help="Seconds the watermark is moved back for safety.")] = 300.0,
    concurrency: ConcurrencyOption = 8,
    batch_size: BatchSizeOption = 250,
    timeout: TimeoutOption = 60.0,
    quiet: QuietOption = False,
    prefect: PrefectOption = None,
) -> None:
    """Sync Clarity LIMS projects (UDFs typed, files, external ids) into the warehouse.
    Credentials: CLARITY_USERNAME and CLARITY_PASSWORD."""
    _quiet_prefect()
    from pwh.sources.clarity.client import (
        PASSWORD_VARIABLE,
        USERNAME_VARIABLE,
        filter_params,
        parse_timestamp,
    )

    check_base_url(base_url)
    check_config(None)
    check_secrets([USERNAME_VARIABLE, PASSWORD_VARIABLE])
    try:  # before importing Prefect: a typo fails in a blink
        filter_params(name or (), open_date, udf or ())
        if since:
            parse_timestamp(since)
    except ValueError as exc:
        fail(str(exc))
    sync_clarity = sync_module("clarity", prefect).sync_clarity

    summary = run_flow(lambda: sync_clarity(
        base_url=base_url, db_path=str(db), account=account,
        mode="full_refresh" if full_refresh else "incremental",
        names=name or None, open_date=open_date, udf=udf or None, since=since, overlap_s=overlap,
        concurrency=concurrency, batch_size=batch_size, timeout_s=timeout, allow_mass_delete=allow_mass_delete,
    ), show_progress=not quiet and sys.stderr.isatty())
    print_summary(summary)
    if summary.get("udf_parse_errors"):
        typer.echo(f"UDF values kept as text (not their declared type): {summary['udf_parse_errors']:,} "
                   "(see clarity.project_udfs.parse_error)")
    if summary["status"] == "partial":
        raise typer.Exit(3)


@simulate_app.command("clarity")
def simulate_clarity_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8767,
    projects: Annotated[int, typer.Option(min=0, help="Number of simulated projects.")] = 1200,
    seed: SeedOption = 7,
    page_size: Annotated[int, typer.Option(min=1, help="Project links a list page holds.")] = 500,
    latency_ms: LatencyOption = 0.0,
    fault_rate: FaultRateOption = 0.0,
    username: Annotated[str, typer.Option(help="User the simulator accepts.")] = "sim-user",
    password: Annotated[str, typer.Option(help="Password the simulator accepts.")] = "sim-password",
) -> None:
    """Serve the Clarity LIMS simulator (paged XML project list, project details) until interrupted."""
    from pwh.sources.clarity.dataset import ClarityDataset, DatasetConfig
    from pwh.sources.clarity.simulator import SimulatorOptions, serve_forever

    dataset = ClarityDataset(DatasetConfig(seed=seed, n_projects=projects))
    options = SimulatorOptions(username=username, password=password, page_size=page_size,
                               latency_ms=latency_ms, fault_rate=fault_rate)
    typer.echo(f"Clarity LIMS simulator: http://127.0.0.1:{port}/api/v2 ({projects} projects, {page_size} a page, "
               f"seed {seed}); user {username!r}. Ctrl-C stops it.")
    sys.stdout.flush()
    serve_forever(dataset, options, host="127.0.0.1", port=port)


@app.command()
def sql(
    db: DbOption = Path("warehouse.duckdb"),
    command: Annotated[Optional[str], typer.Option("-c", "--command", help="Run this one query, print every row, exit.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=0, help="With -c: at most N rows.")] = None,
    output_format: Annotated[SqlFormat, typer.Option("--format", help="With -c: how to write the rows (parquet needs --output).")] = SqlFormat.table,
    output: Annotated[Optional[Path], typer.Option(help="With -c: write to this file (owner-only, 0600) instead of stdout.")] = None,
) -> None:
    """SQL on the readers' replica (read-only; never blocks a sync): a prompt, or one query with -c."""
    import duckdb

    from pwh.sql import UsageError, repl, run_one

    if command is None and (limit is not None or output is not None or output_format is not SqlFormat.table):
        fail("--limit, --format and --output apply to one query: add -c 'SELECT …'")
    try:
        if command is not None:
            written = run_one(db, command, fmt=output_format, limit=limit, output=output)
            if written is not None:
                typer.echo(f"{output_format.value} written to {output} ({written:,} bytes)", err=True)
        else:
            repl(db)
    except (UsageError, FileNotFoundError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    except duckdb.Error as exc:
        fail(str(exc).splitlines()[0])


@app.command()
def status(
    db: DbOption = Path("warehouse.duckdb"),
    primary: Annotated[bool, typer.Option("--primary", help="Read the primary file, not its replica (fails while a sync holds it).")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="Schedules file (default ./pwh.toml if present).")] = None,
    max_age: Annotated[Optional[str], typer.Option("--max-age", help="Allowed data age for every account, e.g. 90m, 6h, 2d (default: 2 × its schedule's interval, else 24h).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document (shape in docs/operations.md).")] = False,
) -> None:
    """Last run, data age, failed projects and rejected rows per source and account.
    Exit 0 all fine, 5 a last run failing, 6 data stale, 7 both (for cron and monitoring)."""
    from pwh.status import StatusError, check

    try:
        text, code = check(db, primary=primary, config=config, max_age=max_age, as_json=as_json)
    except StatusError as exc:
        fail(str(exc))
    typer.echo(text)
    raise typer.Exit(code)


@app.command()
def publish(db: DbOption = Path("warehouse.duckdb")) -> None:
    """Refresh the marts and comments and publish the readers' replica now (every sync does this itself)."""
    from pwh.warehouse.connection import WarehouseBusyError
    from pwh.warehouse.integrity import WarehouseDamagedError
    from pwh.warehouse.lock import open_writer
    from pwh.warehouse.migrations import migrate
    from pwh.warehouse.replica import publish_replica, refresh_analyst_layer

    if not db.exists():
        fail(f"no warehouse at {db}")
    try:
        with open_writer(db) as con:
            migrate(con)
            refresh_analyst_layer(con)
            published = publish_replica(con, db)
    except (WarehouseBusyError, WarehouseDamagedError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"publishing the replica failed: {exc}; the replica was left as it was")
    typer.echo(f"replica {published.path} published ({published.bytes / 1e6:,.1f} MB in {published.seconds:.2f} s)")


@app.command()
def restore(db: DbOption = Path("warehouse.duckdb")) -> None:
    """Replace a damaged warehouse file (one that does not open or read) by a copy of its readers' replica."""
    from pwh.warehouse.connection import WarehouseBusyError
    from pwh.warehouse.integrity import WarehouseDamagedError
    from pwh.warehouse.replica import NothingToRestoreError, restore_from_replica

    try:
        replica, moved = restore_from_replica(db)
    except (FileNotFoundError, NothingToRestoreError, WarehouseBusyError, WarehouseDamagedError) as exc:
        fail(str(exc))
    kept = f"; the damaged files are kept as {', '.join(str(p) for p in moved)}" if moved else ""
    typer.echo(f"{db} restored from {replica}{kept}. The next sync of each source fetches what changed since.")


@app.command()
def dashboard(
    db: DbOption = Path("warehouse.duckdb"),
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 8501,
    refresh: Annotated[int, typer.Option(min=0, help="Reload the page every N seconds (0: never).")] = 60,
) -> None:
    """Serve the dashboard over the readers' replica on http://127.0.0.1:PORT until interrupted."""
    from pwh.dashboard import PortInUseError, serve
    from pwh.warehouse.replica import replica_path

    if not replica_path(db).exists() and not str(db).endswith(".replica.duckdb"):
        fail(f"no readers' replica at {replica_path(db)}: run a sync (or `pwh publish --db {db}`) first")

    def listening() -> None:
        typer.echo(f"dashboard on http://127.0.0.1:{port}/ over {replica_path(db)}; Ctrl-C stops it.")
        sys.stdout.flush()

    try:
        serve(db, port=port, refresh_s=refresh or None, on_listening=listening)
    except PortInUseError as exc:
        fail(str(exc))


@app.command()
def report(
    db: DbOption = Path("warehouse.duckdb"),
    out: Annotated[Path, typer.Option(help="HTML file to write (self-contained: renders offline).")] = Path("report.html"),
) -> None:
    """Write the dashboard as one self-contained HTML file."""
    from pwh.dashboard import write_report

    try:
        s = write_report(db, out)
    except FileNotFoundError as exc:
        fail(str(exc))
    typer.echo(f"report written to {out} ({out.stat().st_size / 1e6:.1f} MB): "
               f"{s.projects_current:,} current projects, {s.rejected_total:,} rejected rows, {len(s.runs)} recent runs")


@sync_app.command("openproject")
def sync_openproject_command(
    base_url: Annotated[str, typer.Option(help="Instance root, e.g. https://openproject.example.org (the client adds /api/v3).")],
    db: DbOption = Path("warehouse.duckdb"),
    account: Annotated[str, typer.Option(help="Name recorded with every row (the instance).")] = "default",
    full_refresh: FullRefreshOption = False,
    allow_mass_delete: AllowMassDeleteOption = False,
    page_size: Annotated[int, typer.Option(min=1, help="pageSize of every paged collection (the server may cap it).")] = 100,
    concurrency: ConcurrencyOption = 16,
    batch_size: BatchSizeOption = 100,
    timeout: TimeoutOption = 30.0,
    probe_work_packages: Annotated[bool, typer.Option(help="Incremental runs also check each project's work packages (one small request a project): a project's updatedAt does not move when only they change.")] = True,
    api_key: Annotated[Optional[str], typer.Option(help="Overrides OPENPROJECT_API_KEY (prefer the variable: flags show in `ps`).")] = None,
    filters: Annotated[Optional[str], typer.Option(help='The project list\'s filters as the API takes them (JSON), e.g. \'[{"active":{"operator":"=","values":["t"]}}]\'. Projects left out are kept as they are, never marked deleted.')] = None,
    under: Annotated[Optional[int], typer.Option(min=1, help="Only the projects below this project id (its subtree, itself excluded): the filter ancestor = ID, added to --filters.")] = None,
    quiet: QuietOption = False,
    prefect: PrefectOption = None,
) -> None:
    """Sync every OpenProject project with its work packages, versions, categories, types, memberships and custom values, and the instance's custom field definitions, statuses and users."""
    _quiet_prefect()
    from pwh.sources.openproject.client import TOKEN_VARIABLE, FiltersError, check_filters, subtree_filters

    try:
        filters = subtree_filters(check_filters(filters), under)
    except FiltersError as exc:
        fail(f"--filters: {exc}")
    check_base_url(base_url)
    check_config(None)
    if api_key:
        os.environ[TOKEN_VARIABLE] = api_key  # the flow reads it from its environment, never as a parameter
    check_secrets([TOKEN_VARIABLE], flags="--api-key")
    sync_openproject = sync_module("openproject", prefect).sync_openproject

    summary = run_flow(lambda: sync_openproject(
        base_url=base_url, db_path=str(db), account=account,
        mode="full_refresh" if full_refresh else "incremental", page_size=page_size,
        concurrency=concurrency, batch_size=batch_size, timeout_s=timeout, probe_work_packages=probe_work_packages,
        allow_mass_delete=allow_mass_delete, filters=filters,
    ), show_progress=not quiet and sys.stderr.isatty())
    print_summary(summary)
    if summary["status"] == "partial":
        raise typer.Exit(3)


@simulate_app.command("openproject")
def simulate_openproject_command(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8768,
    projects: Annotated[int, typer.Option(min=0, help="Number of simulated projects.")] = 100,
    seed: SeedOption = 7,
    max_work_packages: Annotated[int, typer.Option(min=0, help="Most work packages of a project.")] = 23,
    max_page_size: Annotated[int, typer.Option(min=1, help="Largest pageSize served.")] = 100,
    latency_ms: LatencyOption = 0.0,
    fault_rate: FaultRateOption = 0.0,
    api_key: Annotated[str, typer.Option(help="API key the simulator accepts (basic auth apikey:<key>).")] = "sim-api-key",
) -> None:
    """Serve the OpenProject API v3 simulator (HAL, paging, hidden parents, 404s) until interrupted."""
    from pwh.sources.openproject.dataset import DatasetConfig, OpenProjectDataset
    from pwh.sources.openproject.simulator import SimulatorOptions, serve_forever

    dataset = OpenProjectDataset(DatasetConfig(seed=seed, n_projects=projects, max_work_packages=max_work_packages))
    options = SimulatorOptions(api_key=api_key, max_page_size=max_page_size, latency_ms=latency_ms, fault_rate=fault_rate)
    typer.echo(f"OpenProject simulator: http://127.0.0.1:{port} ({projects} projects, seed {seed}); "
               f"OPENPROJECT_API_KEY={api_key}. Ctrl-C stops it.")
    serve_forever(dataset, options, host="127.0.0.1", port=port)


def main() -> None:
    """The ``pwh`` executable: the commands above, run with the process settings of
    :mod:`pwh.process` (fewer collector passes, no interpreter teardown at exit)."""
    tune_collector()
    # Every file any command creates (warehouse, replica, key, report, Prefect's) is owner-only.
    os.umask(0o077)
    exit_without_teardown(run_app())


def run_app() -> object:
    """Run the commands; every failure is one line on stderr (pwh.failures), the exit
    status is returned."""
    # click's UsageError and ClickException, whichever click typer uses (it vendors one).
    usage_error = typer.BadParameter.__mro__[1]
    click_exception = usage_error.__mro__[1]
    try:
        code = app(standalone_mode=False)  # click's errors come here, not to its boxed output
        if code == 130 and not _failure_printed:
            # typer turns a Ctrl-C outside a sync into a silent exit 130: say it in one line.
            typer.echo("pwh: interrupted", err=True)
        return code
    except SystemExit as done:
        return done.code
    except usage_error as exc:
        if exc.__class__.__name__ != "NoArgsIsHelpError":  # that one: typer has printed the help
            ctx = getattr(exc, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"pwh: error: {exc.format_message()}{where}", err=True)
        return exc.exit_code
    except click_exception as exc:
        typer.echo(f"pwh: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("pwh: aborted", err=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        typer.echo(f"pwh: error: {describe_failure(exc)}", err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    main()
