"""The dashboard and the report in a real browser: Debian's headless Chromium (installed
here if missing) loads `pwh report`'s file offline and `pwh dashboard`'s live page, takes
a screenshot of each, and the rendered DOM has every section title, the warehouse's own
numbers, and the four charts drawn (so plotly.js ran without any network)."""

from __future__ import annotations

import fcntl
import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb
import pytest

from pwh.dashboard import SECTIONS, TITLE
from pwh.simulators.rayteams.dataset import DatasetConfig, RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator
from pwh.warehouse.replica import replica_path

TOKEN, CLIENT_ID = "tok-dashboard-SECRET-77e0", "client-dashboard"
ROOT = Path(__file__).resolve().parent.parent
# Screenshots land here (build/ is git-ignored) so a person can look at them.
SCREENSHOTS = Path(os.environ.get("PWH_SCREENSHOT_DIR", ROOT / "build" / "screenshots"))
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
)


def chromium() -> str:
    """Debian's chromium, installed once (a file lock keeps parallel runs from racing apt)."""
    found = shutil.which("chromium")
    if found:
        return found
    if not shutil.which("apt-get") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and cannot be: no apt-get, or not root")
    with open("/tmp/pwh-chromium-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shutil.which("chromium"):
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
            # The CJK fonts draw the Korean product names and currency (원) instead of boxes.
            subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "fonts-noto-cjk"],
                           check=True, env=env, timeout=1200)
    return shutil.which("chromium") or pytest.fail("apt-get installed chromium but it is not on PATH")


def render(url: str, screenshot: Path) -> str:
    """Load ``url`` headless, let its scripts run, screenshot it; return the rendered DOM."""
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    screenshot.unlink(missing_ok=True)
    done = subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, "--hide-scrollbars", "--window-size=1400,3000",
         "--virtual-time-budget=10000", f"--screenshot={screenshot}", "--dump-dom", url],
        capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert screenshot.stat().st_size > 50_000, "the screenshot is (nearly) blank"
    return done.stdout


@pytest.fixture(scope="module")
async def warehouse(tmp_path_factory, prefect_harness):
    from pwh.flows.prefect_flows import sync_rayteams

    os.environ["RAYTEAMS_TOKEN"], os.environ["RAYTEAMS_CLIENT_ID"] = TOKEN, CLIENT_ID
    db = tmp_path_factory.mktemp("dashboard") / "warehouse.duckdb"
    dataset = RayteamsDataset(DatasetConfig(seed=51, n_projects=40, invalid_records=3))
    async with running_simulator(dataset, SimulatorOptions(token=TOKEN, client_id=CLIENT_ID)) as base_url:
        await sync_rayteams(base_url=base_url, db_path=str(db), account="lab-a")
        dataset.mutate(seed=1, remove_share=0.1)
        await sync_rayteams(base_url=base_url, db_path=str(db), account="lab-a")
    con = duckdb.connect(str(replica_path(db)), read_only=True)
    try:
        numbers = {
            "projects": con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NULL "
                                    "AND NOT coalesce(is_trash, false) AND NOT coalesce(is_archive, false)").fetchall()[0][0],
            "shelved": con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NULL "
                                   "AND (is_trash OR is_archive)").fetchall()[0][0],
            "deleted": con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NOT NULL").fetchall()[0][0],
            "orders": con.execute("SELECT count(*) FROM rayteams.orders JOIN rayteams.projects USING (account, project_id) "
                                  "WHERE deleted_at IS NULL").fetchall()[0][0],
            "rejected": con.execute("SELECT count(*) FROM pipeline.rejected_records").fetchall()[0][0],
        }
    finally:
        con.close()
    assert numbers["rejected"] > 0 and numbers["deleted"] == 4 and numbers["shelved"] > 0
    return db, numbers


def check_page(dom: str, numbers: dict) -> None:
    assert f"<title>{TITLE}</title>" in dom
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in dom, title
    for key, value in numbers.items():
        assert re.search(rf'id="kpi-{key}"><b>{value:,}</b>', dom), (key, value)
    assert dom.count('class="user-select-none svg-container"') == 4, "the four charts were drawn"
    assert "rayteams" in dom and "lab-a" in dom and "success" in dom


