"""How a failed command reads on a user's console: one line. The project's own errors
(:class:`pwh.errors.PwhError`) say what to fix (their messages are written for that, and
kept free of secrets and server text); anything else is a bug or an environment problem:
its type on the console, its traceback in an owner-only log file. ``pwh --debug`` prints
tracebacks to the console."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pwh.errors import PwhError, SettingError
from pwh.settings import LOG_FILE, environment_value

_debug = False


def enable_debug() -> None:
    """Tracebacks and debug logs on the console (``pwh --debug``)."""
    global _debug
    _debug = True
    logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "DEBUG")


def debugging() -> bool:
    return _debug


@contextmanager
def keep_run_logs_off_console() -> Iterator[None]:
    """Prefect's flow and task run loggers repeat every failure with its traceback on the
    console (through the root logger); meanwhile they reach only the run's records on the
    server (their own API handler). --debug keeps them on the console."""
    loggers = [] if _debug else [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    before = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, before):
            logger.propagate = propagate


def log_file() -> Path:
    """``PWH_LOG_FILE``, else ``$XDG_STATE_HOME/pwh/pwh.log`` (``~/.local/state/pwh/pwh.log``)."""
    configured = LOG_FILE.read()
    if configured is not None:
        return configured
    state = environment_value("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "pwh" / "pwh.log"


def describe_failure(exc: BaseException) -> str:
    """The one line a failed command prints (after ``pwh: error:``): a project error's own
    message, else :func:`describe_unexpected`."""
    if not isinstance(exc, PwhError):
        if "duckdb" in sys.modules:  # only then can it be DuckDB's; importing it here would cost every command
            from pwh.warehouse.connection import memory_error
            from pwh.warehouse.integrity import out_of_memory

            if out_of_memory(exc):  # a read, a scan or a checkpoint (writes raise WarehouseMemoryError themselves)
                if _debug:
                    traceback.print_exception(exc, file=sys.stderr)
                error = memory_error("reading or checking the warehouse", writer=False)
                return f"{type(error).__name__}: {error}"
        return describe_unexpected(exc)
    if _debug:
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, SettingError):  # says what to fix, nothing else
        return str(exc)
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def describe_unexpected(exc: BaseException) -> str:
    """The line for an exception the project did not raise on purpose: its type (and an
    OSError's reason), never its message; its traceback goes to the log file (or, with
    --debug, to stderr)."""
    what = f"unexpected {type(exc).__name__}{_os_reason(exc)}"
    if _debug:
        traceback.print_exception(exc, file=sys.stderr)
        return f"{what} (traceback above)"
    try:
        path = write_traceback(exc)
    except OSError as failed:
        return f"{what}; its details could not be written to {log_file()} ({failed.strerror}): run again with --debug"
    return f"{what}; details in {path}"


def _os_reason(exc: BaseException) -> str:
    """The operating system's own words and file name, for an OSError: the only parts of a
    foreign exception known to be safe to print (its message may hold anything)."""
    if not isinstance(exc, OSError) or not exc.strerror:
        return ""
    return f" ({exc.strerror.lower()}" + (f": {exc.filename}" if isinstance(exc.filename, str) else "") + ")"


def write_traceback(exc: BaseException) -> Path:
    """Append the traceback to the log file, created owner-only (0600, its folder 0700)."""
    path = log_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8", errors="replace") as handle:
        os.fchmod(fd, 0o600)  # a file created by an older version or another umask
        handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S%z')} pwh {_command()}\n")
        handle.writelines(traceback.format_exception(exc))
    return path


def _command() -> str:
    """The subcommand's words (``sync rayteams``), never its options: they may hold a token."""
    args = sys.argv[1:]
    while args and args[0].startswith("--"):  # the global flags (--debug)
        args = args[1:]
    words = []
    for arg in args:
        if not arg.isidentifier():
            break
        words.append(arg)
    return " ".join(words)
