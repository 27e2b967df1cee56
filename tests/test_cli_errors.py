"""Errors as a user meets them: real `pwh` processes, each failing in exactly one line on
stderr that names what to fix, never a traceback unless --debug. Mistakes in the command
line, the environment and pwh.toml are found before Prefect is imported or the warehouse
opened (checked by the modules the process had loaded when it exited, not by a clock);
answers from the network (a closed port, a wrong path, a name that does not resolve) are
reported with the address to check."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web

from pwh.choices import Auth, DemoSource
from pwh.demo import DEMO_SOURCES
from pwh.flows.incoplax_sync import LISTINGS
from pwh.flows.rayteams_sync import FILE_TYPES
from pwh.flows.registry import SOURCES
from pwh.simulators.simulation import HTML_ERROR_PAGE, serving
from pwh.sources.incoplax.client import AUTH_SCHEMES
from pwh.sources.rayteams.client import STRATEGIES

ROOT = Path(__file__).resolve().parent.parent
# Runs `pwh` (pwh.cli.main) and, at exit, writes which heavy modules it had imported.
PROBE = textwrap.dedent("""
    import atexit, json, os, sys
    def report():
        with open(os.environ["PWH_TEST_MODULES"], "w") as out:
            json.dump(sorted({m.split(".")[0] for m in sys.modules} & {"prefect", "duckdb"}), out)
    atexit.register(report)
    sys.argv = ["pwh", *sys.argv[1:]]
    from pwh.cli import main
    main()
""")
SECRETS = ("RAYTEAMS_TOKEN", "RAYTEAMS_CLIENT_ID", "OPENPROJECT_API_KEY", "CLARITY_USERNAME", "CLARITY_PASSWORD",
           "INCOPLAX_TOKEN", "INCOPLAX_USERNAME", "INCOPLAX_PASSWORD", "PREFECT_API_URL", "PREFECT_PROFILE")
ALL_SECRETS = {"RAYTEAMS_TOKEN": "tok-cli-errors-5e1f", "RAYTEAMS_CLIENT_ID": "cid", "OPENPROJECT_API_KEY": "k",
               "CLARITY_USERNAME": "u", "CLARITY_PASSWORD": "p", "INCOPLAX_TOKEN": "t"}


class Run:
    def __init__(self, done: subprocess.CompletedProcess, modules: list[str]):
        self.code, self.out, self.err, self.modules = done.returncode, done.stdout, done.stderr, modules

    @property
    def line(self) -> str:
        """The one line on stderr (asserting there is exactly one, and no traceback)."""
        lines = self.err.splitlines()
        assert len(lines) == 1 and "Traceback" not in self.err, self.err
        return lines[0]


@pytest.fixture
def pwh(tmp_path):
    """Run `pwh` in an empty folder with a clean environment: its own home (no Prefect
    profile), no credentials unless given, the log file in the test's folder."""
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Run:
        environment = {k: v for k, v in os.environ.items() if k not in SECRETS}
        environment.update(HOME=str(home), PREFECT_HOME=str(home / ".prefect"), PWH_LOG_FILE=str(tmp_path / "log" / "pwh.log"),
                           PWH_TEST_MODULES=str(tmp_path / "modules.json"), PYTHONPATH=str(ROOT), COLUMNS="200")
        environment.update(env or {})
        done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                              env=environment, cwd=tmp_path, timeout=timeout)
        return Run(done, json.loads((tmp_path / "modules.json").read_text()))

    return run


