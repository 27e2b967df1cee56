"""The dashboard: one page over the readers' replica, served live (``pwh dashboard``) or
written as one self-contained HTML file (``pwh report``). Same queries, same page.

Why plotly figures in a page we render ourselves, not Streamlit/Dash/Panel: the report
must be a static file that renders offline anyway, so one renderer serves both (what you
see in the browser is exactly what gets mailed); plotly gives hover values, zoom and
legend toggles with no server-side state; plotly.js is bundled in the wheel (inlined in
the report, served from ``/plotly.js`` by the dashboard: no CDN); and the server is a
few lines of aiohttp, already a dependency, that start instantly and hold the replica
open only for the milliseconds a page takes to query (an open connection would pin an
old snapshot and, on the primary, block the sync).
"""

from __future__ import annotations

import asyncio
import html
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from pwh.ages import human_age
from pwh.errors import PwhError
from pwh.warehouse.replica import open_replica, replica_path

TITLE = "Project warehouse"
SECTIONS = (
    "Projects by source and status",
    "Activity over time",
    "Storage by group",
    "Order funnel",
    "Last sync runs",
    "Rejected rows",
)


@dataclass
class Snapshot:
    replica: str
    published_at: datetime
    generated_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    projects_total: int = 0
    projects_current: int = 0  # not deleted, not trashed, not archived
    projects_shelved: int = 0  # trashed or archived
    projects_deleted: int = 0
    by_source: list[tuple] = field(default_factory=list)  # source, account, current, trashed or archived, deleted
    freshness: list[tuple] = field(default_factory=list)  # source, account, last ok end, its status, last failure, its error
    by_status: list[tuple] = field(default_factory=list)  # source, status, lifecycle, projects
    activity: list[tuple] = field(default_factory=list)  # bucket, memos, comments, histories, work_packages
    activity_bucket: str = "week"
    storage: list[tuple] = field(default_factory=list)  # account, owner, lab, projects, file_bytes, attachment_bytes, total
    funnel: list[tuple] = field(default_factory=list)  # stage label, orders at it or later, percent of the first
    products: list[tuple] = field(default_factory=list)  # status_type, product, currency, orders, value
    runs: list[tuple] = field(default_factory=list)
    rejected: list[tuple] = field(default_factory=list)  # source, account, table, field, records
    rejected_total: int = 0


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


# Current: what a lab works on. Trashed and archived projects are still in their source but
# not current; deleted ones are gone from it.
CURRENT = "lifecycle NOT IN ('deleted', 'trashed', 'archived')"
SHELVED = "lifecycle IN ('trashed', 'archived')"
# A run whose data was published: `partial` committed every project it loaded.
LOADED = "status IN ('success', 'partial')"
FAILED = "status IN ('failed', 'abandoned')"
FUNNEL_STAGES = ("placed (all orders)", "in progress or closed", "closed")


