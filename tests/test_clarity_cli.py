"""`pwh simulate clarity` and `pwh sync clarity` as a user runs them (separate processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PWH = [sys.executable, "-m", "pwh.cli"]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_bad_filters_fail_with_one_line_before_any_request(tmp_path):
    env = {**os.environ, "CLARITY_USERNAME": "u", "CLARITY_PASSWORD": "p"}
    for args, message in (
        (["--open-date", "2024-13-01"], "open-date must be a date YYYY-MM-DD"),
        (["--udf", "Project Type=RNA"], "UDF filter must look like"),
        (["--since", "yesterday"], "ISO 8601 time stamp with a zone"),
    ):
        done = subprocess.run(
            [*PWH, "sync", "clarity", "--base-url", "http://127.0.0.1:9/api/v2", "--db", str(tmp_path / "w.duckdb"), *args],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
        )
        assert done.returncode == 1, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "w.duckdb").exists()


def test_simulate_serves_paged_xml():
    port = free_port()
    proc = subprocess.Popen([*PWH, "simulate", "clarity", "--port", str(port), "--projects", "7", "--page-size", "3"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_sim/health", timeout=2) as answer:
                    assert b'"projects":7' in answer.read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "the simulator did not start"
                time.sleep(0.3)
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/projects?start-index=3",
                                         headers={"Authorization": "Basic c2ltLXVzZXI6c2ltLXBhc3N3b3Jk"})
        with urllib.request.urlopen(request, timeout=5) as answer:
            body = answer.read().decode()
        assert body.count("<project ") == 3 and "<previous-page" in body and "start-index=6" in body
    finally:
        proc.terminate()
        proc.wait(timeout=10)
