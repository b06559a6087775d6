"""An image export's ``manifest.csv`` (one row per image: its file, split, index, label and the
file it came from) and ``labels.txt``, read into :class:`Manifest`.

Bounded as every metadata file is: the file under :data:`MAX_MANIFEST_BYTES`, each field under
:data:`MAX_FIELD`, so a 200 KB field is one line, not the csv module's own error or a traceback.
Split names are path components, indices and labels bounded integers, and every label is a
class that ``labels.txt`` names (a shorter ``labels.txt`` than the labels used is refused).
The image paths are not checked here: :func:`cifarkit.sources.labelled.paths_inside` does that
where they are joined to the folder.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SourceError
from .fields import MAX_COUNT, MAX_SPLITS, MAX_TEXT
from .files import decode, metadata_file
from .jsonfile import read_bytes_capped
from .labels import read_names
from .names import folder_names, unsafe_reason

MANIFEST = "manifest.csv"
LABELS = "labels.txt"
MAX_MANIFEST_BYTES = 512 * 1024**2  # ~4 million rows: ImageNet's 1.3 million take 150 MB
MAX_FIELD = MAX_TEXT  # a path, a class name or a source file name
REQUIRED = ("path", "split", "index", "label", "source_file")


@dataclass
class SplitRows:
    """One split's rows, in index order."""

    paths: list[str] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    coarse: list[int] | None = None
    sources: list[str] = field(default_factory=list)

    def sorted(self) -> SplitRows:
        order = sorted(range(len(self.indices)), key=self.indices.__getitem__)

        def pick(values):
            return None if values is None else [values[i] for i in order]

        return SplitRows(pick(self.paths), pick(self.indices), pick(self.labels), pick(self.coarse), pick(self.sources))


@dataclass
class Manifest:
    path: Path
    class_names: tuple[str, ...]
    splits: dict[str, SplitRows]  # split name (a path component) -> its rows in index order

    def labels(self, split: str) -> np.ndarray:
        return np.asarray(self.splits[split].labels, np.int64)


def has_manifest(root: Path) -> bool:
    return (root / MANIFEST).is_file() and (root / LABELS).is_file()


def read_manifest(root: Path, class_count: int | None = None, coarse_count: int | None = None) -> Manifest:
    """``root``'s manifest.csv and labels.txt, checked; ``class_count`` and ``coarse_count``
    (from cifarkit_info.json, where there is one) are the class counts the labels must fit."""
    labels_path, path = metadata_file(root, LABELS), metadata_file(root, MANIFEST)
    if labels_path is None or path is None:
        raise SourceError(f"{root}: no {MANIFEST} and {LABELS}; not a cifarkit image export")
    names = read_names(labels_path, class_count)
    return parse_manifest(decode(read_bytes_capped(path, MAX_MANIFEST_BYTES), path), path, names, coarse_count)


def parse_manifest(text: str, path: Path, class_names: tuple[str, ...], coarse_count: int | None = None) -> Manifest:
    """The manifest ``text`` (read from ``path``) whose labels index ``class_names``."""
    try:
        splits = _rows(csv.reader(io.StringIO(text, newline="")), path, len(class_names), coarse_count)
    except csv.Error as exc:
        raise SourceError(f"{path}: malformed manifest ({exc})") from None
    return Manifest(path, class_names, {split: rows.sorted() for split, rows in splits.items()})


def _rows(reader, path: Path, classes: int, coarse_count: int | None) -> dict[str, SplitRows]:
    header = next(reader, None) or []
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SourceError(f"{path}: malformed manifest (no {missing[0]!r} column)")
    at = {name: header.index(name) for name in (*REQUIRED, "coarse_label") if name in header}
    coarse_at = at.get("coarse_label")
    width = max(at.values()) + 1
    splits: dict[str, SplitRows] = {}
    for line, row in enumerate(reader, 2):
        if len(row) < width or any(len(value) > MAX_FIELD for value in row):
            why = "too few fields" if len(row) < width else f"a field longer than {MAX_FIELD:,} characters"
            raise SourceError(f"{path}: line {line:,} has {why}; refused")
        split = row[at["split"]]
        rows = splits.get(split)
        if rows is None:
            rows = splits[split] = _new_split(split, path, line, len(splits), coarse_at is not None)
        rows.paths.append(row[at["path"]])
        rows.indices.append(_int(row[at["index"]], MAX_COUNT, path, line, "index"))
        rows.labels.append(_int(row[at["label"]], classes, path, line, "label"))
        rows.sources.append(row[at["source_file"]])
        if coarse_at is not None:
            rows.coarse.append(_int(row[coarse_at], coarse_count or MAX_COUNT, path, line, "coarse_label"))
    folder_names(splits, "split", path)
    return splits


def _new_split(split: str, path: Path, line: int, known: int, coarse: bool) -> SplitRows:
    why = unsafe_reason(split)
    if why is not None:
        raise SourceError(f"{path}: line {line:,}: the split name {split!r} {why}; refused")
    if known >= MAX_SPLITS:
        raise SourceError(f"{path}: more than {MAX_SPLITS:,} splits; refused")
    return SplitRows(coarse=[] if coarse else None)


def _int(text: str, below: int, path: Path, line: int, column: str) -> int:
    """A whole number in ``0 .. below - 1``."""
    if not (text.isascii() and text.isdigit() and len(text) <= 19 and int(text) < below):
        what = f"a class of {LABELS} (0 to {below - 1:,})" if column == "label" else f"a number below {below:,}"
        raise SourceError(f"{path}: line {line:,}: {column} {text[:20]!r} is not {what}")
    return int(text)
