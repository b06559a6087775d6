"""``cifarkit_info.json``, cifarkit's description of an export (every format), and the
``dataset_info.json`` of pre-TFDS exports, which holds the same schema under TFDS's file name;
read into :class:`ExportInfo`, or None where a folder holds neither.

A pre-TFDS export is one whose TFRecord shards carry cifarkit's own record keys (``label_coarse``,
``height``/``width`` beside raw pixels) rather than TFDS's, described by ``features`` here instead
of a ``features.json``; every reader reads them.

Written last by :mod:`cifarkit.formats.export`, so its presence marks an export as finished
(:mod:`.export_state`). The readers take splits, counts, class names and shard lists from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from ..errors import SourceError
from .fields import MAX_CLASSES, MAX_SHARDS, MAX_SPLITS, ClassName, DatasetName, OwnCount, SplitName, Text
from .files import read_model
from .jsonfile import Strict

CIFARKIT_INFO = "cifarkit_info.json"  # cifarkit's own description of an export, every format
OLD_INFO = "dataset_info.json"  # a pre-TFDS export's description; TFDS's file in TFRecord exports
ENCODINGS = ("png", "jpeg", "raw", "auto")  # of a TFRecord export's images (pre-TFDS: no "auto")

Names = Annotated[tuple[ClassName, ...], pydantic.Field(min_length=1, max_length=MAX_CLASSES)]


class SplitInfo(Strict):
    count: OwnCount
    files: Annotated[tuple[Text, ...], pydantic.Field(max_length=MAX_SHARDS)] = ()  # TFRecord shards


class OldFeature(Strict):
    """A record key of a pre-TFDS TFRecord export."""

    dtype: Text = ""
    description: Text = ""


class TfdsNames(Strict):
    name: Text
    version: Text


class ExportInfo(Strict):
    name: DatasetName = ""
    format: Text
    class_names: Names
    coarse_class_names: Names | None = None
    splits: Annotated[dict[SplitName, SplitInfo], pydantic.Field(min_length=1, max_length=MAX_SPLITS)]
    encoding: Literal[ENCODINGS] = "png"
    features: dict[str, OldFeature] | None = None  # pre-TFDS record keys; TFDS's are in features.json
    tfds: TfdsNames | None = None
    layout: Text | None = None
    cifarkit_version: Text | None = None
    path: Path = Path()  # the file it was read from, for messages (not in the file)


class _Header(pydantic.BaseModel):
    """Enough of a metadata file to tell whose it is, whatever else it holds."""

    format: Any = None
    cifarkit_version: Any = None


def read_export_info(folder: Path, formats: tuple[str, ...] | None = None) -> ExportInfo | None:
    """The export description in ``folder``, or None where there is none (a ``dataset_info.json``
    TFDS wrote, or a file of that name another tool wrote, recording no cifarkit version). A file
    that records a cifarkit version and a format not in ``formats`` (any, where None) is refused
    in one line: it is an export by a version with formats this one lacks."""
    for name in (CIFARKIT_INFO, OLD_INFO):
        header = read_model(folder, name, _Header)
        if header is None:
            continue
        known = header.format in formats if formats is not None else isinstance(header.format, str)
        if known and (formats is not None or header.cifarkit_version is not None):
            info = read_model(folder, name, ExportInfo)
            return info.model_copy(update={"path": folder / name})
        if header.cifarkit_version is None:
            return None
        raise SourceError(
            f"{folder / name}: the export's format is {json.dumps(header.format)[:40]}, which this "
            f"cifarkit does not read (it reads {', '.join(formats or ())})"
        )
    return None
