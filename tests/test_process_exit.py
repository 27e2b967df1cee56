"""``pwh`` ends its process without the interpreter's teardown (pwh/process.py): what a
normal exit guarantees must still hold. Each case runs in a real child interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pwh.process import exit_status


def run_child(body: str) -> subprocess.CompletedProcess:
    code = "from pwh.process import exit_without_teardown\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_exit_handlers_run_and_streams_are_flushed_before_the_status():
    done = run_child("""
        import atexit, logging
        logging.basicConfig(filename=__import__("os").devnull)
        atexit.register(lambda: print("exit handler ran"))
        print("written without a newline", end="")
        print("to stderr", end="", file=__import__("sys").stderr)
        exit_without_teardown(3)
    """)
    assert done.returncode == 3
    assert done.stdout == "written without a newlineexit handler ran\n"
    assert done.stderr == "to stderr"


def test_threading_exit_hooks_run_first_as_in_a_normal_exit():
    """Prefect drains its event and log workers from threading's exit hooks: they must run,
    and before the atexit handlers, as the interpreter orders them."""
    hooks = ("import atexit, threading\n"
             "atexit.register(lambda: print('atexit handler'))\n"
             "threading._register_atexit(lambda: print('threading hook'))\n")
    done = run_child(hooks + "exit_without_teardown(0)\n")
    normal = run_child(hooks)
    assert done.stdout == normal.stdout == "threading hook\natexit handler\n"


def test_a_running_non_daemon_thread_is_waited_for():
    done = run_child("""
        import threading, time
        def late():
            time.sleep(0.3)
            print("thread finished")
        threading.Thread(target=late).start()
        exit_without_teardown(0)
    """)
    assert done.returncode == 0
    assert done.stdout == "thread finished\n"


@pytest.mark.parametrize(("code", "status", "stderr"), [
    (None, 0, ""), (0, 0, ""), (2, 2, ""), ("pwh: error: bad input", 1, "pwh: error: bad input\n"),
])
def test_the_status_is_the_one_sys_exit_gives(code, status, stderr, capsys):
    assert exit_status(code) == status
    assert capsys.readouterr().err == stderr
    done = run_child(f"exit_without_teardown({code!r})")
    normal = subprocess.run([sys.executable, "-c", f"import sys; sys.exit({code!r})"], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (normal.returncode, normal.stderr) == (status, stderr)


def test_the_pwh_command_exits_with_its_status_and_its_message(tmp_path):
    missing = tmp_path / "missing.duckdb"
    done = subprocess.run([sys.executable, "-m", "pwh.cli", "publish", "--db", str(missing)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "pwh: error:" in done.stderr
    assert not missing.exists()