DB = ["--db", "w.duckdb"]
SYNCS = {
    "rayteams": ["sync", "rayteams", *DB],
    "openproject": ["sync", "openproject", *DB],
    "clarity": ["sync", "clarity", *DB],
    "incoplax-bearer": ["sync", "incoplax", *DB],
    "incoplax-basic": ["sync", "incoplax", "--auth", "basic", *DB],
    "incoplax-lookup": ["incoplax", "lookup", "P-1"],
}
MISSING = {
    "rayteams": "RAYTEAMS_TOKEN and RAYTEAMS_CLIENT_ID are not set: export them (or pass --token, --client-id), "
                "or (with a Prefect server) create Secret blocks named 'rayteams-token', 'rayteams-client-id'",
    "openproject": "OPENPROJECT_API_KEY is not set: export it (or pass --api-key), "
                   "or (with a Prefect server) create a Secret block named 'openproject-api-key'",
    "clarity": "CLARITY_USERNAME and CLARITY_PASSWORD are not set: export them, "
               "or (with a Prefect server) create Secret blocks named 'clarity-username', 'clarity-password'",
    "incoplax-bearer": "INCOPLAX_TOKEN is not set: export it, "
                       "or (with a Prefect server) create a Secret block named 'incoplax-token'",
    "incoplax-basic": "INCOPLAX_USERNAME and INCOPLAX_PASSWORD are not set: export them, "
                      "or (with a Prefect server) create Secret blocks named 'incoplax-username', 'incoplax-password'",
}
MISSING["incoplax-lookup"] = MISSING["incoplax-bearer"]


def assert_nothing_slow_started(run: Run, tmp_path: Path) -> None:
    assert run.modules == [], f"imported before failing: {run.modules}"
    assert not (tmp_path / "w.duckdb").exists()


@pytest.mark.parametrize("command", sorted(SYNCS))
def test_missing_credentials_fail_in_one_line_before_prefect(pwh, tmp_path, command):
    run = pwh(*SYNCS[command], "--base-url", "https://api.example.org/v1.0")
    assert run.code == 1 and run.line == f"pwh: error: {MISSING[command]}"
    assert_nothing_slow_started(run, tmp_path)


def test_configured_accounts_without_their_secrets_fail_before_prefect(pwh, tmp_path):
    (tmp_path / "pwh.toml").write_text('[rayteams.accounts.lab-seoul]\nregion = "ap-northeast-2"\n'
                                       '[rayteams.accounts.fra]\nregion = "eu-central-1"\nclient_id = "cid-fra"\n')
    run = pwh("sync", "rayteams", *DB)
    assert run.code == 1 and run.line == (
        "pwh: error: RAYTEAMS_LAB_SEOUL_CLIENT_ID, RAYTEAMS_LAB_SEOUL_CLIENT_SECRET and RAYTEAMS_LAB_SEOUL_REFRESH_TOKEN "
        "are not set: export them, or (with a Prefect server) create Secret blocks named "
        "'rayteams-lab-seoul-client-id', 'rayteams-lab-seoul-client-secret', 'rayteams-lab-seoul-refresh-token'")
    assert_nothing_slow_started(run, tmp_path)
    only = pwh("sync", "rayteams", "--account", "fra", *DB)
    assert only.code == 1 and only.line.startswith("pwh: error: RAYTEAMS_FRA_CLIENT_SECRET and RAYTEAMS_FRA_REFRESH_TOKEN")


def test_a_token_given_by_flag_counts_and_the_other_is_still_named(pwh, tmp_path):
    run = pwh(*SYNCS["rayteams"], "--base-url", "https://api.example.org/v1.0", "--token", "tok-given-by-flag")
    assert run.code == 1 and run.line.startswith("pwh: error: RAYTEAMS_CLIENT_ID is not set")
    assert "tok-given-by-flag" not in run.err


