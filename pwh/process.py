"""Process settings for ``pwh`` commands: a sync is a batch job that allocates millions of
short-lived objects on top of ~1 million long-lived ones (Prefect, polars, duckdb and
aiohttp as imported), then exits. CPython's defaults suit neither end of that; measured
on a 2,000-project RAYTeams sync (docs/performance.md):

- The cyclic garbage collector's default thresholds (700, 10, 10) run ~730 collections
  during the imports and the sync, ~0.65 s of CPU, and each of the 5 full ones walks
  every imported object again (with ours: 57 collections, ~0.25 s). Parsed JSON and
  frames are freed by reference counting; cycles are rare.
- Interpreter teardown after the work is done (a last full collection, then freeing every
  module's objects one by one) takes ~0.5 s, on every run, for nothing: the operating
  system reclaims the memory anyway.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading

# A young collection after 20,000 net new container objects instead of 700: ~30x fewer
# collections. Measured at 20,000 projects: CPU 44-45 s -> 40-43 s with peak RSS as with
# the defaults (454-468 MB); 50,000 saved a little more CPU but held ~17 MB more of
# cyclic garbage between collections.
GC_THRESHOLDS = (20_000, 10, 10)


def tune_collector() -> None:
    """Collect cycles far less often (call first thing: the imports benefit too)."""
    gc.set_threshold(*GC_THRESHOLDS)


def exit_status(code: object) -> int:
    """The status ``sys.exit(code)`` would give (printing a message code, as it does)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def exit_without_teardown(code: object) -> None:
    """Exit like ``sys.exit(code)`` minus the interpreter's teardown (mypy's ``hard_exit``
    skips it too). What a normal exit does first still happens, in its order: threading's
    exit hooks (Prefect drains its event and log workers there, so the run's records
    reach the server) and the wait for non-daemon threads, then the ``atexit`` handlers
    (logging flushes), then the standard streams are flushed and the process ends. Files
    and connections are closed by then (every one is opened in a ``with``), and a DuckDB
    commit is durable once it returns."""
    status = exit_status(code)
    # The two steps a normal exit takes, through CPython's own (private) functions;
    # tests/test_process_exit.py compares their effects and order with a normal exit.
    threading._shutdown()  # type: ignore[attr-defined]  # private, so not in typeshed
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said through it
            pass
    os._exit(status)
