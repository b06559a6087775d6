"""Run independent tasks on worker processes, a bounded number in flight at a time.

``concurrent.futures`` rather than ``multiprocessing.Pool``: when a worker dies (killed, out of
memory) the executor reports it instead of waiting forever. Workers are forked while TensorFlow
is not loaded (instant start, nothing to import); after TensorFlow has been imported, forking is
unsafe, so they are started by a fork server instead.

Large read-only data (a whole dataset) reaches the workers as ``shared``, handed to each worker
once when it starts: a forked worker simply inherits it (no copy, no pickling), so a task needs
to carry only indices, not megabytes of pixels through a pipe. Where its arrays are mapped files
(:mod:`cifarkit.sources.spill`, as the export command reads them), a worker unmaps the pages a
task read once it is done, so it holds the images of the task at hand, not of every task it ran.

A worker must not outlive the command that started it: after a ``kill -9`` of the parent, the
workers would wait on their task pipe forever (reparented to init). Each worker therefore asks
the kernel to kill it when its parent dies (Linux ``PR_SET_PDEATHSIG``) and also runs a watchdog
thread that exits once the parent is gone (every platform; within about a second).
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..errors import CifarkitError
from ..sources.spill import release_pages


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _context():
    method = "forkserver" if "tensorflow" in sys.modules or sys.platform != "linux" else "fork"
    if method not in multiprocessing.get_all_start_methods():
        method = "spawn"
    return multiprocessing.get_context(method)


_shared: Any = None  # in a worker: the `shared` object of run_tasks
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCHDOG_INTERVAL = 0.5  # seconds between a worker's checks that its parent is alive


def _install(shared: Any) -> None:
    global _shared
    _shared = shared


def _start_worker(shared: Any, command_pid: int) -> None:
    """Worker initializer: receive ``shared`` and arrange to die with the command."""
    _install(shared)
    parent = os.getppid()  # the command, or the fork server that started this worker
    if sys.platform == "linux":
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watchdog still works
            pass
    threading.Thread(target=_watch, args=(parent, command_pid), daemon=True, name="cifarkit-watchdog").start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (pid reused): treat as gone
        return False
    return True


def _watch(parent: int, command_pid: int) -> None:
    """Exit this worker when its parent or the command has gone (reparenting changes ppid).

    Also covers a parent that died between fork and the prctl call above."""
    while os.getppid() == parent and _alive(command_pid):
        time.sleep(WATCHDOG_INTERVAL)
    os._exit(1)


def _with_shared(fn: Callable[..., Any], *task: Any) -> Any:
    try:
        return fn(_shared, *task)
    finally:
        release_pages()  # the shared arrays' pages this task read, where they are mapped files


def run_tasks(fn: Callable[..., Any], tasks: Iterable[tuple], workers: int, shared: Any = None) -> Iterator[Any]:
    """Yield ``fn(*task)`` for each task (``fn(shared, *task)`` when ``shared`` is given), in
    completion order.

    With one worker everything runs in this process (easy to debug, no start-up cost). At most
    ``2 * workers`` tasks are in flight, which bounds the memory held by queued task data.
    """
    if shared is not None:
        fn = functools.partial(_with_shared, fn)
    if workers <= 1:
        _install(shared)
        try:
            for task in tasks:
                yield fn(*task)
        finally:
            _install(None)
        return
    pending: set[Future] = set()
    tasks = iter(tasks)
    start = {"initializer": _start_worker, "initargs": (shared, os.getpid())}
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context(), **start) as pool:
        try:
            while True:
                while len(pending) < 2 * workers:
                    task = next(tasks, None)
                    if task is None:
                        break
                    pending.add(pool.submit(fn, *task))
                if not pending:
                    return
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    yield future.result()
        except BrokenProcessPool:
            raise CifarkitError("a worker process died unexpectedly (out of memory or killed?)") from None
        finally:
            for future in pending:
                future.cancel()
