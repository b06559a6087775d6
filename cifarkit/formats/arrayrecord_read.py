"""Reading ArrayRecord datasets: cifarkit's exports and folders TFDS prepared in its
``array_record`` format.

The folder's metadata is the TFRecord datasets' (:func:`.tfrecord_read.describe` reads it into a
:class:`~.tfrecord_read.Records`, whose shards are ArrayRecord files here), and so are the records
and their parser (:func:`.tfrecord_read.record_parser`). What differs is the storage: the shards
are opened, checked and read by a child process (:mod:`.arrayrecord_process`), and a split is its
record indices (:class:`~cifarkit.readers.array_records.IndexedRecordReader`), read a batch at a
time through :class:`Shards`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import SourceError, UsageError
from ..metadata.export_info import ExportInfo
from .tfrecord_read import describe, record_parser

EXTRA = "arrayrecord"  # pyproject.toml's optional dependencies that install the library


MODULE = "array_record.python.array_record_module"


def _missing() -> UsageError:
    return UsageError(f"the ArrayRecord format needs the array_record library: pip install 'cifarkit[{EXTRA}]'")


def array_record_module():
    """The ``array_record`` library's reader and writer module (for writing: reading is done in a
    child process); one line naming the extra where it is not installed."""
    try:
        from array_record.python import array_record_module as module
    except ImportError:
        raise _missing() from None
    return module


def require_library() -> None:
    """One line naming the extra where the library is not installed, without loading it here."""
    import importlib.util

    try:
        found = importlib.util.find_spec(MODULE) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None
        found = False
    if not found:
        raise _missing()


class Shards:
    """Each split's records by index, across its shards, read through the dataset's process."""

    def __init__(self, files: dict[str, list[str]], process):
        self.process = process
        self.files = files
        self.first, at = {}, 0  # split -> the place of its first shard in the process's list
        for split, paths in files.items():
            self.first[split], at = at, at + len(paths)
        # split -> index of each shard's first record, and the split's end
        self.starts = {
            split: np.concatenate([[0], np.cumsum(process.counts[split], dtype=np.int64)]) for split in files
        }

    def locate(self, split: str, index: int) -> tuple[str, int]:
        """The shard that holds record ``index`` of ``split``, and its place there."""
        shard = int(np.searchsorted(self.starts[split], index, side="right")) - 1
        return self.files[split][shard], index - int(self.starts[split][shard])

    def read(self, split: str, indices: np.ndarray) -> list[bytes]:
        """The records ``indices`` (into the whole split) in the order asked."""
        indices = np.asarray(indices, np.int64)
        starts = self.starts[split]
        shard_of = np.searchsorted(starts, indices, side="right") - 1
        out: list[bytes] = [b""] * len(indices)
        for shard in np.unique(shard_of):
            where = np.flatnonzero(shard_of == shard)
            positions = (indices[where] - starts[shard]).tolist()
            for at, record in zip(where, self.process.read(self.first[split] + int(shard), positions)):
                out[at] = record
        return out


def explainer(records, shards: Shards):
    """``(split, index) -> raises`` the :class:`SourceError` naming a record that did not parse or
    decode in the pipeline, and why (the record checks again, then Pillow on its image)."""
    from .record_checks import record_check

    check = record_check(records)

    def explain(split: str, index: int) -> None:
        path, at = shards.locate(split, index)
        data = shards.read(split, np.array([index]))[0]
        reason = check(data) or _undecodable(data)
        raise SourceError(f"{path}: record {at}: {reason or 'TensorFlow cannot parse or decode it'}")

    return explain


def _undecodable(data: bytes) -> str | None:
    """Why Pillow cannot decode the record's encoded image, or None."""
    import io

    from PIL import Image

    from .codecs.example import NotAnExample, example_features, one_value

    try:
        encoded = one_value(example_features(data).get("image"), bytes)
    except NotAnExample:
        return None
    if encoded is None:
        return None
    try:
        with Image.open(io.BytesIO(bytes(encoded))) as image:
            image.load()
    except Exception as exc:  # Pillow's many kinds of refusal
        why = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc)).strip()  # no address in the line
        return f"its image cannot be decoded ({(why.splitlines() or [type(exc).__name__])[0][:120]})"
    return None


def open_array_records(root: Path, info: ExportInfo | None):
    """A :class:`~cifarkit.readers.reader.DataReader` over an ArrayRecord dataset's shards; ``info``
    is its cifarkit_info.json, None for a folder TFDS prepared."""
    from ..readers.array_records import IndexedRecordReader
    from .arrayrecord_process import record_process

    require_library()  # one line naming the extra, before anything is read
    records = describe(root, info)
    shards = Shards(records.files, record_process(records))
    parts = {split: [(split, np.arange(n, dtype=np.int64))] for split, n in records.counts.items()}
    return IndexedRecordReader(
        records.name,
        records.root,
        records.class_names,
        dict(records.counts),
        records.static_shape,
        coarse_class_names=records.coarse_class_names,
        parts=parts,
        read=shards.read,
        parser=record_parser(records),
        explain=explainer(records, shards),
        coarse=records.coarse_key is not None,
    )
