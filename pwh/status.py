"""``pwh status``: per source and account, how its last run ended and how old its data is,
read from the run ledger (``pipeline.runs``) of the readers' replica, so that a check never
waits for a sync and never blocks one.

The rules (docs/operations.md repeats them for operators):

* **failing**: the account's last finished run did not end ``success``: ``failed``,
  ``interrupted`` (Ctrl-C or SIGTERM), ``abandoned`` (its process died), ``partial`` (some projects failed; retried next run),
  or any status this version does not know. A run still ``running`` is shown, and the run
  before it is judged.
* **stale**: its data is older than its allowed age. Data age counts from the end of the
  last run that loaded data (``success`` or ``partial``: a partial run commits every
  project it loaded). The allowed age is 2 × the interval of the account's schedule in
  ``pwh.toml`` ``[schedules]`` (for a cron, its longest gap between two runs: weekdays at
  9 allow 2 × 72 h over a weekend), i.e. one missed run is tolerated, two are not; with
  several schedules, the most frequent one counts. Accounts without a schedule may be
  24 h old. ``--max-age`` replaces every allowed age. A scheduled source that never ran is
  stale.

Exit status: 0 all fine, 5 failing, 6 stale, 7 failing and stale (1 is an error such as no
warehouse; 2 a usage error; 3 is a partial sync, 4 a failed lookup, 130/143 an interrupt by SIGINT/SIGTERM).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import orjson

from pwh.ages import human_age
from pwh.errors import PwhError
from pwh.flows.schedules import Schedule, cron_fields

DEFAULT_MAX_AGE = timedelta(hours=24)
STALE_AFTER_INTERVALS = 2
EXIT_OK, EXIT_FAILING, EXIT_STALE, EXIT_FAILING_AND_STALE = 0, 5, 6, 7
FAILED_UNITS_IN_TEXT = 10
FAILED_UNITS_IN_JSON = 100
ERROR_CHARS = 300
# A cron's longest gap is looked for over its next year of runs, at most this many
# (cronsim takes ~40 µs a run: an every-minute cron would cost 20 s a year).
_CRON_HORIZON = timedelta(days=366)
_CRON_MAX_FIRES = 3_000
# Schedules whose flow records its runs under another source name.
_RECORDED_SOURCE = {"rayteams-accounts": "rayteams"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, None: 1}


class StatusError(PwhError, ValueError):
    """The status cannot be read as asked; the message says what to fix."""


def parse_duration(text: str) -> timedelta:
    """``90m``, ``6h``, ``2d``, ``45s`` or plain seconds."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise StatusError(f"--max-age takes a positive duration such as 90m, 6h or 2d, not {text!r}")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


def schedule_interval(schedule: Schedule, now: datetime) -> timedelta:
    """How long the schedule may leave between two runs: its interval, or a cron's longest
    gap between consecutive runs over the coming year."""
    if schedule.interval_seconds is not None:
        return timedelta(seconds=schedule.interval_seconds)
    from cronsim import CronSim, CronSimError

    try:
        fires = CronSim(cron_fields(schedule.cron or ""), now.astimezone(timezone.utc).replace(tzinfo=None))
        previous = next(fires)
    except (CronSimError, StopIteration) as exc:
        raise StatusError(f"schedule {schedule.name!r}: cron {schedule.cron!r} is not valid ({exc})") from None
    first, longest = previous, timedelta(0)
    for count, fire in enumerate(fires):
        longest = max(longest, fire - previous)
        previous = fire
        if fire - first >= _CRON_HORIZON or count >= _CRON_MAX_FIRES:
            break
    return longest


@dataclass(frozen=True)
class Allowance:
    """How old an account's data may be, and why."""

    max_age: timedelta
    rule: str


def allowances(schedules: Iterable[Schedule], now: datetime) -> list[tuple[str, str | None, Allowance]]:
    """(recorded source, account or None for every account, allowance) per schedule."""
    found = []
    for schedule in schedules:
        interval = schedule_interval(schedule, now)
        timing = (f"every {schedule.interval_seconds:g} s" if schedule.interval_seconds is not None
                  else f"cron '{schedule.cron}'")
        rule = f"{STALE_AFTER_INTERVALS} × {human_age(interval.total_seconds())} ({timing}, schedule {schedule.name!r})"
        account = schedule.parameters.get("account")
        found.append((_RECORDED_SOURCE.get(schedule.source, schedule.source),
                      account if isinstance(account, str) else None,
                      Allowance(interval * STALE_AFTER_INTERVALS, rule)))
    return found


