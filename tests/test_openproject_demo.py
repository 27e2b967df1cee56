"""`pwh demo --source openproject` as a newcomer runs it: a fresh folder, no Prefect
server, no settings, no OPENPROJECT_API_KEY."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb


def test_pwh_demo_openproject_in_a_fresh_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PWH_", "RAYTEAMS_", "OPENPROJECT_"))}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    pwh = Path(sys.executable).with_name("pwh")
    result = subprocess.run(
        [str(pwh), "demo", "--projects", "12", "--source", "openproject"], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "success: 12 projects listed, 12 new" in out
    for title in ("OpenProject: projects by status", "OpenProject: work packages by type", "OpenProject: custom fields"):
        assert title in out
    assert "rayteams.projects" not in out  # only the chosen source
    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM openproject.projects").fetchall()[0][0] == 12
        assert con.execute("SELECT source, status FROM pipeline.runs").fetchall() == [("openproject", "success")]
    finally:
        con.close()
