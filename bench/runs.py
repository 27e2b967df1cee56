"""One measured run of each kind, each in its own child process against the simulator
(its request counter reset before, read after)."""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from bench.procs import PWH, PYTHON, Measured, measure
from bench.servers import CLIENT_ID, TOKEN, Simulator

REQUESTS_PER_PROJECT = {"aggregate": 2, "per_resource": 6}
# dlt's table for each warehouse table fed one row per API record (dlt keeps the nested
# lists of a record in further child tables; pwh keeps them as JSON columns).
DLT_TABLES = {
    "projects": "projects", "memos": "memo", "memo_comments": "memo__comments",
    "attachments": "attachments", "histories": "histories", "orders": "orders",
    "groups": "groups", "files": "files",
}


@dataclass
class Run:
    label: str  # e.g. "pwh full aggregate"
    kind: str  # ceiling | pwh_full | pwh_incremental | dlt | plain | flow (+ "_large" / "_huge" at larger N)
    strategy: str
    projects: int
    round: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    requests: int  # counted by the simulator
    inner_s: float | None = None  # the work timed inside the child (imports and start-up excluded)
    rows: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.wall_s if self.wall_s else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "requests_per_s": self.requests_per_s, "cpu_ms_per_request": self.cpu_ms_per_request}


@dataclass
class Context:
    """What every run needs: the simulator, a scratch folder, the children's environment."""

    sim: Simulator
    workdir: Path
    env: dict[str, str]  # with the Prefect server's API (the driver runs)
    concurrency: int = 32

    @property
    def user_env(self) -> dict[str, str]:
        """A user's hand run: no Prefect API anywhere (environment, profile: a PREFECT_HOME
        with no profiles file), so `pwh sync` runs in-process without Prefect."""
        return child_env(self.workdir / "prefect-home-user", None)

    def fresh_path(self, name: str) -> Path:
        path = self.workdir / name
        if path.is_dir():
            shutil.rmtree(path)
        for stale in self.workdir.glob(f"{path.stem}*"):
            stale.unlink() if stale.is_file() else shutil.rmtree(stale)
        return path


def child_env(prefect_home: Path, api_url: str | None) -> dict[str, str]:
    # None of the caller's Prefect settings (an API URL, a profiles path) leaks into a child.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update({
        "RAYTEAMS_TOKEN": TOKEN, "RAYTEAMS_CLIENT_ID": CLIENT_ID,
        "PWH_PSEUDONYM_KEY": "bench-pseudonym-key-not-a-secret-0123456789",
        "PREFECT_HOME": str(prefect_home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # Without a server, the flow starts a temporary one; on a busy machine it can take
        # longer than Prefect's default 20 s wait.
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    })
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _measured(ctx: Context, cmd: list[str], what: str, env: dict[str, str] | None = None) -> tuple[Measured, int]:
    ctx.sim.reset_stats()
    result = measure(cmd, env or ctx.env).check(what)
    return result, int(ctx.sim.stats()["total"])


def ceiling(ctx: Context, strategy: str, round_: int) -> Run:
    cmd = [PYTHON, "-m", "bench.ceiling", "--base-url", ctx.sim.base_url, "--strategy", strategy,
           "--concurrency", str(ctx.concurrency), "--token", TOKEN, "--client-id", CLIENT_ID]
    m, requests = _measured(ctx, cmd, "the ceiling")
    return Run(f"ceiling {strategy}", "ceiling", strategy, ctx.sim.projects, round_, m.wall_s, m.cpu_s,
               m.peak_rss_mb, requests, m.report["fetch_s"])


def pwh_sync(ctx: Context, strategy: str, round_: int, db: Path, *, incremental: bool) -> Run:
    """``pwh sync rayteams`` as a user runs it by hand: the console script in a fresh
    process, no Prefect API configured (the sync runs in-process; pwh/flows/host.py)."""
    cmd = [PWH, "sync", "rayteams", "--base-url", ctx.sim.base_url, "--db", str(db), "--strategy", strategy,
           "--concurrency", str(ctx.concurrency), "--quiet"]
    if ctx.sim.projects > 100_000:
        # The project list is one answer of ~0.5 KB a project: past ~130,000 projects it
        # exceeds the default 64 MiB cap, and a user raises it as the error says.
        cmd += ["--max-response-mb", str(ctx.sim.projects // 1000)]
    kind = "pwh_incremental" if incremental else "pwh_full"
    m, requests = _measured(ctx, cmd, f"pwh sync ({kind})", ctx.user_env)
    engine_s, rows = ledger(db)
    label = f"pwh sync {'incremental (no change)' if incremental else 'full'} {strategy}"
    return Run(label, kind, strategy, ctx.sim.projects, round_, m.wall_s, m.cpu_s, m.peak_rss_mb, requests,
               engine_s, rows)


def driver(ctx: Context, wrapper: str, strategy: str, round_: int, db: Path, *,
           env: dict[str, str] | None = None, label: str | None = None) -> Run:
    """The same sync in ``bench.driver``: with the flow wrapper or the plain stages."""
    cmd = [PYTHON, "-m", "bench.driver", "--wrapper", wrapper, "--base-url", ctx.sim.base_url, "--db", str(db),
           "--strategy", strategy, "--concurrency", str(ctx.concurrency)]
    m, requests = _measured(ctx, cmd, f"the {wrapper} driver", env)
    _, rows = ledger(db)
    return Run(label or f"pwh {wrapper} driver {strategy}", wrapper, strategy, ctx.sim.projects, round_,
               m.wall_s, m.cpu_s, m.peak_rss_mb, requests, m.report["run_s"], rows)


def dlt(ctx: Context, round_: int, *, tuned: bool) -> Run:
    db = ctx.fresh_path("dlt.duckdb")
    workdir = ctx.fresh_path("dlt-pipelines")
    cmd = [PYTHON, "-m", "bench.dlt_run", "--base-url", ctx.sim.base_url, "--db", str(db), "--workdir", str(workdir),
           "--token", TOKEN, "--client-id", CLIENT_ID] + (["--tuned"] if tuned else [])
    m, requests = _measured(ctx, cmd, "dlt")
    label = f"dlt {'tuned' if tuned else 'defaults'} per_resource"
    return Run(label, "dlt" if tuned else "dlt_defaults", "per_resource", ctx.sim.projects, round_, m.wall_s,
               m.cpu_s, m.peak_rss_mb, requests, m.report["run_s"], m.report["rows"],
               [f"dlt {m.report['dlt_version']}"])


def prefect_import(ctx: Context, round_: int) -> Run:
    m = measure([PYTHON, "-c", "import prefect"], ctx.env).check("import prefect")
    return Run("import prefect", "import", "-", 0, round_, m.wall_s, m.cpu_s, m.peak_rss_mb, 0)


def ledger(db: Path) -> tuple[float | None, dict[str, int]]:
    """(engine wall of the last run from pipeline.runs, rows per warehouse table)."""
    from pwh.schemas import pipeline
    from pwh.schemas import rayteams as tables

    with duckdb.connect(str(db), read_only=True) as con:
        last = con.execute(
            "SELECT epoch(ended_at) - epoch(started_at) FROM pipeline.runs ORDER BY started_at DESC LIMIT 1"
        ).fetchall()
        rows = {t.name: con.execute(f"SELECT count(*) FROM {t.qualified_name}").fetchall()[0][0]
                for t in (*tables.TABLES, pipeline.REJECTED_RECORDS)}
    return (float(last[0][0]) if last else None), rows
