"""Real processes for the tests that need them: a Prefect server, the RAYTeams simulator
on a background thread, `pwh` subprocesses, and the Prefect REST API."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from pwh.simulators.rayteams.dataset import RayteamsDataset
from pwh.simulators.rayteams.simulator import SimulatorOptions, running_simulator

VENV_BIN = Path(sys.executable).parent
TOKEN = "tok-SECRET-live-91c2"
CLIENT_ID = "client-SECRET-live-3b7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def prefect_server(home: Path, *, startup_timeout_s: float = 240) -> Iterator[str]:
    """`prefect server start` on a free loopback port with its own PREFECT_HOME; yields
    the API URL. Services a scheduled run does not need are switched off to save CPU."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_FOREMAN_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_REPOSSESSOR_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    log = open(home / "server.log", "wb")
    process = subprocess.Popen(
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"prefect server did not start; see {home / 'server.log'}")
            time.sleep(0.5)
        yield url
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen, timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL: this process only, by its own handle."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class SimulatorThread:
    """The RAYTeams simulator served from a background thread's event loop, so that
    synchronous test code can run subprocesses against it."""

    def __init__(self, dataset: RayteamsDataset, options: SimulatorOptions) -> None:
        self.dataset = dataset
        self.options = options
        self.base_url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with running_simulator(self.dataset, self.options) as base_url:
            self.base_url = base_url
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> SimulatorThread:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("simulator did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def admin(self) -> str:
        return self.base_url.rsplit("/v1.0", 1)[0] + "/_sim"

    def stats(self) -> dict:
        return httpx.get(f"{self.admin}/stats", timeout=10).json()

    def reset_stats(self) -> None:
        httpx.post(f"{self.admin}/stats/reset", timeout=10)


def pwh_env(api_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a `pwh` subprocess: credentials as variables, never arguments."""
    env = {**os.environ, "RAYTEAMS_TOKEN": TOKEN, "RAYTEAMS_CLIENT_ID": CLIENT_ID}
    for name in ("PWH_CRASH_AT", "PWH_FAIL_AT", "PREFECT_API_URL", "PWH_LOCK_WAIT_S", "PWH_DUCKDB_MEMORY"):
        env.pop(name, None)
    if api_url:
        env["PREFECT_API_URL"] = api_url
    env.update(extra)
    return env


def pwh(*args: str, env: dict[str, str], cwd: Path | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "pwh"), *args], env=env, cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
    )


def flow_runs(api_url: str, deployment_id: str | None = None) -> list[dict]:
    body: dict = {"limit": 200}
    if deployment_id:
        body["deployments"] = {"id": {"any_": [deployment_id]}}
    response = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=20)
    response.raise_for_status()
    return response.json()


def deployments(api_url: str) -> list[dict]:
    response = httpx.post(f"{api_url}/deployments/filter", json={}, timeout=20)
    response.raise_for_status()
    return response.json()