@dataclass
class AccountStatus:
    source: str
    account: str
    allowance: Allowance
    last_run: dict[str, Any] | None = None  # the last finished run
    running_since: datetime | None = None  # a run newer than it, still running
    last_success_at: datetime | None = None
    data_at: datetime | None = None  # end of the last run that loaded data
    quarantined_rows: int = 0
    failing: bool = False
    stale: bool = False

    @property
    def problems(self) -> list[str]:
        return [name for name, flag in (("failing", self.failing), ("stale", self.stale)) if flag]


_LEDGER = """
    SELECT source, account,
           arg_max({'run_id': run_id, 'status': status, 'mode': mode, 'started_at': started_at,
                    'ended_at': ended_at, 'error': error, 'units_failed': units_failed,
                    'failed_units': failed_units, 'rows_rejected': rows_rejected}, started_at)
               FILTER (status IS DISTINCT FROM 'running'),
           max(started_at) FILTER (status = 'running'),
           max(ended_at) FILTER (status = 'success'),
           max(ended_at) FILTER (status IN ('success', 'partial'))
    FROM pipeline.runs GROUP BY ALL ORDER BY ALL"""


def read_status(
    con: duckdb.DuckDBPyConnection, *, now: datetime, schedules: Iterable[Schedule] = (),
    max_age: timedelta | None = None,
) -> list[AccountStatus]:
    """Every source account of the run ledger (and every scheduled one that never ran)."""
    rules = allowances(schedules, now)
    try:
        rows = con.execute(_LEDGER).fetchall()
        quarantined = {(s, a): n for s, a, n in con.execute(
            "SELECT source, account, count(*) FROM pipeline.rejected_records GROUP BY ALL").fetchall()}
    except duckdb.CatalogException:
        raise StatusError("this file has no pipeline.runs: not a pwh warehouse, or never synced") from None

    def allowance(source: str, account: str | None) -> Allowance:
        if max_age is not None:
            return Allowance(max_age, "--max-age")
        matching = [a for s, acc, a in rules if s == source and (acc is None or account is None or acc == account)]
        if not matching:
            return Allowance(DEFAULT_MAX_AGE, "no schedule: the default")
        return min(matching, key=lambda a: a.max_age)

    statuses = []
    for source, account, last, running_since, success_at, data_at in rows:
        status = AccountStatus(source, account, allowance(source, account), last,
                               running_since if running_since and (not last or running_since > last["started_at"]) else None,
                               success_at, data_at, quarantined.get((source, account), 0))
        status.failing = last is not None and last["status"] != "success"
        status.stale = data_at is None or now - data_at > status.allowance.max_age
        statuses.append(status)
    for source, account, _ in rules:  # scheduled but never run: no data at all
        if not any(s.source == source and (account is None or s.account == account) for s in statuses):
            statuses.append(AccountStatus(source, account or "*", allowance(source, account), stale=True))
    return statuses


