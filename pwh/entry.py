"""The ``pwh`` executable's first lines. Importing the commands takes a few hundred
milliseconds; a Ctrl-C meanwhile ends the process in one line with exit 130, as it
does once a command runs, instead of a traceback from whichever import it interrupted."""

from __future__ import annotations

import os
import signal
import sys


def main() -> None:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from pwh.cli import main as run_command

    # From here on each command handles Ctrl-C itself (a sync records its run interrupted).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_command()


def _interrupted_while_starting(signum: int, frame: object) -> None:
    sys.stderr.write("pwh: interrupted before anything started\n")
    sys.stderr.flush()
    os._exit(128 + signum)  # nothing to clean up yet: no file, connection or run is open
