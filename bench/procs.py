"""Running a measured command in a child process: wall time, CPU time and peak RSS of
that child (``os.wait4`` gives the child's own rusage, descendants it waited for included),
and its last stdout line parsed as JSON when it prints one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PWH = str(Path(sys.executable).with_name("pwh"))


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] = field(default_factory=dict)  # the child's own JSON line, if any

    def check(self, what: str) -> Measured:
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise RuntimeError(f"{what} exited with {self.returncode}:\n{tail}")
        return self


def measure(cmd: list[str], env: dict[str, str], *, timeout_s: float = 900) -> Measured:
    """Run ``cmd`` to completion and measure it (the child alone, not this process)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # communicate() reads the pipes; the child is reaped by wait4 below, not by Popen.
    try:
        out, err = _communicate(proc, timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    return Measured(
        wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,  # KiB on Linux
        returncode=proc.returncode,
        stdout=stdout,
        stderr=stderr,
        report=_last_json_line(stdout),
    )


def _communicate(proc: subprocess.Popen, timeout_s: float) -> tuple[bytes, bytes]:
    """Read both pipes to EOF without reaping the child (so wait4 still sees it)."""
    import selectors

    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sel = selectors.DefaultSelector()
    for pipe in (proc.stdout, proc.stderr):
        sel.register(pipe, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while sel.get_map():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        for key, _ in sel.select(min(remaining, 1.0)):
            data = os.read(key.fd, 65536)
            if data:
                chunks[key.fd].append(data)
            else:
                sel.unregister(key.fileobj)
    sel.close()
    result = b"".join(chunks[out_fd]), b"".join(chunks[err_fd])
    proc.stdout.close()
    proc.stderr.close()
    return result


def _last_json_line(stdout: str) -> dict[str, Any]:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return orjson.loads(line)
            except orjson.JSONDecodeError:
                return {}
    return {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def emit(report: dict[str, Any]) -> None:
    """What a measured child prints last: one JSON line for the harness."""
    sys.stdout.write(orjson.dumps(report).decode() + "\n")
    sys.stdout.flush()
