"""The field types metadata models share: bounded counts, protobuf-JSON int64 values, names.

A count or size read from a file is bounded where it is parsed, so nothing downstream allocates
for a number the files present cannot hold; a split name is a path component once parsed
(:mod:`.names`), so a model that holds one holds a checked one.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

import pydantic

from .names import MAX_NAME_BYTES, unsafe_reason

MAX_COUNT = 2**40  # images in a split or shard: a million times CIFAR-10, far above any dataset
MAX_BYTES = 2**50  # bytes of a split: a petabyte
MAX_CLASSES = 1_000_000  # ImageNet-21k has 21,843 classes; a bigger claim is not a dataset
MAX_SPLITS = 1_000  # TFDS datasets have a handful; each becomes a folder of an image tree
MAX_SHARDS = 1_000_000  # shards per split (TFDS writes at most a few thousand)
MAX_TEXT = 4_096  # a free-text field (a path, a template, a version, a format name)
_INT64_DIGITS = re.compile(r"-?[0-9]{1,19}")


def _int64(value: object) -> object:
    """protobuf's JSON writes int64 fields as strings ("10"); TFDS's files hold both forms.
    A digit string of at most 19 digits becomes an int; anything else goes on to the strict
    int check, which names it (so a 5,000-digit string is refused before int() sees it)."""
    if isinstance(value, str) and _INT64_DIGITS.fullmatch(value):
        return int(value)
    return value


def _split_name(value: str) -> str:
    why = unsafe_reason(value)
    if why is not None:
        raise ValueError(f"the split name {value!r} {why}; it cannot be a folder or file name")
    return value


def _text(value: object) -> object:
    if isinstance(value, str) and any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in value):
        raise ValueError("holds a control character")
    return value


def _dataset_name(value: object) -> object:
    """A dataset's name ends up in a file or folder name (the CLI's default ``--out``,
    ``<name>-<split>.tfrecord-...``): one component, no separator, no drive."""
    if isinstance(value, str) and value:
        if "/" in value or "\\" in value or value in (".", "..") or re.match(r"[A-Za-z]:", value):
            raise ValueError("is not a single folder name")
        if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            raise ValueError(f"is longer than {MAX_NAME_BYTES} bytes")
    return value


def bounded(low: int, high: int):
    """An int in ``low..high``, given as a JSON number or protobuf's digit string."""
    return Annotated[int, pydantic.BeforeValidator(_int64), pydantic.Field(ge=low, le=high)]


Count = bounded(0, MAX_COUNT)
ByteCount = bounded(0, MAX_BYTES)
ClassCount = bounded(0, MAX_CLASSES)
# Strings of this package's own files are JSON numbers; counts there need no digit strings.
OwnCount = Annotated[int, pydantic.Field(ge=0, le=MAX_COUNT)]
Text = Annotated[str, pydantic.AfterValidator(_text), pydantic.Field(max_length=MAX_TEXT)]
SplitName = Annotated[str, pydantic.AfterValidator(_split_name)]
DatasetName = Annotated[str, pydantic.AfterValidator(_dataset_name), pydantic.AfterValidator(_text)]
ClassName = Annotated[str, pydantic.Field(max_length=MAX_TEXT)]