def open_ledger(db: Path, *, primary: bool) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A read-only connection to the replica of ``db`` (or to ``db`` itself with
    ``primary``), and the file it opened."""
    from pwh.warehouse.connection import WarehouseBusyError, connect
    from pwh.warehouse.replica import replica_path

    is_replica = db.name.endswith(".replica.duckdb")
    path = db if primary or is_replica else replica_path(db)
    if not path.exists():
        if primary or is_replica or not db.exists():
            raise StatusError(f"no warehouse at {path}: run a sync first (`pwh sync <source> --db {db}`, or `pwh demo --db {db}`)")
        raise StatusError(f"no readers' replica at {path}: run `pwh publish --db {db}` (every sync publishes it)")
    try:
        return connect(path, read_only=True), path
    except WarehouseBusyError as exc:
        raise StatusError(f"{exc} (without --primary, `pwh status` reads the replica and never waits)") from None
    except duckdb.Error as exc:
        raise StatusError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None


def exit_status(statuses: Iterable[AccountStatus]) -> int:
    statuses = list(statuses)
    failing, stale = any(s.failing for s in statuses), any(s.stale for s in statuses) or not statuses
    return EXIT_FAILING_AND_STALE if failing and stale else EXIT_FAILING if failing else EXIT_STALE if stale else EXIT_OK


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(timezone.utc).isoformat()


def _age_s(now: datetime, value: datetime | None) -> float | None:
    return None if value is None else round((now - value).total_seconds(), 3)


def _failed_units(last: Mapping[str, Any]) -> list[str]:
    return sorted(orjson.loads(last["failed_units"] or "{}"))


def _first_line(error: str | None) -> str | None:
    return None if error is None else (error.splitlines() or [""])[0][:ERROR_CHARS]


def to_json(statuses: list[AccountStatus], *, now: datetime, warehouse: Path) -> dict[str, Any]:
    """The ``--json`` document (its shape is documented in docs/operations.md)."""
    accounts = []
    for s in statuses:
        last = None
        if s.last_run is not None:
            names = _failed_units(s.last_run)
            last = {
                "run_id": s.last_run["run_id"], "status": s.last_run["status"], "mode": s.last_run["mode"],
                "started_at": _iso(s.last_run["started_at"]), "ended_at": _iso(s.last_run["ended_at"]),
                "error": _first_line(s.last_run["error"]), "units_failed": s.last_run["units_failed"] or 0,
                "failed_units": names[:FAILED_UNITS_IN_JSON], "rows_rejected": s.last_run["rows_rejected"] or 0,
            }
        accounts.append({
            "source": s.source, "account": s.account, "ok": not s.problems, "problems": s.problems,
            "last_run": last, "running_since": _iso(s.running_since),
            "last_success_at": _iso(s.last_success_at), "last_success_age_s": _age_s(now, s.last_success_at),
            "data_at": _iso(s.data_at), "data_age_s": _age_s(now, s.data_at),
            "max_age_s": s.allowance.max_age.total_seconds(), "max_age_rule": s.allowance.rule,
            "quarantined_rows": s.quarantined_rows,
        })
    return {"warehouse": str(warehouse), "checked_at": _iso(now), "exit_status": exit_status(statuses),
            "accounts": accounts}


def _when(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def render_text(statuses: list[AccountStatus], *, now: datetime, warehouse: Path) -> str:
    lines = [f"{warehouse}, as of {_when(now)}"]
    if not statuses:
        lines.append("no sync has run yet: run `pwh sync <source>` (or `pwh demo`)")
    for s in statuses:
        lines.append(f"{s.source}/{s.account}: {', '.join(p.upper() for p in s.problems) or 'ok'}")
        last = s.last_run
        if last is None:
            lines.append("  no finished run yet")
        else:
            ended = last["ended_at"] or last["started_at"]
            line = (f"  last run {last['status']} {human_age((now - ended).total_seconds())} ago "
                    f"({last['mode']}, {_when(last['started_at'])} → {_when(ended)})")
            if last["error"]:
                line += f": {_first_line(last['error'])}"
            lines.append(line)
            names = _failed_units(last)
            if names:
                shown = ", ".join(names[:FAILED_UNITS_IN_TEXT]) + (" …" if len(names) > FAILED_UNITS_IN_TEXT else "")
                lines.append(f"  {len(names):,} failed projects (retried next run): {shown}")
            if last["rows_rejected"] or s.quarantined_rows:
                lines.append(f"  {last['rows_rejected'] or 0:,} rows rejected by the last run; "
                             f"{s.quarantined_rows:,} in quarantine (pipeline.rejected_records)")
        if s.running_since is not None:
            lines.append(f"  a run is in progress since {_when(s.running_since)}")
        allowed = f"allowed {human_age(s.allowance.max_age.total_seconds())}: {s.allowance.rule}"
        if s.data_at is None:
            lines.append(f"  no data loaded yet ({allowed})")
        else:
            success = ("never" if s.last_success_at is None
                       else f"{human_age((now - s.last_success_at).total_seconds())} ago")
            lines.append(f"  data {human_age((now - s.data_at).total_seconds())} old, last success {success} ({allowed})")
    return "\n".join(lines)



def check(db: Path, *, primary: bool = False, config: Path | None = None, max_age: str | None = None,
          as_json: bool = False, now: datetime | None = None) -> tuple[str, int]:
    """What ``pwh status`` prints, and its exit status."""
    from pwh.flows.schedules import ScheduleError, load_schedules

    allowed = None if max_age is None else parse_duration(max_age)
    try:
        schedules = load_schedules(config)
    except (ScheduleError, OSError) as exc:
        raise StatusError(str(exc)) from None
    now = now or datetime.now(timezone.utc)
    con, path = open_ledger(db, primary=primary)
    try:
        statuses = read_status(con, now=now, schedules=schedules, max_age=allowed)
    finally:
        con.close()
    if as_json:
        return orjson.dumps(to_json(statuses, now=now, warehouse=path), option=orjson.OPT_INDENT_2).decode(), exit_status(statuses)
    return render_text(statuses, now=now, warehouse=path), exit_status(statuses)
