"""Export formats, one adapter each (:class:`.base.FormatAdapter`), found by name in one table.

To add a format: write its adapter module beside these, and add one instance to ``_ADAPTERS``
below (the CLI's ``--format`` choices are read from it). :mod:`cifarkit.formats.export` and
:func:`cifarkit.data.open_data` look adapters up here and never branch on a format's name.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..metadata.export_info import ExportInfo, read_export_info
from ..metadata.export_state import check_finished
from . import tfds_info
from .arrayrecord import ArrayRecord
from .base import FormatAdapter, Piece, TfdsFound
from .image_tree import ImageTree
from .parquet import Parquet
from .tfrecord import TFRecord
from .webdataset import WebDataset

# In the order --help and error messages list them.
_ADAPTERS: tuple[FormatAdapter, ...] = (
    ImageTree("jpg"),
    ImageTree("png"),
    TFRecord(),
    WebDataset(),
    Parquet(),
    ArrayRecord(),
)
ADAPTERS: dict[str, FormatAdapter] = {adapter.name: adapter for adapter in _ADAPTERS}
FORMATS = tuple(ADAPTERS)
# Other names a format goes by on the command line: JPEG files are "jpeg" as often as "jpg".
FORMAT_ALIASES = {"jpeg": "jpg"}


def get_adapter(name: str) -> FormatAdapter:
    """The adapter for a ``--format`` name or alias; a usage error naming the choices for any other."""
    try:
        return ADAPTERS[FORMAT_ALIASES.get(name, name)]
    except (KeyError, TypeError):
        raise UsageError(f"unknown format '{name}'; choose one of {', '.join(FORMATS)}") from None


def adapter_for_export(root: Path) -> tuple[FormatAdapter, ExportInfo | TfdsFound] | None:
    """The adapter that reads the export at ``root`` and its metadata (``cifarkit_info.json``,
    or a pre-TFDS export's ``dataset_info.json``, parsed), or None where ``root`` holds no cifarkit export. A
    folder TFDS prepared (also as ``<name>/<version>/`` below ``root``) is read by the adapter of
    its file format (TFRecord's or ArrayRecord's). An export that did not finish is refused here, for every reader.

    A file that names a format cifarkit does not know is an error, not a guess: it is a cifarkit
    export (it records the cifarkit version) from a version with formats this one lacks."""
    check_finished(root)
    info = read_export_info(root, FORMATS)
    if info is not None:
        return ADAPTERS[info.format], info
    tfds_root = tfds_info.locate(root)
    if tfds_root is None:
        return None
    own = read_export_info(tfds_root, FORMATS)
    adapter = ADAPTERS[own.format] if own is not None else None
    if adapter is None or adapter.tfds_file_format is None:
        adapter = _tfds_adapter(tfds_root)
    return adapter, TfdsFound(tfds_root, own)


def _tfds_adapter(root: Path) -> FormatAdapter:
    """The adapter of a TFDS folder's file format (dataset_info.json's ``fileFormat``); TFRecord's
    for any other, whose reader names the format it does not read."""
    file_format = tfds_info.folder_file_format(root)
    found = [a for a in _ADAPTERS if a.tfds_file_format == file_format]
    return found[0] if found else ADAPTERS["tfrecord"]


__all__ = [
    "ADAPTERS",
    "FORMATS",
    "FORMAT_ALIASES",
    "FormatAdapter",
    "Piece",
    "TfdsFound",
    "adapter_for_export",
    "get_adapter",
]
