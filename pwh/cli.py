"""``pwh``: the command line of project-warehouse."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Optional, Protocol, cast

import typer

from pwh.choices import Auth, DemoSource, LookupKey
from pwh.errors import PwhError
from pwh.failures import describe_failure, describe_unexpected, enable_debug, keep_run_logs_off_console
from pwh.formats import Format as SqlFormat
from pwh.process import exit_without_teardown, tune_collector
from pwh.source_commands import add_source_commands
from pwh.validate import check_base_url, check_environment, check_secrets

# Shell completion (commands, options, choices): `pwh --install-completion`.
app = typer.Typer(no_args_is_help=True, help="project-warehouse: project APIs → DuckDB.")
sync_app = typer.Typer(no_args_is_help=True, help="Sync a source into the warehouse.")
simulate_app = typer.Typer(no_args_is_help=True, help="Serve a built-in API simulator on loopback.")
app.add_typer(sync_app, name="sync")
app.add_typer(simulate_app, name="simulate")

DbOption = Annotated[Path, typer.Option("--db", help="DuckDB warehouse file.")]


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
    check_environment()  # a malformed PWH_* variable fails here, before anything slow


# Whether a command has printed its one-line failure (run_app then adds nothing).
_failure_printed = False


def fail(message: str, code: int = 1) -> None:
    global _failure_printed
    typer.echo(f"pwh: error: {message}", err=True)
    _failure_printed = True
    raise typer.Exit(code)


def quiet_prefect() -> None:
    """Our own one-line errors and progress bar replace Prefect's console tracebacks;
    Prefect's run records still get everything."""
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # Without PREFECT_API_URL, Prefect starts a temporary server per run; its default 20 s
    # start-up wait is not enough on a busy 2-core machine (measured: runs failed).
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


def sync_flow(source: str, prefect: Optional[bool], function: Optional[str] = None):
    """The sync function (or the source's other flow ``function``) a hand run calls: its
    Prefect flow (pwh/flows/prefect_flows.py) when a Prefect API is configured (or --prefect), else the very
    same functions run in this process: no Prefect import and no temporary Prefect server
    (10-30 s) on every run (docs/operations.md). ``--prefect`` without an API is refused:
    Prefect's temporary server would throw the run's records away when it ends, and a
    killed ``pwh`` would leave that server behind."""

    from pwh.flows.host import configured_api_url
    from pwh.flows.registry import source as declared

    configured = configured_api_url() is not None
    if prefect and not configured:
        fail("--prefect records the run on a Prefect server, and none is configured: set PREFECT_API_URL "
             "(start one with `prefect server start`), or drop --prefect")
    declaration = declared(source)
    return declaration.flow_function(function or declaration.flow, configured if prefect is None else prefect)


async def _stoppable(coro_factory, stopped_by: list[int]):
    """Run the sync as this task; SIGINT (Ctrl-C, sent to the whole process group) and
    SIGTERM cancel it: the engine stops fetching, lets a load in flight commit, records
    the run ``interrupted`` and the command exits 128 + the signal (130, 143)."""
    task = asyncio.current_task()
    assert task is not None  # a coroutine runs in a task
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
    from pwh.flows import progress as progress_hook

    shown = nullcontext()
    if show_progress:
        bar = _progress_bar()
        task_id = bar.add_task("syncing", total=None, requests=0, retries=0)

        def listener(p) -> None:
            bar.update(task_id, total=p.total, completed=p.done, requests=p.requests, retries=p.retries)

        progress_hook.set_listener(listener)
        shown = bar
    stopped_by: list[int] = []
    try:
        with keep_run_logs_off_console(), shown:
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


def _progress_bar():
    """The sync's progress bar (rich is imported only when one is shown: --quiet and runs
    without a terminal skip its ~25 ms)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("projects · {task.fields[requests]} requests · {task.fields[retries]} retries"),
        TimeElapsedColumn(), transient=False, console=None,
    )


def print_summary(summary: dict, source=None) -> None:
    """A sync's summary; ``source`` (its registry declaration) adds the counts it notes."""
    rows = ", ".join(f"{table} {count:,}" for table, count in sorted(summary["rows_loaded"].items()))
    typer.echo(
        f"{summary['status']}: {summary['units_seen']:,} projects listed, "
        f"{summary['units_new']:,} new, {summary['units_changed']:,} changed, "
        f"{summary['units_unchanged']:,} unchanged, {summary['units_deleted']:,} deleted, "
        f"{summary['units_failed']:,} failed; {summary['requests']:,} requests, {summary['retries']:,} retries"
    )
    typer.echo(f"rows loaded: {rows or 'none'}; rejected records: {summary['rows_rejected']:,}"
               + (" (see pipeline.rejected_records)" if summary["rows_rejected"] else ""))
    for stream, answer in summary.get("skipped_streams", {}).items():
        typer.echo(f"stream {stream} answered {answer}: skipped this run, its rows kept (the next run tries again)")
    for key, line in source.summary_notes if source is not None else ():
        if summary.get(key):
            typer.echo(line.format(count=summary[key]))
    if summary["failed_units"]:
        typer.echo(f"failed projects (retried next run): {', '.join(summary['failed_units'][:10])}"
                   + (" …" if len(summary["failed_units"]) > 10 else ""))