def collect(con: duckdb.DuckDBPyConnection, replica: str, published_at: datetime) -> Snapshot:
    """Everything the page shows, from the marts and the pipeline tables."""
    s = Snapshot(replica, published_at)
    s.projects_total, s.projects_current, s.projects_shelved, s.projects_deleted = _rows(con, f"""
        SELECT count(*), count(*) FILTER ({CURRENT}), count(*) FILTER ({SHELVED}), count(*) FILTER (is_deleted)
        FROM analytics.projects""")[0]
    s.by_source = _rows(con, f"""
        SELECT source, account, count(*) FILTER ({CURRENT}), count(*) FILTER ({SHELVED}), count(*) FILTER (is_deleted)
        FROM analytics.projects GROUP BY ALL ORDER BY ALL""")
    # Data age per source and account: the last run that loaded data, and the last failed
    # run when it came after it (a failure older than the last success is history).
    s.freshness = _rows(con, f"""
        SELECT source, account, max(ended_at) FILTER ({LOADED}), arg_max(status, ended_at) FILTER ({LOADED}),
               max(coalesce(ended_at, started_at)) FILTER ({FAILED}),
               arg_max(error, coalesce(ended_at, started_at)) FILTER ({FAILED})
        FROM pipeline.runs GROUP BY ALL ORDER BY ALL""")
    s.by_status = _rows(con, """
        SELECT source, coalesce(status, '(no status)'), lifecycle, count(*)
        FROM analytics.projects WHERE NOT is_deleted GROUP BY ALL ORDER BY 4 DESC, 1, 2""")
    # Weeks for up to ~6 months of activity, months beyond: a readable number of bars.
    [(span,)] = _rows(con, "SELECT coalesce(max(day) - min(day), 0) FROM analytics.activity_daily")
    s.activity_bucket = "week" if span <= 190 else "month"
    s.activity = _rows(con, f"""
        SELECT date_trunc('{s.activity_bucket}', day)::DATE AS bucket, sum(memos)::BIGINT, sum(comments)::BIGINT,
               sum(histories)::BIGINT, sum(work_packages)::BIGINT
        FROM analytics.activity_daily GROUP BY bucket ORDER BY bucket""")
    s.storage = _rows(con, """
        SELECT account, owner_group_id, lab_id, projects, file_bytes, attachment_bytes, total_bytes
        FROM analytics.storage_by_group ORDER BY total_bytes DESC, account, owner_group_id, lab_id""")
    # Orders by how far they have got, each stage counting the orders at it or past it, as
    # a share of all orders (the first stage). Orders are counted at their current status:
    # this is where today's orders stand, not a conversion rate between stages.
    [(placed, started, closed)] = _rows(con, """
        SELECT coalesce(sum(orders), 0)::BIGINT, coalesce(sum(orders) FILTER (stage IN (2, 3)), 0)::BIGINT,
               coalesce(sum(orders) FILTER (stage = 3), 0)::BIGINT FROM analytics.orders_funnel""")
    s.funnel = [(label, n, 100.0 * n / placed) for label, n in zip(FUNNEL_STAGES, (placed, started, closed))] if placed else []
    s.products = _rows(con, """
        SELECT status_type, product_name, currency, sum(orders)::BIGINT, sum(value)
        FROM analytics.orders_funnel GROUP BY ALL ORDER BY min(stage), status_type, 4 DESC, product_name, currency""")
    s.runs = _rows(con, """
        SELECT source, account, mode, status, started_at, ended_at,
               epoch(ended_at - started_at), units_seen, units_new + units_changed, units_deleted,
               units_failed, rows_rejected
        FROM pipeline.runs ORDER BY started_at DESC LIMIT 12""")
    # What kind of problem, per table: the field a reason names (never the value: it could
    # hold data the quarantine keeps only redacted).
    s.rejected = _rows(con, """
        SELECT source, account, table_name, split_part(reason, ':', 1) AS field, count(DISTINCT (unit_key, seq))
        FROM (SELECT *, unnest(CAST(reasons AS VARCHAR[])) AS reason FROM pipeline.rejected_records)
        GROUP BY ALL ORDER BY 5 DESC, 1, 2, 3, 4""")
    s.rejected_total = _rows(con, "SELECT count(*) FROM pipeline.rejected_records")[0][0]
    return s


def snapshot(db: Path | str) -> Snapshot:
    """Open the replica, read what the page needs, close it (a fresh connection per page:
    an open one would pin an old snapshot)."""
    con = open_replica(db)
    try:
        path = replica_path(db) if not str(db).endswith(".replica.duckdb") else Path(db)
        published = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc)
        return collect(con, str(path), published)
    finally:
        con.close()


# ------------------------------------------------------------------------------ render

class _Raw(str):
    """Already-escaped HTML for a table cell."""


def _esc(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return html.escape(str(value))


def _table(headers: tuple[str, ...], rows: list[tuple], *, cls: str = "", limit: int = 25) -> str:
    if not rows:
        return '<p class="empty">none</p>'
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in row) + "</tr>" for row in rows[:limit])
    more = f'<p class="more">… and {len(rows) - limit:,} more rows</p>' if len(rows) > limit else ""
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{more}'


def _figure(fig) -> str:
    # Transparent backgrounds: the card's colour shows through, light or dark; the page's
    # script swaps the template (fonts, grid lines) to match the reader's colour scheme.
    fig.update_layout(margin=dict(l=40, r=20, t=30, b=40), height=340, template="plotly_white",
                      paper_bgcolor="rgba(0,0,0,0)", plot_bgcolor="rgba(0,0,0,0)",
                      legend=dict(orientation="h", y=-0.2), font=dict(size=12))
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


