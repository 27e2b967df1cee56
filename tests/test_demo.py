"""`pwh demo` as a newcomer runs it: a fresh folder, no Prefect server, no settings."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import duckdb


def test_pwh_demo_in_a_fresh_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PWH_", "RAYTEAMS_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    pwh = Path(sys.executable).with_name("pwh")
    result = subprocess.run(
        [str(pwh), "demo", "--projects", "30"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "success: 30 projects listed, 30 new" in out
    for title in ("Projects by status", "Orders by status type", "Memo and comment activity"):
        assert title in out
    db = tmp_path / "warehouse.duckdb"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    # It ends by pointing at the dashboard, over the readers' replica the sync published.
    assert out.rstrip().splitlines()[-1].startswith("Look at it: pwh dashboard --db warehouse.duckdb")
    assert stat.S_IMODE((tmp_path / "warehouse.replica.duckdb").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / ".pwh" / "pseudonym.key").stat().st_mode) == 0o600
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM rayteams.projects").fetchall()[0][0] == 30
        assert con.execute("SELECT status FROM pipeline.runs").fetchall() == [("success",)]
    finally:
        con.close()
