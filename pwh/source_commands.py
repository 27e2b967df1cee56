"""`pwh sync <source>` and `pwh simulate <source>` for every source of the registry
(pwh/flows/registry.py): the options every sync takes, then the source's own, its
credential flags and, for a source with configured accounts, those of pwh.toml.

A command's parameters are built from the declaration (typer reads them from the
function's signature), so a new source gets its commands without a line here. Checks run
before anything slow: the base URL, pwh.toml, credentials, streams and the source's own
options, each failing in one line that names the option (pwh/validate.py)."""

from __future__ import annotations

import inspect
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from pwh.flows.registry import SOURCES, Option, Source, resolve

KEYWORD = inspect.Parameter.KEYWORD_ONLY
_TYPES: dict[str, Any] = {"str": Optional[str], "int": int, "float": float, "bool": bool,
                          "list": Optional[list[str]]}


def _parameter(name: str, annotation: Any, default: Any, *decls: str, **info: Any) -> inspect.Parameter:
    return inspect.Parameter(name, KEYWORD, default=default,
                             annotation=Annotated[annotation, typer.Option(*decls, **info)])


def _option_parameter(source: Source, option: Option) -> inspect.Parameter:
    """The typer parameter of a declared option (its value reaches the command by its name)."""
    info: dict[str, Any] = {"help": option.help}
    if option.minimum is not None:
        info["min"] = option.minimum
    if option.choices:
        choices = Enum(f"{source.name}_{option.parameter}", {c: c for c in option.choices}, type=str)  # type: ignore[misc]
        if option.kind == "list":  # a repeatable choice
            return _parameter(option.parameter, Optional[list[choices]], None, option.cli_flag, **info)
        return _parameter(option.parameter, choices, choices(option.default), option.cli_flag, **info)
    if option.kind == "bool":
        flag = option.cli_flag
        decl = f"{flag}/--no-{flag.removeprefix('--')}" if option.default else flag
        return _parameter(option.parameter, bool, option.default, decl, **info)
    return _parameter(option.parameter, _TYPES[option.kind], option.default, option.cli_flag, **info)


def _option_value(option: Option, given: Any) -> Any:
    """The flow parameter's value for what the option was given (converted, checked)."""
    value = given.value if isinstance(given, Enum) else given
    if isinstance(value, list):
        value = [item.value if isinstance(item, Enum) else item for item in value]
    if option.kind == "list" and not value:
        value = None
    if option.convert is not None:
        from pwh.cli import fail

        try:
            value = resolve(option.convert)(value)
        except ValueError as exc:
            fail(_naming_the_option(option.cli_flag, str(exc)))
    return value


def _naming_the_option(flag: str, message: str) -> str:
    """The option's error as one line that starts with the option."""
    if message.startswith(flag):
        return message
    if message.startswith(f"{flag.removeprefix('--')}:"):
        return f"--{message}"
    return f"{flag}: {message}"


def _common_sync_parameters(source: Source) -> list[inspect.Parameter]:
    url_help = f"API base URL, e.g. {source.base_url_example}" + (f" ({source.base_url_help})." if source.base_url_help
                                                                 else ".")
    required = source.configured_accounts is None
    return [
        _parameter("base_url", str if required else Optional[str], ... if required else None, "--base-url",
                   help=url_help),
        _parameter("db", Path, Path("warehouse.duckdb"), "--db", help="DuckDB warehouse file."),
        _parameter("account", Optional[str], None, "--account",
                   help="Name recorded with every row (default 'default')" + (
                       "; without --base-url: the pwh.toml account to sync." if not required else ".")),
        _parameter("full_refresh", bool, False, "--full-refresh", help="Refetch every project and reconcile."),
        _parameter("allow_mass_delete", bool, False, "--allow-mass-delete",
                   help="Confirm a run that marks more than a quarter of the projects deleted "
                        "(refused otherwise: an empty or short list looks the same)."),
        _parameter("concurrency", int, source.concurrency, "--concurrency", min=1, max=512, help="Requests in flight."),
        _parameter("batch_size", int, source.batch_size, "--batch-size", min=1, help="Projects per load transaction."),
        _parameter("timeout", float, source.timeout_s, "--timeout", min=0.001, help="Per-request timeout, seconds."),
        _parameter("max_response_mb", Optional[float], None, "--max-response-mb", min=0.001,
                   help="Largest answer accepted, MiB (default: PWH_MAX_RESPONSE_BYTES, else 64)."),
        _parameter("select", Optional[list[str]], None, "--select",
                   help="Fetch only these streams (comma-separated or repeated; `pwh sources` lists them)."),
        _parameter("exclude", Optional[list[str]], None, "--exclude",
                   help="Do not fetch these streams: no request is made for them and their rows are kept."),
    ]