def _short(group: str | None) -> str:
    return "(none)" if not group else group[:8]


def _charts(s: Snapshot) -> dict[str, str | None]:
    """One figure per chart, or None where there is nothing to draw (the page says so in
    words instead of showing empty axes)."""
    import plotly.graph_objects as go

    charts: dict[str, str | None] = dict.fromkeys(("projects", "activity", "storage", "funnel"))
    if s.by_status:
        sources = sorted({row[0] for row in s.by_status})
        statuses = list(dict.fromkeys(row[1] for row in s.by_status))
        fig = go.Figure([
            go.Bar(name=src, x=statuses, y=[sum(r[3] for r in s.by_status if r[0] == src and r[1] == st) for st in statuses])
            for src in sources
        ])
        fig.update_layout(barmode="stack", yaxis_title="current projects")
        charts["projects"] = _figure(fig)

    if s.activity:
        buckets = [row[0] for row in s.activity]
        fig = go.Figure([
            go.Bar(name=name, x=buckets, y=[row[i] for row in s.activity])
            for i, name in enumerate(("memos", "comments", "histories", "work packages"), start=1)
            if any(row[i] for row in s.activity)
        ])
        fig.update_layout(barmode="stack", yaxis_title=f"records per {s.activity_bucket}", hovermode="x unified")
        charts["activity"] = _figure(fig)

    if s.storage:
        top = s.storage[:15][::-1]
        labels = [f"{_short(r[1])} → lab {_short(r[2])}" for r in top]
        fig = go.Figure([
            go.Bar(name="files", y=labels, x=[r[4] / 1e6 for r in top], orientation="h"),
            go.Bar(name="attachments", y=labels, x=[r[5] / 1e6 for r in top], orientation="h"),
        ])
        fig.update_layout(barmode="stack", xaxis_title="MB", height=max(340, 26 * len(top) + 120))
        charts["storage"] = _figure(fig)

    if s.funnel:
        # Counts and their share of all orders, written out; no "percent previous" (a
        # stage-to-stage conversion these current-status counts cannot show).
        fig = go.Figure(go.Funnel(y=[r[0] for r in s.funnel], x=[r[1] for r in s.funnel],
                                  text=[f"{n:,} · {share:.0f}%" for _, n, share in s.funnel], textinfo="text",
                                  hoverinfo="y+text", connector=dict(visible=False)))
        charts["funnel"] = _figure(fig)
    return charts


CSS = """
:root { color-scheme: light dark; --fg:#1d2433; --muted:#5b6476; --line:#e3e6ec; --bg:#f6f7f9; --card:#fff;
        --accent:#2f6fdb; --bad:#c0392b; --ok:#1e8449; --warn-bg:#fff4e5; }
@media (prefers-color-scheme: dark) {
  :root { --fg:#e6e9ef; --muted:#9aa3b5; --line:#2c3240; --bg:#12151b; --card:#1b1f27;
          --accent:#6ea0ff; --bad:#ff6b5b; --ok:#4cc38a; --warn-bg:#3a2a12; }
}
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); margin: 0; background: var(--bg); }
header { background: var(--card); border-bottom: 1px solid var(--line); padding: 16px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: var(--muted); }
code { font-size: 13px; }
#data-age { margin: 10px 0 0; padding: 0; list-style: none; }
#data-age li { margin: 2px 0; }
#data-age .failed { color: var(--bad); font-weight: 600; }
.banner { grid-column: 1 / -1; background: var(--warn-bg); border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; font-size: 15px; }
main { padding: 20px 28px; display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 20px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 16px; margin: 0 0 8px; }
.kpis { display: flex; gap: 14px; flex-wrap: wrap; grid-column: 1 / -1; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 18px; min-width: 160px; }
.kpi b { display: block; font-size: 26px; }
.kpi span { color: var(--muted); }
table { border-collapse: collapse; width: 100%; font-size: 13px; margin-top: 8px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); white-space: nowrap; }
td:not(:first-child) { font-variant-numeric: tabular-nums; }
th { color: var(--muted); font-weight: 600; }
.status-failed, .status-abandoned { color: var(--bad); font-weight: 600; }
.status-success { color: var(--ok); }
.empty, .more, .note { color: var(--muted); }
.scroll { overflow-x: auto; }
"""