@app.command()
def demo(
    db: DbOption = Path("warehouse.duckdb"),
    projects: Annotated[int, typer.Option(min=1, help="Simulated projects.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the simulated data.")] = 7,
    source: Annotated[DemoSource, typer.Option(help="Which simulated sources to sync.")] = DemoSource("rayteams"),
) -> None:
    """Simulator on a free loopback port → full sync into a local DuckDB file → summary."""
    quiet_prefect()
    from pwh.demo import run_demo

    run_demo(db=db, projects=projects, seed=seed, run_flow=run_flow, print_summary=print_summary,
             sync_function=lambda declared: sync_flow(declared.name, None),
             source_name=source.value)


@app.command()
def sources() -> None:
    """List the sources and their streams (what --select and --exclude take)."""
    from pwh.flows.registry import SOURCES

    for declared in SOURCES:
        typer.echo(f"{declared.name}: {declared.title}. {declared.description}")
        typer.echo(f"  credentials: {', '.join(declared.secrets)}; flow {declared.flow_name}; "
                   f"e.g. --base-url {declared.base_url_example}")
        for stream in declared.streams:
            kind = "per project" if stream.per_unit else "per account"
            typer.echo(f"  stream {stream.name:<14} {kind:<12} → {', '.join(stream.tables)}: {stream.description}")
        if not declared.streams:
            typer.echo("  (no streams to choose: every request serves the project rows)")


@app.command()
def docs(
    write: Annotated[Optional[Path], typer.Option(
        "--write", help="Rewrite the generated references in this docs folder (tables.md, the marts of analytics.md) instead of printing.")] = None,
) -> None:
    """Print the warehouse's table reference (every table and column) as Markdown."""
    from pwh.warehouse.catalog import markdown_reference, with_marts_reference, with_reference

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
    quiet_prefect()
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


@incoplax_app.command("lookup")
def incoplax_lookup_command(
    key: Annotated[str, typer.Argument(help="The project code (or id) to look up.")],
    base_url: Annotated[str, typer.Option(help="Server root (the client adds /rest/v1/domain/projects).")],
    by: Annotated[LookupKey, typer.Option(help="Which key field must match.")] = LookupKey.code,
    auth: AuthOption = Auth.bearer,
    timeout: Annotated[float, typer.Option(min=0.001, help="Per-request timeout, seconds.")] = 30.0,
) -> None:
    """LOOKUP a project by code or id; prints the matching ids, one per line."""
    _check_incoplax(base_url, auth)
    from pwh.flows.incoplax_sync import read_credentials
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
    for pid in ids:
        typer.echo(pid)


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


# `pwh sync <source>` and `pwh simulate <source>`, one of each per source of the registry.
add_source_commands(sync_app, simulate_app)


def main() -> None:
    """The ``pwh`` executable: the commands above, run with the process settings of
    :mod:`pwh.process` (fewer collector passes, no interpreter teardown at exit)."""
    tune_collector()
    # Every file any command creates (warehouse, replica, key, report, Prefect's) is owner-only.
    os.umask(0o077)
    exit_without_teardown(run_app())


class _ClickError(Protocol):
    """What is read of click's UsageError and ClickException (classes typer does not export)."""

    exit_code: int

    def format_message(self) -> str: ...


def run_app() -> object:
    """Run the commands; every failure is one line on stderr (pwh.failures), the exit
    status is returned."""
    # click's UsageError and ClickException, whichever click typer uses (it vendors one).
    usage_error: type[Exception] = typer.BadParameter.__mro__[1]
    click_exception: type[Exception] = usage_error.__mro__[1]
    try:
        code = app(standalone_mode=False)  # click's errors come here, not to its boxed output
        if code == 130 and not _failure_printed:
            # typer turns a Ctrl-C outside a sync into a silent exit 130: say it in one line.
            typer.echo("pwh: interrupted", err=True)
        return code
    except SystemExit as done:
        return done.code
    except usage_error as exc:
        usage = cast(_ClickError, exc)  # found above, so typed as Exception only
        if exc.__class__.__name__ != "NoArgsIsHelpError":  # that one: typer has printed the help
            ctx = getattr(exc, "ctx", None)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            typer.echo(f"pwh: error: {usage.format_message()}{where}", err=True)
        return usage.exit_code
    except click_exception as exc:
        click_error = cast(_ClickError, exc)
        typer.echo(f"pwh: error: {click_error.format_message()}", err=True)
        return click_error.exit_code
    except typer.Abort:
        typer.echo("pwh: aborted", err=True)
        return 1
    except PwhError as exc:  # raised on purpose: what to fix, in one line
        typer.echo(f"pwh: error: {describe_failure(exc)}", err=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug or the environment: one line, its traceback in the log file
        typer.echo(f"pwh: error: {describe_unexpected(exc)}", err=True)
        return 1


if __name__ == "__main__":  # pragma: no cover
    main()
