"""The dashboard and the report in a real browser: Debian's headless Chromium (installed
here if missing) loads `pwh report`'s file offline and `pwh dashboard`'s live page, takes
a screenshot of each, and the rendered DOM has every section title, the warehouse's own
numbers, and the four charts drawn (so plotly.js ran without any network)."""

from __future__ import annotations

import fcntl
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
from sources.rayteams.dataset import DatasetConfig, RayteamsDataset
from sources.rayteams.simulator import SimulatorOptions, running_simulator
from warehouse.replica import replica_path

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
    from flows.rayteams import sync_rayteams

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
            "projects": con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NULL").fetchall()[0][0],
            "deleted": con.execute("SELECT count(*) FROM rayteams.projects WHERE deleted_at IS NOT NULL").fetchall()[0][0],
            "orders": con.execute("SELECT count(*) FROM rayteams.orders JOIN rayteams.projects USING (account, project_id) "
                                  "WHERE deleted_at IS NULL").fetchall()[0][0],
            "rejected": con.execute("SELECT count(*) FROM pipeline.rejected_records").fetchall()[0][0],
        }
    finally:
        con.close()
    assert numbers["rejected"] > 0 and numbers["deleted"] == 4
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
