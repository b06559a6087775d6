"""A dataset folder's metadata files, opened only where they are what they claim to be.

docs/RELIABILITY.md promises that links out of a dataset are refused: a ``label.labels.txt``
that is a symbolic link to ``/etc/shadow`` (or to a 10 GB file elsewhere) is not read. Every
metadata file of a dataset folder is found through :func:`metadata_file`, and its text read
through :func:`read_text` under a size cap, as UTF-8, with one line on error.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import SourceError, UnsafeInputError
from .jsonfile import DEFAULT_MAX_BYTES, M, read_bytes_capped, read_json


def _inside(path: Path, root: Path) -> bool:
    real, base = os.path.realpath(path), os.path.realpath(root)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def metadata_file(root: Path, name: str) -> Path | None:
    """``root / name`` if it is a file inside ``root`` (a link is followed only if it stays
    inside); None where there is none; an :class:`UnsafeInputError` for a link leading out."""
    path = Path(root) / name
    if os.path.islink(path) and not _inside(path, root):
        raise UnsafeInputError(f"{path}: a link to a file outside {root}; refused")
    return path if path.is_file() else None


def decode(data: bytes, path: Path) -> str:
    """``data`` as UTF-8 text; one line naming ``path`` where it is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not UTF-8 text (byte {exc.start:,} is 0x{data[exc.start]:02x})") from None


def read_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text of ``path``, refused in one line above ``max_bytes``."""
    return decode(read_bytes_capped(path, max_bytes), path)


def read_model(root: Path, name: str, model: type[M], max_bytes: int = DEFAULT_MAX_BYTES) -> M | None:
    """The JSON file ``root / name`` as ``model`` (size, depth and link checked); None if absent."""
    path = metadata_file(root, name)
    return None if path is None else read_json(path, model, max_bytes)
