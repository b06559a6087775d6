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
    is created if needed. The lock file stays; only where the block fails in a folder made here
    that holds nothing else does it go, with the folders made (a refused command leaves no
    folder holding a lock alone)."""
    folder = Path(folder)
    made = _missing(folder)
    fd = _open_locked(folder, what)
    try:
        command = " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300]
        os.pwrite(fd, f"pid {os.getpid()} ({command}, {what})\n".encode(), 0)
        try:
            yield folder
        except BaseException:
            if made:
                _remove_if_empty(folder, made)
            raise
        finally:
            os.ftruncate(fd, 0)  # a finished command leaves an empty lock: two outputs compare equal
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _missing(folder: Path) -> list[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first."""
    missing = []
    for path in (folder, *folder.parents):
        if os.path.lexists(path):
            break
        missing.append(path)
    return missing


def _open_locked(folder: Path, what: str) -> int:
    """The lock file's descriptor, locked by this process; refused if another process holds it.
    A lock file removed by the holder that made it (:func:`_remove_if_empty`) while this process
    opened it is opened again, so two processes never hold two files of one name."""
    for _ in range(3):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except FileNotFoundError:  # the folder went between mkdir and open: make it again
            continue
        except OSError as exc:
            raise OutputError(f"{folder}: cannot be used ({exc.strerror or exc})") from None
        if not _try_lock(fd):
            holder = _holder(fd)
            os.close(fd)
            raise OutputError(f"{folder} is in use by {holder}; wait for it to finish, or use another folder")
        if _still_named(fd, folder / LOCK_NAME):
            os.ftruncate(fd, 0)
            return fd
        os.close(fd)
    raise OutputError(f"{folder}: cannot be used (its lock file keeps being removed)")


def _still_named(fd: int, path: Path) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _remove_if_empty(folder: Path, made: list[Path]) -> None:
    """After a failed command in a folder it made: the lock file and the folders made, innermost
    first, if they hold nothing else (removed while the lock is held: no other command is inside)."""
    with contextlib.suppress(OSError):
        with os.scandir(folder) as entries:
            if any(entry.name != LOCK_NAME for entry in entries):
                return
        (folder / LOCK_NAME).unlink()
        for path in made:
            path.rmdir()  # fails, and stops, at a folder that holds something


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
