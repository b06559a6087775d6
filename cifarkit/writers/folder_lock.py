"""One command at a time per output folder: an exclusive advisory lock held for the whole command.

Two exports into one folder, or two trainings on one run folder, would interleave their files
(an image tree holding two formats, a run with duplicated TensorBoard events). The command that
comes second is refused in one line that says which process holds the folder. The lock is an
``flock`` on a small file inside the folder, so the kernel releases it when its holder dies,
even by ``kill -9``: a stale lock file never blocks anyone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from ..errors import OutputError

LOCK_NAME = ".cifarkit.lock"


def _holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 512).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process"


@contextlib.contextmanager
def hold(folder: Path, what: str) -> Iterator[Path]:
    """Hold ``folder`` exclusively while the ``with`` block runs; refuse if another process does.

    ``what`` names the work in the refusal a second process sees (``"an export"``). The folder
    is created if needed; the lock file stays (it is tiny, and removing it would race)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise OutputError(f"{folder}: cannot be used ({exc.strerror or exc})") from None
    try:
        if not _try_lock(fd):
            raise OutputError(f"{folder} is in use by {_holder(fd)}; wait for it to finish, or use another folder")
        os.ftruncate(fd, 0)
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300]
        os.pwrite(fd, f"pid {os.getpid()} ({command}, {what})\n".encode(), 0)
        try:
            yield folder
        finally:
            os.ftruncate(fd, 0)  # a finished command leaves an empty lock: two outputs compare equal
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _try_lock(fd: int) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one command at a time is then on the user
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