@pytest.mark.parametrize("url, message", [
    ("api.example.com/v1.0", "--base-url must start with http:// or https://"),
    ("ftp://api.example.com/v1.0", "--base-url must start with http:// or https://"),
    ("https:/api.example.com", "--base-url must start with http:// or https://"),
    ("https://:8443/v1.0", "--base-url has no host: write it as https://host[:port]/path"),
    ("http://api.example.com:99999/", "--base-url has an invalid port: a number from 1 to 65535"),
    ("https://lab:pw-secret-77@api.example.com/v1.0", "--base-url must not carry a user or password: "
                                                        "the credentials come from the environment (see --help)"),
    ("https://api.example.com/v1.0?key=pw-secret-77", "--base-url must not carry a query string or fragment: "
                                                        "give the API's base path only"),
])
@pytest.mark.parametrize("command", ["rayteams", "openproject", "clarity", "incoplax-basic"])
def test_a_malformed_base_url_fails_in_one_line_before_prefect(pwh, tmp_path, url, message, command):
    run = pwh(*SYNCS[command], "--base-url", url, env=ALL_SECRETS)
    assert run.code == 1 and run.line == f"pwh: error: {message}"
    assert "pw-secret-77" not in run.err
    assert_nothing_slow_started(run, tmp_path)


@pytest.mark.parametrize("table, line", [
    ('[schedules.rayteams]\ncron = "61 * * * *"\n',
     "pwh.toml: [schedules.rayteams] cron = '61 * * * *' is not a valid cron expression (Bad minute; "
     "five fields: minute hour day month weekday, e.g. '0 * * * *')"),
    ('[schedules.nightly]\nsource = "clarity"\ncron = "0 2 * *"\n',
     "pwh.toml: [schedules.nightly] cron = '0 2 * *' is not a valid cron expression (Wrong number of fields; "
     "five fields: minute hour day month weekday, e.g. '0 * * * *')"),
    ('[schedules.lab]\nsource = "openproject"\ncron = 5\n',
     "pwh.toml: [schedules.lab] cron must be a cron expression in quotes, e.g. '0 * * * *', not 5"),
    ('[schedules.fast]\nsource = "incoplax"\ninterval_seconds = -3\n',
     "pwh.toml: [schedules.fast] interval_seconds must be a positive number, not -3"),
    ('[schedules.x]\nsource = "jira"\n',
     "pwh.toml: [schedules.x] source: unknown source 'jira'; schedulable: clarity, incoplax, openproject, "
     "rayteams, rayteams-accounts"),
])
@pytest.mark.parametrize("command", [
    ["sync", "openproject", "--base-url", "https://op.example.org", *DB],
    ["sync", "rayteams", *DB],
    ["serve"],
])
def test_a_bad_schedule_in_pwh_toml_names_key_and_value_before_prefect(pwh, tmp_path, table, line, command):
    (tmp_path / "pwh.toml").write_text(table)
    run = pwh(*command, env={**ALL_SECRETS, "PREFECT_API_URL": "http://127.0.0.1:9/api"})
    assert run.code == 1 and run.line == f"pwh: error: {line}"
    assert_nothing_slow_started(run, tmp_path)


def test_a_shorthand_cron_in_the_file_passes_and_a_bad_cron_option_is_named(pwh, tmp_path):
    (tmp_path / "pwh.toml").write_text('[schedules.rayteams]\ncron = "@hourly"\n')
    run = pwh("serve", "--cron", "*/5 25 * * *")
    assert run.code == 1
    assert run.line == ("pwh: error: --cron = '*/5 25 * * *' is not a valid cron expression (Bad hour; "
                        "five fields: minute hour day month weekday, e.g. '0 * * * *')")
    assert_nothing_slow_started(run, tmp_path)


def test_openproject_filters_that_are_not_json_fail_in_one_line(pwh, tmp_path):
    run = pwh("sync", "openproject", "--base-url", "https://op.example.org", "--filters", "{oops", *DB, env=ALL_SECRETS)
    assert run.code == 1
    assert run.line == ('pwh: error: --filters: filters must be a JSON array of filter objects, e.g. '
                        '[{"ancestor":{"operator":"=","values":["12"]}}]')
    assert_nothing_slow_started(run, tmp_path)


