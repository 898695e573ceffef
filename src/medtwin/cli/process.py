"""The start and end of a ``medtwin`` process: fewer garbage collections, and an exit without teardown.

The cyclic garbage collector runs every 700 container allocations by default;
importing numba, SciPy, pandas, SQLAlchemy and matplotlib allocates millions of
objects that all live until the process ends, so those collections (several
full ones among them) cost a ``recommend`` process 0.3 s of CPU and free
nothing.  :func:`run_and_exit` raises the thresholds to :data:`GC_THRESHOLDS`
(a collection every 50,000 allocations: cycles are still collected, and a
long-running command such as ``serve`` holds at most that many more objects
before they are; the peak memory of a ``recommend`` stays 386 MB).

A ``medtwin recommend`` process spends 0.4-0.5 s of CPU *after* its work is
done, in the interpreter's finalization: every module of numba, SciPy, pandas,
SQLAlchemy and matplotlib is torn down and its objects freed one by one, only
for the operating system to reclaim the whole address space a moment later.
:func:`run_and_exit` (the console entry point :func:`medtwin.cli.main`, also
``python -m medtwin``) runs the command and then ends the process the way the
interpreter would, minus that teardown:

1. the command runs (:data:`medtwin.cli.app`); its exit status is what
   ``sys.exit`` would give (``None`` → 0, an int as it is, any other value is
   printed on stderr and gives 1);
2. the ``atexit`` handlers run, as at a normal exit (logging flushes and closes
   its files, multiprocessing joins its helpers, coverage saves its data ...);
3. stdout and stderr are flushed (a closed pipe gives status 120, as Python's
   own exit does);
4. ``os._exit(status)``.

Every file medtwin writes is closed when written and every database change is
committed before a command returns, so nothing is lost by skipping the
teardown.  The fast end is taken only when the command returned or raised
``SystemExit`` and no other Python thread is alive; otherwise (an exception, a
thread still running, ``MEDTWIN_FAST_EXIT=0``) the process exits as usual.
In-process callers (tests, :class:`typer.testing.CliRunner`, an application
embedding :data:`~medtwin.cli.app`) never come here.
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading

__all__ = ["FAST_EXIT_SWITCH", "GC_THRESHOLDS", "exit_status", "run_and_exit"]

#: Environment variable that turns the fast end off (``0``, ``off``, ``false``, ``no``).
FAST_EXIT_SWITCH = "MEDTWIN_FAST_EXIT"
#: The garbage collector's thresholds in a ``medtwin`` process (Python's default is (700, 10, 10)).
GC_THRESHOLDS = (50_000, 20, 100)


def exit_status(code) -> int:
    """The process exit status ``sys.exit(code)`` gives (a non-integer is printed on stderr: status 1).

    Examples
    --------
    >>> exit_status(None), exit_status(3), exit_status(True)
    (0, 3, 1)
    """
    if code is None:
        return 0
    if isinstance(code, int):
        return int(code)
    print(code, file=sys.stderr)
    return 1


def _flushed(status: int) -> int:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe (`medtwin ... | head`) or a closed stream
            status = status or 120
    return status


def run_and_exit(app) -> None:
    """Run the command line ``app`` and end the process without the interpreter's teardown (module docstring)."""
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        app()
        code = None
    except SystemExit as exc:
        code = exc.code
    if os.environ.get(FAST_EXIT_SWITCH, "").strip().lower() in {"0", "off", "false", "no"} \
            or threading.active_count() > 1:
        sys.exit(code)
    status = exit_status(code)
    try:
        atexit._run_exitfuncs()  # what a normal exit runs before finalization (CPython's own hook)
    finally:
        os._exit(_flushed(status))
