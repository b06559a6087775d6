"""Export formats, one adapter each (:class:`.base.FormatAdapter`), found by name in one table.

To add a format: write its adapter module beside these, and add one instance to ``_ADAPTERS``
below (and its name to the CLI's ``ExportFormat`` choices). :mod:`cifarkit.export` and
:func:`cifarkit.data.open_data` look adapters up here and never branch on a format's name.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import SourceError, UsageError
from . import tfds_info
from .base import CIFARKIT_INFO, INFO_FILE, FormatAdapter, Piece, read_info
from .image_tree import ImageTree
from .tfrecord import TFDS_ROOT, TFRecord

# In the order --help and error messages list them.
_ADAPTERS: tuple[FormatAdapter, ...] = (ImageTree("jpg"), ImageTree("png"), TFRecord())
ADAPTERS: dict[str, FormatAdapter] = {adapter.name: adapter for adapter in _ADAPTERS}
FORMATS = tuple(ADAPTERS)


def get_adapter(name: str) -> FormatAdapter:
    """The adapter for a ``--format`` name; a usage error naming the choices for any other."""
    try:
        return ADAPTERS[name]
    except (KeyError, TypeError):
        raise UsageError(f"unknown format '{name}'; choose one of {', '.join(FORMATS)}") from None


def adapter_for_export(root: Path) -> tuple[FormatAdapter, dict] | None:
    """The adapter that reads the export at ``root`` and its metadata (``cifarkit_info.json``,
    or 0.1's ``dataset_info.json``), or None where ``root`` holds no cifarkit export. A folder
    TFDS prepared (also as ``<name>/<version>/`` below ``root``) is read by the TFRecord adapter.

    A file that names a format cifarkit does not know is an error, not a guess: it is a cifarkit
    export (it records the cifarkit version) from a version with formats this one lacks."""
    found = _own_export(root)
    if found is not None:
        return found
    tfds_root = tfds_info.locate(root)
    if tfds_root is None:
        return None
    own = tfds_root / CIFARKIT_INFO
    info = {TFDS_ROOT: str(tfds_root), "cifarkit": read_info(own) if own.is_file() else None}
    return ADAPTERS["tfrecord"], info


def _own_export(root: Path) -> tuple[FormatAdapter, dict] | None:
    path = root / CIFARKIT_INFO
    if not path.is_file():
        path = root / INFO_FILE  # cifarkit 0.1 wrote its own schema under TFDS's file name
        if not path.is_file():
            return None
    info = read_info(path)
    name = info.get("format")
    if isinstance(name, str) and name in ADAPTERS:
        return ADAPTERS[name], info
    if "cifarkit_version" not in info:
        return None
    raise SourceError(f"{path}: the export's format is {json.dumps(name)[:40]}, which this cifarkit does not read "
                      f"(it reads {', '.join(FORMATS)})")  # fmt: skip


__all__ = ["ADAPTERS", "FORMATS", "FormatAdapter", "Piece", "adapter_for_export", "get_adapter", "read_info"]