@pytest.mark.parametrize("args, line", [
    (["sync", "rayteams", "--base-url", "https://api.example.org/v1.0", "--file-type", "skull"],
     "pwh: error: Invalid value for '--file-type': Value error, 'skull' is not one of 'maxilla', 'mandible', "
     "'face'. (see pwh sync rayteams --help)"),
    (["sync", "rayteams", "--strategy", "fastest"],
     "pwh: error: Invalid value for '--strategy': Value error, 'fastest' is not one of 'aggregate', "
     "'per_resource'. (see pwh sync rayteams --help)"),
    (["sync", "openproject", "--base-url", "https://op.example.org", "--concurrency", "0"],
     "pwh: error: Invalid value for '--concurrency': Input should be greater than or equal to 1 "
     "(see pwh sync openproject --help)"),
    (["sync", "clarity", "--base-url", "https://lims.example.org/api/v2", "--timeout", "0"],
     "pwh: error: Invalid value for '--timeout': Input should be greater than or equal to 0.001 "
     "(see pwh sync clarity --help)"),
    (["demo", "--source", "jira"],
     "pwh: error: Invalid value for '--source': Value error, 'jira' is not one of 'rayteams', 'openproject', "
     "'clarity', 'incoplax', 'all'. (see pwh demo --help)"),
])
def test_options_out_of_range_or_choice_fail_in_one_line(pwh, tmp_path, args, line):
    run = pwh(*args, env=ALL_SECRETS)
    assert run.code == 2 and run.line == line
    assert_nothing_slow_started(run, tmp_path)


def test_choices_are_listed_in_help_and_completion_is_offered(pwh):
    for args, listed in ((["sync", "rayteams", "--help"], "aggregate|per_resource"),
                         (["sync", "incoplax", "--help"], "auto|minimal|recent"),
                         (["sync", "incoplax", "--help"], "bearer|basic"),
                         (["demo", "--help"], "rayteams|openproject|clarity|incoplax|all")):
        run = pwh(*args)
        assert run.code == 0 and listed in run.out, run.out
    top = pwh("--help")
    assert "--install-completion" in top.out and "--show-completion" in top.out and "--debug" in top.out
    script = pwh("--show-completion", "bash", env={"SHELL": "/bin/bash"})
    assert script.code == 0 and "complete " in script.out and "_PWH_COMPLETE" in script.out, (script.code, script.err)


def test_the_choices_are_the_ones_the_modules_accept():
    options = {(s.name, o.parameter): o for s in SOURCES for o in s.options}
    assert options["rayteams", "strategy"].choices == STRATEGIES
    assert options["incoplax", "listing"].choices == LISTINGS
    assert options["incoplax", "auth_scheme"].choices == AUTH_SCHEMES
    assert tuple(s.value for s in DemoSource) == DEMO_SOURCES
    assert tuple(s.value for s in Auth) == AUTH_SCHEMES
    assert options["rayteams", "file_types"].choices == FILE_TYPES


# ------------------------------------------------------------- credentials from Prefect


CHECK_SECRETS = """
from pwh.validate import SettingError, check_secrets
try:
    check_secrets(["OPENPROJECT_API_KEY"])
    print("deferred")
except SettingError as exc:
    print("refused:", exc)
"""


