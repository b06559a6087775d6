"""Is a path something a dataset can be read from? A regular file, or a folder we can list.

A device, a pipe or a socket would otherwise reach a folder listing (NotADirectoryError) or
block on a read that never ends; each is refused in one line that says what it is.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import SourceError

# What a path that is neither a regular file nor a folder is, for the message that refuses it.
_SPECIAL_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISSOCK, "a socket"),
)


def check_source_path(path: Path) -> None:
    """A clear :class:`SourceError` unless ``path`` is a regular file or a folder we can list.

    A device, a pipe or a socket would otherwise reach a folder listing (NotADirectoryError) or
    block on a read that never ends.
    """
    try:
        mode = path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # NotADirectoryError: a/b where a is a file
        raise SourceError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(mode):
        try:
            with os.scandir(path):
                pass
        except OSError as exc:
            raise SourceError(f"{path}: cannot list the folder ({exc.strerror})") from None
    elif not stat.S_ISREG(mode):
        kind = next((name for test, name in _SPECIAL_KINDS if test(mode)), "not a regular file")
        raise SourceError(
            f"{path}: {kind}, not a dataset (give a CIFAR archive, an extracted CIFAR folder or an image tree)"
        )
