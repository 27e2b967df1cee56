"""The processes the benchmark talks to: the RAYTeams simulator (``pwh simulate
rayteams``, in its own process) and, for the Prefect figures, a Prefect server."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from bench.procs import PWH, PYTHON, ROOT, free_port

TOKEN = "bench-token"
CLIENT_ID = "bench-client"


def _http(method: str, url: str, timeout: float = 10.0) -> Any:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return orjson.loads(answer.read())


def _wait_until_up(url: str, proc: subprocess.Popen, what: str, timeout_s: float) -> float:
    started = time.perf_counter()
    deadline = started + timeout_s
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it answered")
        try:
            _http("GET", url, timeout=2.0)
            return time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer {url} within {timeout_s:.0f} s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class Simulator:
    """A running ``pwh simulate rayteams`` process."""

    root: str  # http://127.0.0.1:PORT
    projects: int
    seed: int
    latency_ms: float

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1.0"

    def reset_stats(self) -> None:
        _http("POST", f"{self.root}/_sim/stats/reset")

    def stats(self) -> dict[str, Any]:
        return _http("GET", f"{self.root}/_sim/stats")

    def truth(self, strategy: str) -> dict[str, int]:
        return _http("GET", f"{self.root}/_sim/truth?strategy={strategy}", timeout=600)

    def secrets(self) -> dict[str, Any]:
        return _http("GET", f"{self.root}/_sim/secrets", timeout=600)


@contextmanager
def simulator(projects: int, *, seed: int, latency_ms: float) -> Iterator[Simulator]:
    port = free_port()
    cmd = [PWH, "simulate", "rayteams", "--projects", str(projects), "--seed", str(seed),
           "--latency-ms", str(latency_ms), "--port", str(port), "--token", TOKEN, "--client-id", CLIENT_ID]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        sim = Simulator(f"http://127.0.0.1:{port}", projects, seed, latency_ms)
        _wait_until_up(f"{sim.root}/_sim/health", proc, "the simulator", 60)
        yield sim
    finally:
        _stop(proc)


@dataclass
class PrefectServer:
    api_url: str
    startup_s: float


@contextmanager
def prefect_server(home: str) -> Iterator[PrefectServer]:
    """``prefect server start`` on a loopback port with its own PREFECT_HOME."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": home, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_LOGGING_LEVEL": "WARNING", "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    cmd = [PYTHON, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        api = f"http://127.0.0.1:{port}/api"
        startup = _wait_until_up(f"{api}/health", proc, "the Prefect server", 180)
        yield PrefectServer(api, startup)
    finally:
        # The server runs workers in its own session: stop the whole group it leads.
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, 15)
            except ProcessLookupError:
                pass
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