def test_missing_credentials_are_left_to_the_flow_when_a_prefect_api_is_configured(tmp_path):
    """Secret blocks live on the Prefect server: without one the check is final, with one
    (from the environment, the active profile or ./prefect.toml) the flow reads the block
    itself. A fresh process each time: the test's own has Prefect's test harness loaded."""
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("PREFECT_")}
    env["PREFECT_HOME"] = str(tmp_path / "prefect")

    def check(**extra: str) -> str:
        done = subprocess.run([sys.executable, "-c", CHECK_SECRETS], cwd=tmp_path, env={**env, **extra},
                              capture_output=True, text=True, timeout=60, check=True)
        return done.stdout.strip()

    assert check().startswith("refused: OPENPROJECT_API_KEY is not set")
    assert check(PREFECT_API_URL="http://127.0.0.1:4200/api") == "deferred"
    (tmp_path / "prefect").mkdir()
    (tmp_path / "prefect" / "profiles.toml").write_text(
        'active = "lab"\n[profiles.lab]\nPREFECT_API_URL = "http://prefect.lab:4200/api"\n[profiles.local]\n')
    assert check() == "deferred"
    assert check(PREFECT_PROFILE="local").startswith("refused:")
    (tmp_path / "prefect.toml").write_text('[api]\nurl = "http://prefect.lab:4200/api"\n')
    assert check(PREFECT_PROFILE="local") == "deferred"


