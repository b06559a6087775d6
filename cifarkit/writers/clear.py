"""``--overwrite``: remove what an earlier run wrote in a folder, and nothing else.

What a run wrote is known from its own records (an export's state names its format, splits and
counts, so its files' names), not guessed from the folder: :func:`remove_owned` walks the folder
without following links, and if anything in it is not something ``owns`` claims (a file of the
user's own inside ``train/``, a link, a folder of theirs) it refuses, naming it, before removing
anything. Nothing outside the folder is reached: the walk stays below it, links are never
followed, and files are removed through descriptors of the folders that hold them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..errors import OutputError
from .atomic import output_error

# Whether a path inside the folder ("/"-separated, relative) is one the earlier run wrote,
# given whether it is a folder.
Owns = Callable[[str, bool], bool]


def foreign_entry(folder: Path, owns: Owns) -> str | None:
    """The first path in ``folder`` (relative) that ``owns`` does not claim; links are never
    claimed (cifarkit writes none)."""
    for top, dirs, files in os.walk(folder):
        prefix = _prefix(folder, top)
        for name, is_dir in [(f, False) for f in sorted(files)] + [(d, True) for d in sorted(dirs)]:
            if os.path.islink(os.path.join(top, name)) or not owns(prefix + name, is_dir):
                return prefix + name
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(top, d))]
    return None


def remove_owned(folder: Path, owns: Owns, what: str, keep: tuple[str, ...] = ()) -> None:
    """Remove everything in ``folder`` that ``owns`` claims, having checked that it claims
    everything there: else an :class:`OutputError` naming the first other thing, and nothing
    removed. ``what`` names the earlier run for that message ("the earlier export"); the
    files named in ``keep`` (at the top: a lock held meanwhile) are claimed but stay."""
    foreign = foreign_entry(folder, lambda path, is_dir: path in keep or owns(path, is_dir))
    if foreign is not None:
        raise OutputError(
            f"{folder / foreign}: not written by {what}; --overwrite removes only what cifarkit "
            "wrote, so move this away or choose another --out (nothing was removed)"
        )
    try:
        if hasattr(os, "fwalk"):
            _remove_under_descriptors(folder, owns)
        else:  # Windows: no descriptor-relative removal
            for top, dirs, files in os.walk(folder, topdown=False):
                prefix = _prefix(folder, top)
                for name in files:
                    if owns(prefix + name, False):
                        os.unlink(os.path.join(top, name))
                for name in dirs:
                    if owns(prefix + name, True):
                        os.rmdir(os.path.join(top, name))
    except OSError as exc:
        raise output_error(Path(exc.filename or folder), exc) from None


def _prefix(folder: Path, top: str) -> str:
    base = Path(top).relative_to(folder).as_posix()
    return "" if base == "." else base + "/"


def _remove_under_descriptors(folder: Path, owns: Owns) -> None:
    """Bottom-up removal through each folder's descriptor (as shutil.rmtree does): a folder
    swapped for a link meanwhile is not followed, and what is not claimed stays."""
    import stat

    for top, dirs, files, fd in os.fwalk(folder, topdown=False, follow_symlinks=False):
        prefix = _prefix(folder, top)
        for name in files + dirs:
            mode = os.lstat(name, dir_fd=fd).st_mode
            is_dir = stat.S_ISDIR(mode)
            if stat.S_ISLNK(mode) or not owns(prefix + name, is_dir):
                continue
            if is_dir:
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