# Plotly bakes a template into each figure; this swaps it for the reader's colour scheme,
# now and whenever it changes (both templates ship in the page: no network).
THEME_SCRIPT = """
(function () {
  var templates = %s, scheme = window.matchMedia("(prefers-color-scheme: dark)");
  function apply() {
    var template = scheme.matches ? templates.dark : templates.light;
    document.querySelectorAll(".plotly-graph-div").forEach(function (div) {
      Plotly.relayout(div, {template: template, paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)"});
    });
  }
  apply();
  scheme.addEventListener("change", apply);
})();
"""


def _theme_script() -> str:
    import json

    import plotly.io as pio

    templates = {"light": pio.templates["plotly_white"].to_plotly_json(), "dark": pio.templates["plotly_dark"].to_plotly_json()}
    return "<script>" + THEME_SCRIPT % json.dumps(templates).replace("</", "<\\/") + "</script>"


def _primary(replica: str) -> str:
    return replica.removesuffix(".replica.duckdb") + ".duckdb" if replica.endswith(".replica.duckdb") else replica


def data_age(s: Snapshot) -> str:
    """Per source and account: how old its data is, and its last failed run when that is
    newer than its last successful one."""
    if not s.freshness:
        return '<ul id="data-age"><li>No sync has run yet.</li></ul>'
    items = []
    for source, account, ok_at, ok_status, failed_at, error in s.freshness:
        who = f"<b>{html.escape(str(source))}/{html.escape(str(account))}</b>"
        if ok_at is None:
            text = f"{who}: no successful sync yet"
        else:
            partial = " (partial: some projects failed)" if ok_status == "partial" else ""
            text = f"{who}: data {human_age((s.generated_at - ok_at).total_seconds())} old, last synced {_esc(ok_at)}{partial}"
        if failed_at is not None and (ok_at is None or failed_at > ok_at):
            cause = (str(error).splitlines() or [""])[0][:200] if error else "no cause recorded"
            text += (f' · <span class="failed">last run failed {human_age((s.generated_at - failed_at).total_seconds())} ago '
                     f"({_esc(failed_at)}): {html.escape(cause)}</span>")
        items.append(f"<li>{text}</li>")
    return f'<ul id="data-age">{"".join(items)}</ul>'


def _empty(what: str) -> str:
    return f'<p class="empty">{html.escape(what)}</p>'