def _trailing_sync_parameters(source: Source) -> list[inspect.Parameter]:
    parameters = [
        _parameter(flag.flag.removeprefix("--").replace("-", "_"), Optional[str], None, flag.flag,
                   help=f"Overrides {flag.variable} (prefer the variable: flags show in `ps`).")
        for flag in source.credential_flags
    ]
    if source.sharded is not None:
        parameters += [
            _parameter("shards", Optional[int], None, "--shards", min=1,
                       help="Sync as shards: each account split into this many parts by project id, each part staged "
                            "by its own run, then loaded here, each once (docs/scale.md)."),
            _parameter("staging", Optional[Path], None, "--staging",
                       help="With --shards: the folder shards stage into (default .pwh/staging beside the warehouse)."),
            _parameter("shard_deployment", Optional[str], None, "--shard-deployment",
                       help="With --shards: the deployment of the shard flow whose work pool runs the shards (needs "
                            "a Prefect API); without it they run in this process."),
        ]
    if source.configured_accounts is not None:
        parameters += [
            _parameter("all_accounts", bool, False, "--all-accounts",
                       help="Sync every account of pwh.toml (the default without --base-url)."),
            _parameter("config", Optional[Path], None, "--config", help="Configuration file (default ./pwh.toml)."),
        ]
    return parameters + [
        _parameter("quiet", bool, False, "--quiet", help="No progress bar."),
        _parameter("prefect", Optional[bool], None, "--prefect/--no-prefect",
                   help="Run as a Prefect flow run (needs a Prefect API: PREFECT_API_URL or the active profile), "
                        "or in this process alone. Default: a flow run when an API is configured."),
    ]


def sync_command(source: Source):
    """The `pwh sync <source>` command function."""

    def command(**given: Any) -> None:
        from pwh.cli import fail, print_summary, quiet_prefect, run_flow, sync_flow
        from pwh.validate import check_base_url, check_config, check_secrets, check_streams

        quiet_prefect()
        check_streams(source.name, given["select"], given["exclude"])
        options = {o.parameter: _option_value(o, given[o.parameter]) for o in source.options}
        max_mb = given["max_response_mb"]
        common = dict(
            db_path=str(given["db"]), mode="full_refresh" if given["full_refresh"] else "incremental",
            concurrency=given["concurrency"], batch_size=given["batch_size"], timeout_s=given["timeout"],
            max_response_bytes=None if max_mb is None else int(max_mb * 1024 * 1024),
            allow_mass_delete=given["allow_mass_delete"], select=given["select"], exclude=given["exclude"],
            **options,
        )
        overrides = {flag: given[flag.flag.removeprefix("--").replace("-", "_")] for flag in source.credential_flags}
        base_url = given["base_url"]
        if source.sharded is not None and (given["staging"] or given["shard_deployment"]) and not given["shards"]:
            fail("--staging and --shard-deployment apply with --shards only")
        if source.sharded is not None and given["shards"]:
            resolve(source.sharded)(
                source, shards=given["shards"], staging=given["staging"], shard_deployment=given["shard_deployment"],
                base_url=base_url, config=given.get("config"), account=given["account"], quiet=given["quiet"],
                prefect=given["prefect"], overrides={f.variable: v for f, v in overrides.items()}, **common)
            return
        if base_url is None:  # only a source with configured accounts lets it out
            if any(overrides.values()):
                fail(f"{', '.join(f.flag for f in source.credential_flags)} apply with --base-url only; configured "
                     "accounts renew their tokens themselves (see docs/accounts.md)")
            resolve(source.configured_accounts or "")(
                source, config=given["config"], account=given["account"], all_accounts=given["all_accounts"],
                quiet=given["quiet"], prefect=given["prefect"], **common)
            return
        if given.get("all_accounts"):
            fail("--all-accounts syncs the accounts of pwh.toml: drop --base-url")
        check_base_url(base_url)
        check_config(given.get("config"))
        # Secrets reach the flow through its environment, never as (stored) flow parameters.
        for flag, value in overrides.items():
            if value:
                os.environ[flag.variable] = value
        check_secrets(source.secrets_for(options), flags=", ".join(f.flag for f in source.credential_flags))
        sync = sync_flow(source.name, given["prefect"])
        summary = run_flow(lambda: sync(base_url=base_url, account=given["account"] or "default", **common),
                           show_progress=not given["quiet"] and sys.stderr.isatty())
        print_summary(summary, source)
        if summary["status"] == "partial":
            raise typer.Exit(3)

    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        _common_sync_parameters(source)
        + [_option_parameter(source, option) for option in source.options]
        + _trailing_sync_parameters(source)
    )
    command.__doc__ = f"Sync {source.title}: {source.description[0].lower()}{source.description[1:]}"
    return command


def simulate_command(source: Source):
    """The `pwh simulate <source>` command function."""

    def command(**given: Any) -> None:
        values = {o.parameter: (given[o.parameter].value if isinstance(given[o.parameter], Enum)
                                else given[o.parameter]) for o in source.simulator_options}
        resolve(source.serve)(port=given["port"], projects=given["projects"], seed=given["seed"],
                              latency_ms=given["latency_ms"], fault_rate=given["fault_rate"], **values)

    command.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        _parameter("port", int, source.simulator_port, "--port", help="Port on 127.0.0.1."),
        _parameter("projects", int, 100, "--projects", min=0, help="Number of simulated projects."),
        _parameter("seed", int, 7, "--seed", help="Seed of the generated data."),
        _parameter("latency_ms", float, 0.0, "--latency-ms", help="Added to every answer."),
        _parameter("fault_rate", float, 0.0, "--fault-rate", min=0.0, max=1.0,
                   help="Share of requests failing once."),
        *(_option_parameter(source, option) for option in source.simulator_options),
    ])
    command.__doc__ = f"Serve the {source.title} simulator on 127.0.0.1 until interrupted."
    return command


def add_source_commands(sync_app: typer.Typer, simulate_app: typer.Typer) -> None:
    for source in SOURCES:
        sync_app.command(source.name)(sync_command(source))
        simulate_app.command(source.name)(simulate_command(source))