# ------------------------------------------------------------- answers from the network


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrong_path_app() -> web.Application:
    async def not_here(request: web.Request) -> web.Response:
        return web.Response(status=404, body=HTML_ERROR_PAGE, content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", not_here)
    return app


def test_a_closed_port_is_named_with_host_and_port(pwh, tmp_path, prefect_server):
    port = closed_port()
    run = pwh(*SYNCS["rayteams"], "--base-url", f"http://127.0.0.1:{port}/v1.0", "--quiet",
              env={**ALL_SECRETS, "PREFECT_API_URL": prefect_server})
    assert run.code == 1
    assert run.line == (f"pwh: error: RetriesExhaustedError: GET /project: still failing after 6 attempts "
                        f"(GET /project: cannot connect to 127.0.0.1:{port}: connection refused)")


async def test_a_wrong_path_is_one_request_and_says_check_base_url(pwh, tmp_path, prefect_server):
    import asyncio

    async with serving(wrong_path_app()) as url:
        run = await asyncio.to_thread(pwh, *SYNCS["openproject"], "--base-url", f"{url}/openproject", "--quiet",
                                      env={**ALL_SECRETS, "PREFECT_API_URL": prefect_server})
    assert run.code == 1
    assert run.line == (f"pwh: error: ListingNotFoundError: openproject: the project list "
                        f"{url}/openproject/api/v3/projects answered HTTP 404: check --base-url")


def test_a_host_that_does_not_resolve_is_named_after_two_tries(pwh, tmp_path, prefect_server):
    run = pwh(*SYNCS["clarity"], "--base-url", "https://lims.pwh-test.invalid/api/v2", "--quiet",
              env={**ALL_SECRETS, "PREFECT_API_URL": prefect_server})
    assert run.code == 1
    assert run.line == ("pwh: error: RetriesExhaustedError: GET projects: still failing after 2 attempts "
                        "(GET projects: cannot resolve host lims.pwh-test.invalid)")


# ------------------------------------------------------------- the rest


def test_an_unexpected_error_is_one_line_with_its_traceback_in_an_owner_only_log(pwh, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    run = pwh("docs", "--write", "not-a-folder")
    log = tmp_path / "log" / "pwh.log"
    assert run.code == 1 and run.line == ("pwh: error: unexpected NotADirectoryError (not a directory: "
                                          f"not-a-folder/tables.md); details in {log}")
    assert stat.S_IMODE(log.stat().st_mode) == 0o600 and stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert "Traceback" in log.read_text() and "pwh docs\n" in log.read_text()
    debug = pwh("--debug", "docs", "--write", "not-a-folder")
    assert debug.code == 1 and "Traceback" in debug.err and "NotADirectoryError" in debug.err
    assert debug.err.splitlines()[-1] == ("pwh: error: unexpected NotADirectoryError (not a directory: "
                                          "not-a-folder/tables.md) (traceback above)")


def test_a_dashboard_port_in_use_is_one_line_and_no_url(pwh, tmp_path):
    from pwh.warehouse.connection import connect
    from pwh.warehouse.replica import publish_replica

    con = connect(tmp_path / "w.duckdb")
    try:
        publish_replica(con, tmp_path / "w.duckdb")
    finally:
        con.close()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = pwh("dashboard", *DB, "--port", str(port))
    assert run.code == 1 and run.out == ""
    assert run.line == f"pwh: error: 127.0.0.1:{port}: address already in use; choose another port with --port"


def _exception_classes_of_pwh() -> set[type[BaseException]]:
    import importlib
    import inspect
    import pkgutil

    import pwh

    found = set()
    for module in pkgutil.walk_packages(pwh.__path__, "pwh."):
        loaded = importlib.import_module(module.name)
        found |= {value for _, value in inspect.getmembers(loaded, inspect.isclass)
                  if issubclass(value, BaseException) and value.__module__ == module.name}
    return found


def test_every_error_of_the_project_has_one_root():
    from pwh.errors import PwhError
    from pwh.transforms.coerce import CoercionError

    # CoercionError never leaves a transform (the field loads NULL with an issue); the
    # simulators' errors become HTTP answers. Neither is shown to a user.
    internal = {CoercionError} | {c for c in _exception_classes_of_pwh() if c.__module__.startswith("pwh.simulators.")}
    outside = sorted(c.__qualname__ for c in _exception_classes_of_pwh() - internal if not issubclass(c, PwhError))
    assert outside == []
    from pwh.config import ConfigError
    from pwh.flows.engine import MassDeleteError
    from pwh.sources.errors import SourceError
    from pwh.validate import SettingError
    from pwh.warehouse.connection import WarehouseBusyError

    # Their built-in bases stay, for code that catches them as such.
    assert issubclass(ConfigError, ValueError) and issubclass(SettingError, ValueError)
    assert issubclass(MassDeleteError, RuntimeError) and issubclass(WarehouseBusyError, RuntimeError)
    assert issubclass(SourceError, PwhError)


def test_the_cli_tells_a_project_error_from_a_bug_by_its_root_not_its_module(tmp_path, monkeypatch):
    from pwh.errors import PwhError
    from pwh.failures import describe_failure
    from pwh.transforms.coerce import CoercionError

    monkeypatch.setenv("PWH_LOG_FILE", str(tmp_path / "pwh.log"))

    class PluginError(PwhError):  # defined outside pwh: still one of the project's errors
        pass

    assert describe_failure(PluginError("the plugin's setting X is missing\nsecond line")) == (
        "PluginError: the plugin's setting X is missing")
    # Defined in pwh but not raised for a user: a bug, its message (which may quote a
    # field's value) not shown, its traceback in the log.
    leaked = CoercionError("birth: not a date (value 'Jane Doe')", "not a date")
    assert describe_failure(leaked) == f"unexpected CoercionError; details in {tmp_path / 'pwh.log'}"
    assert "CoercionError" in (tmp_path / "pwh.log").read_text()


@pytest.mark.parametrize(("variable", "value", "line"), [
    ("PWH_LOCK_WAIT_S", "soon", "PWH_LOCK_WAIT_S must be a number of seconds, not 'soon'"),
    ("PWH_MAX_DELETE_SHARE", "1.5", "PWH_MAX_DELETE_SHARE must be a share between 0 and 1, not '1.5'"),
    ("PWH_MAX_RESPONSE_BYTES", "64MB", "PWH_MAX_RESPONSE_BYTES must be a whole number of bytes, not '64MB'"),
    ("PWH_PSEUDONYM_KEY", "short-secret", "PWH_PSEUDONYM_KEY must be at least 16 bytes"),
])
def test_a_malformed_setting_fails_in_one_line_before_prefect(pwh, tmp_path, variable, value, line):
    run = pwh(*SYNCS["rayteams"], "--base-url", "http://127.0.0.1:9", env={**ALL_SECRETS, variable: value})
    assert run.code == 1 and run.line == f"pwh: error: {line}"
    assert_nothing_slow_started(run, tmp_path)
