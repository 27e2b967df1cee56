"""Running a measured command in a child process: wall time, CPU time and peak RSS of
that child (GNU ``time``, or ``os.wait4``: the child's own rusage, descendants it waited
for included), and its last stdout line parsed as JSON when it prints one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PWH = str(Path(sys.executable).with_name("pwh"))
TIME = Path("/usr/bin/time")


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
    """Run ``cmd`` to completion and measure it (the child alone, not this process).

    CPU and peak RSS come from GNU time when it is installed: a child forked from this
    (larger) process would otherwise report this process's RSS as its own peak, since
    ``ru_maxrss`` counts the pages it had between fork and exec."""
    usage_file = None
    if TIME.exists():
        fd, usage_file = tempfile.mkstemp(prefix="pwh-bench-usage-")
        os.close(fd)
        cmd = [str(TIME), "-f", "%U %S %M", "-o", usage_file, *cmd]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = _communicate(proc, timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    # Reaped here (not by Popen) to read the child's rusage.
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    cpu, peak_kib = usage.ru_utime + usage.ru_stime, usage.ru_maxrss
    if usage_file is not None:
        try:
            fields = Path(usage_file).read_text().split()[-3:]
            cpu, peak_kib = float(fields[0]) + float(fields[1]), int(fields[2])
        except (ValueError, IndexError):
            pass  # GNU time wrote a complaint instead (the child was killed): keep wait4's figures
        finally:
            os.unlink(usage_file)
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    return Measured(
        wall_s=wall,
        cpu_s=cpu,
        peak_rss_mb=peak_kib / 1024,  # KiB on Linux
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