def test_report_is_one_offline_file_that_renders_in_chromium(warehouse, tmp_path):
    db, numbers = warehouse
    out = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "pwh.cli", "report", "--db", str(db), "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page), "the report loads nothing from elsewhere"
    screenshot = SCREENSHOTS / "report.png"
    check_page(render(out.as_uri(), screenshot), numbers)
    print(f"\nreport screenshot: {screenshot}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_dashboard_renders_in_chromium(warehouse):
    db, numbers = warehouse
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pwh.cli", "dashboard", "--db", str(db), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.3)
        screenshot = SCREENSHOTS / "dashboard.png"
        dom = render(f"http://127.0.0.1:{port}/", screenshot)
        check_page(dom, numbers)
        assert '<script src="/plotly.js">' in dom
        print(f"\ndashboard screenshot: {screenshot}")
    finally:
        server.terminate()
        server.wait(timeout=30)


# ------------------------------------------------------- the page's content, HTML-level
# A warehouse written by hand (no sync, no browser): what the page must say about it is
# known in advance.

def hand_warehouse(path: Path, *, with_data: bool) -> Path:
    from pwh.warehouse.connection import connect
    from pwh.warehouse.migrations import migrate
    from pwh.warehouse.replica import publish_replica, refresh_analyst_layer

    con = connect(path)
    try:
        migrate(con)
        if with_data:
            con.execute("""INSERT INTO rayteams.projects (account, project_id, name, is_trash, is_archive, created_at, deleted_at)
                           VALUES ('lab-a', 'p1', 'current', false, false, now(), NULL),
                                  ('lab-a', 'p2', 'current, no flags', NULL, NULL, now(), NULL),
                                  ('lab-a', 'p3', 'trashed', true, false, now(), NULL),
                                  ('lab-a', 'p4', 'archived', false, true, now(), NULL),
                                  ('lab-a', 'p5', 'deleted', false, false, now(), now())""")
            # 8 orders of current projects: 3 NEW, 2 INPROGRESS, 2 CLOSED, 1 without a type;
            # the deleted project's order is not counted.
            con.execute("""INSERT INTO rayteams.orders (account, project_id, sk, status_type, product_name, product_price, product_currency)
                           SELECT 'lab-a', CASE WHEN i < 8 THEN 'p1' ELSE 'p5' END, 'order:' || i,
                                  ['NEW', 'NEW', 'NEW', 'INPROGRESS', 'INPROGRESS', 'CLOSED', 'CLOSED', NULL, 'CLOSED'][i + 1],
                                  'Crown', 10, '원' FROM range(9) t(i)""")
            # lab-a: loaded 2 h ago, then failed 10 min ago; lab-b: failed long ago, loaded 3 d ago.
            con.execute("""INSERT INTO pipeline.runs (run_id, source, account, mode, status, started_at, ended_at, error) VALUES
                ('r1', 'rayteams', 'lab-a', 'incremental', 'success', now() - INTERVAL 3 HOUR, now() - INTERVAL 2 HOUR, NULL),
                ('r2', 'rayteams', 'lab-a', 'incremental', 'failed', now() - INTERVAL 11 MINUTE, now() - INTERVAL 620 SECOND,
                 'listing answered 401: check RAYTEAMS_TOKEN'),
                ('r3', 'rayteams', 'lab-b', 'incremental', 'failed', now() - INTERVAL 5 DAY, now() - INTERVAL 5 DAY, 'old trouble'),
                ('r4', 'rayteams', 'lab-b', 'full_refresh', 'partial', now() - INTERVAL 73 HOUR, now() - INTERVAL 72 HOUR, NULL)""")
        refresh_analyst_layer(con)
        publish_replica(con, path)
    finally:
        con.close()
    return path


def report_html(db: Path, out: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "pwh.cli", "report", "--db", str(db), "--out", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    return out.read_text()


def text_of(page: str) -> str:
    """The page's visible words, tags dropped, whitespace collapsed."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    body = re.sub(r"</?(b|span|code)\b[^>]*>", "", body)  # inline: no word break
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", body).split()))


def test_page_shows_data_age_failures_current_projects_and_funnel_shares(tmp_path):
    page = report_html(hand_warehouse(tmp_path / "w.duckdb", with_data=True), tmp_path / "report.html")
    words = text_of(page)
    # Data age at the top, in the header, per source and account.
    header = text_of(page.split("</header>")[0])
    assert "rayteams/lab-a: data 2.0 h old" in header
    assert "last run failed 10 min ago" in header and "listing answered 401: check RAYTEAMS_TOKEN" in header
    assert "rayteams/lab-b: data 3.0 d old" in header and "(partial: some projects failed)" in header
    assert "old trouble" not in header, "a failure older than the last success is history, not news"
    # Current = not deleted, not trashed, not archived.
    for key, value in (("projects", 2), ("shelved", 2), ("deleted", 1), ("orders", 8)):
        assert re.search(rf'id="kpi-{key}"><b>{value}</b>', page), key
    # Each stage's orders at it or later, as a share of all orders, and nothing else.
    assert "placed (all orders) 8 100.0%" in words
    assert "in progress or closed 4 50.0%" in words
    assert "closed 2 25.0%" in words
    figures = page.split("</header>")[1]  # plotly.js itself, in the head, knows every textinfo
    assert '"textinfo":"text"' in figures and "percent" not in figures  # no "percent previous/total"
    assert "conversion rate between stages" in words
    assert "KRW" in words and "원" not in words
    assert 'id="empty-state"' not in page
    # Dark mode: colours follow the reader's scheme, the charts' template too.
    assert "@media (prefers-color-scheme: dark)" in page and '"dark":' in page and "Plotly.relayout" in page


def test_empty_warehouse_says_so_and_names_the_command(tmp_path):
    db = hand_warehouse(tmp_path / "empty.duckdb", with_data=False)
    page = report_html(db, tmp_path / "report.html")
    words = text_of(page)
    assert f"No data yet: this warehouse holds no project. Run pwh sync rayteams --db {db}" in words
    assert f"pwh demo --db {db}" in words
    for sentence in ("No projects yet.", "No activity recorded yet.", "No orders yet.", "No sync has run yet."):
        assert sentence in words, sentence
    assert 'class="plotly-graph-div"' not in page, "no empty axes"