def render(s: Snapshot, *, plotly_js: str = "inline", refresh_s: int | None = None) -> str:
    """The page. ``plotly_js``: "inline" (a self-contained file) or a URL path to load it
    from (the dashboard serves it itself: never a CDN)."""
    from plotly.offline import get_plotlyjs

    charts = _charts(s)
    script = f"<script>{get_plotlyjs()}</script>" if plotly_js == "inline" else f'<script src="{html.escape(plotly_js)}"></script>'
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    total_orders = s.funnel[0][1] if s.funnel else 0
    kpis = "".join(
        f'<div class="kpi" id="kpi-{key}"><b>{_esc(value)}</b><span>{html.escape(label)}</span></div>'
        for key, value, label in (
            ("projects", s.projects_current, "current projects"),
            ("shelved", s.projects_shelved, "trashed or archived"),
            ("deleted", s.projects_deleted, "deleted projects"),
            ("sources", len({r[0] for r in s.by_source}), "sources"),
            ("orders", total_orders, "orders"),
            ("rejected", s.rejected_total, "rejected rows"),
        )
    )
    db = html.escape(_primary(s.replica))
    banner = "" if s.projects_total else (
        f'<div class="banner" id="empty-state">No data yet: this warehouse holds no project. Run '
        f"<code>pwh sync rayteams --db {db}</code> (or another source; <code>pwh demo --db {db}</code> "
        "fills it with simulated data), then reload this page.</div>")
    runs = [
        (r[0], r[1], r[2], _Raw(f'<span class="status-{html.escape(str(r[3]))}">{html.escape(str(r[3]))}</span>'),
         r[4], None if r[6] is None else f"{r[6]:.1f} s", r[7], r[8], r[9], r[10], r[11])
        for r in s.runs
    ]
    runs_table = _table(("source", "account", "mode", "status", "started", "took", "listed", "loaded", "deleted", "failed", "rejected"), runs) \
        if runs else _empty("No sync has run yet.")
    funnel = (charts["funnel"] + _table(("stage", "orders at this stage or later", "share of all orders"),
                                        [(label, n, _Raw(f"{share:.1f}%")) for label, n, share in s.funnel], cls="funnel")
              + '<p class="note">Orders counted at their current status (<code>statusType</code>): where today\'s '
                "orders stand, not a conversion rate between stages.</p>"
              + _table(("status type", "product", "currency", "orders", "value"), s.products, limit=15)) \
        if charts["funnel"] else _empty("No orders yet.")
    sections = [
        ("wide", SECTIONS[0], (charts["projects"] + _table(("source", "account", "current", "trashed or archived", "deleted"), s.by_source))
         if charts["projects"] else _empty("No projects yet.")),
        ("", SECTIONS[1], (charts["activity"] + f'<p class="note">Per {s.activity_bucket}, all sources; daily numbers in <code>analytics.activity_daily</code>.</p>')
         if charts["activity"] else _empty("No activity recorded yet.")),
        ("", SECTIONS[2], (charts["storage"] + _table(
            ("account", "owner group", "lab", "projects", "files MB", "attachments MB", "total MB"),
            [(a, o, lab, p, f / 1e6, at / 1e6, t / 1e6) for a, o, lab, p, f, at, t in s.storage], limit=10))
         if charts["storage"] else _empty("No RAYTeams files or attachments yet.")),
        ("", SECTIONS[3], funnel),
        ("", SECTIONS[5], f'<p><b id="rejected-total">{s.rejected_total:,}</b> records in quarantine '
                          '(<code>pipeline.rejected_records</code>), by table and the field the reason names:</p>'
                          + _table(("source", "account", "table", "field", "records"), s.rejected, limit=15)),
        ("wide", SECTIONS[4], runs_table),
    ]
    body = "".join(
        f'<section class="{cls}"><h2>{html.escape(title)}</h2>{content}</section>' for cls, title, content in sections
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
{meta}<title>{TITLE}</title><style>{CSS}</style>{script}</head>
<body><header><h1>{TITLE}</h1><p>Replica <code>{html.escape(s.replica)}</code>, published {_esc(s.published_at)};
ages as of {_esc(s.generated_at)}</p>{data_age(s)}</header>
<main>{banner}<div class="kpis">{kpis}</div>{body}</main>{_theme_script()}</body></html>
"""


def write_report(db: Path | str, out: Path | str) -> Snapshot:
    """Write the report owner-only (it shows the warehouse's content), an older file included."""
    s = snapshot(db)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(render(s))
    return s


# ------------------------------------------------------------------------------ serve

def build_app(db: Path | str, *, refresh_s: int | None = 60):
    from aiohttp import web
    from plotly.offline import get_plotlyjs

    plotly_js = get_plotlyjs().encode()

    async def page(request: web.Request) -> web.Response:
        try:
            s = await asyncio.to_thread(snapshot, db)
        except FileNotFoundError as exc:
            return web.Response(status=503, text=f"{exc}\n", content_type="text/plain")
        return web.Response(text=render(s, plotly_js="/plotly.js", refresh_s=refresh_s), content_type="text/html")

    async def script(request: web.Request) -> web.Response:
        return web.Response(body=plotly_js, content_type="application/javascript",
                            headers={"Cache-Control": "max-age=86400"})

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/plotly.js", script)
    return app


class PortInUseError(PwhError, OSError):
    """The dashboard's port cannot be listened on."""


def serve(db: Path | str, *, port: int, refresh_s: int | None = 60, on_listening=lambda: None) -> None:
    """Serve until SIGINT or SIGTERM. ``on_listening`` is called once the port is bound
    (the URL is worth printing only then); a port that cannot be bound is one
    :class:`PortInUseError`, not aiohttp's traceback."""
    import signal

    from aiohttp import web

    async def run() -> None:
        runner = web.AppRunner(build_app(db, refresh_s=refresh_s))
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, "127.0.0.1", port).start()
            except OSError as exc:
                reason = os.strerror(exc.errno).lower() if exc.errno else "cannot listen"
                raise PortInUseError(f"127.0.0.1:{port}: {reason}; choose another port with --port") from None
            on_listening()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()

    asyncio.run(run())
