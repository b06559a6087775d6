"""Run independent tasks on worker processes, a bounded number in flight at a time.

``concurrent.futures`` rather than ``multiprocessing.Pool``: when a worker dies (killed, out of
memory) the executor reports it instead of waiting forever. Workers are forked while TensorFlow
is not loaded (instant start, nothing to import); after TensorFlow has been imported, forking is
unsafe, so they are started by a fork server instead.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator

from .errors import CifarkitError


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


def run_tasks(fn: Callable[..., Any], tasks: Iterable[tuple], workers: int) -> Iterator[Any]:
    """Yield ``fn(*task)`` for each task, in completion order.

    With one worker everything runs in this process (easy to debug, no start-up cost). At most
    ``2 * workers`` tasks are in flight, which bounds the memory held by queued task data.
    """
    if workers <= 1:
        for task in tasks:
            yield fn(*task)
        return
    pending: set[Future] = set()
    tasks = iter(tasks)
    with ProcessPoolExecutor(max_workers=workers, mp_context=_context()) as pool:
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
