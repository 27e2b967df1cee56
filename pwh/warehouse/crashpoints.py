"""Named points where the crash-safety test kills a sync (test-only, inert otherwise).

``PWH_CRASH_AT=<point>[:<n>]`` in a sync's environment makes the process SIGKILL itself
the n-th time (default 1st) it reaches ``<point>``: no cleanup, no ``finally``, no
flush, exactly like ``kill -9`` at that instant. Without the variable
:func:`crash_point` is a dictionary lookup that does nothing. The points sit where a
crash is most dangerous: between a batch's fetch and its load, inside the load
transaction before COMMIT, right after COMMIT, and inside the deletion marking.

``PWH_FAIL_AT=<point>`` makes :func:`fail_point` raise the error a full disk gives
(``OSError`` ENOSPC) there instead: a disk can only be filled on demand where a test may
mount a small tmpfs (root).
"""

from __future__ import annotations

import errno
import os
import signal

from pwh.settings import CRASH_AT, FAIL_AT

_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    target = CRASH_AT.read()
    if target is None:
        return
    point, nth = target
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == nth:
        os.kill(os.getpid(), signal.SIGKILL)


def fail_point(name: str) -> None:
    if FAIL_AT.read() == name:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
