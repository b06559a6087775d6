"""What every source produces: labelled uint8 images grouped by split, plus the dataset's metadata.

A source reads its files once into :class:`LabelledImages` (numpy arrays, or image files decoded on
demand); export formats and readers only ever see this shape, never a pickle, a tar member or a
folder layout. Not to be confused with :class:`cifarkit.data.DataReader`, which builds tf.data
pipelines over a source or an export.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..constants import CIFAR_SHAPE
from ..errors import UnsafeInputError
from .file_names import FileNames
from .image_file import read_image


class LazyImages(Sequence):
    """Image files decoded only when iterated: folder trees may be far larger than memory.

    Slicing returns another ``LazyImages`` (a list of paths), so a chunk sent to a worker process
    carries file names, and the decoding happens in the worker. A folder's listing comes as
    :class:`.file_names.FileNames` (compact, its items made as ``str`` when read) and is kept so.
    """

    def __init__(self, paths: Sequence[Path | str]):
        self.paths = paths if isinstance(paths, FileNames) else list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item):
        if isinstance(item, slice):
            return LazyImages(self.paths[item])
        return read_image(self.paths[item])

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            yield read_image(path)


@dataclass
class CifarParts:
    """What a CIFAR layout reader (python or binary, CIFAR-10 or -100) finds in the files."""

    class_names: tuple[str, ...]
    batches: dict[str, list[Batch]]
    coarse_class_names: tuple[str, ...] | None = None  # CIFAR-100's superclasses
    notes: list[str] = field(default_factory=list)


@dataclass
class Batch:
    """Consecutive images of one split that came from one source file (a CIFAR batch, a folder)."""

    split: str
    images: np.ndarray | LazyImages  # (N, H, W, 3) uint8, or decoded on demand
    labels: np.ndarray  # (N,) int64; CIFAR-100: the fine label
    source_files: Sequence[str]  # per image: the file it came from (manifest column)
    coarse_labels: np.ndarray | None = None  # CIFAR-100 only

    def __len__(self) -> int:
        return len(self.labels)

    def slice(self, start: int, stop: int) -> Batch:
        return Batch(
            split=self.split,
            images=self.images[start:stop],
            labels=self.labels[start:stop],
            source_files=self.source_files[start:stop],
            coarse_labels=None if self.coarse_labels is None else self.coarse_labels[start:stop],
        )

    @staticmethod
    def concat(parts: list[Batch]) -> Batch:
        if not parts:
            raise ValueError("Batch.concat needs at least one batch (use LabelledImages.take for a range)")
        if len(parts) == 1:
            return parts[0]
        first = parts[0]
        if isinstance(first.images, LazyImages):
            images = LazyImages([p for part in parts for p in part.images.paths])
        else:
            images = np.concatenate([part.images for part in parts])
        return Batch(
            split=first.split,
            images=images,
            labels=np.concatenate([part.labels for part in parts]),
            source_files=[name for part in parts for name in part.source_files],
            coarse_labels=None if first.coarse_labels is None else np.concatenate([p.coarse_labels for p in parts]),
        )


@dataclass
class LabelledImages:
    """A whole source, read and checked."""

    name: str  # "cifar10", "cifar100", or the folder's name for an image tree
    format: str  # how it was stored, for people: "CIFAR python (pickled batches)", ...
    location: Path
    class_names: tuple[str, ...]
    batches: dict[str, list[Batch]]  # split -> batches in dataset order
    coarse_class_names: tuple[str, ...] | None = None
    verification: str = "not verified"  # one line for people: "verified (md5 ...)", ...
    notes: list[str] = field(default_factory=list)

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.batches)

    def count(self, split: str) -> int:
        return sum(len(b) for b in self.batches[split])

    def take(self, split: str, start: int, stop: int) -> Batch:
        """Images ``start:stop`` of a split, across batch boundaries."""
        parts = self.parts(split, start, stop)
        if not parts:  # an empty range (a split of 0 images): empty, but of the split's kind
            return self._empty(split)
        return Batch.concat(parts)

    def parts(self, split: str, start: int, stop: int) -> list[Batch]:
        """Images ``start:stop`` of a split as slices of its batches, in order: nothing copied,
        where :meth:`take` joins them (the pixels of a range across two batches)."""
        parts, offset = [], 0
        for batch in self.batches[split]:
            lo, hi = max(start, offset), min(stop, offset + len(batch))
            if lo < hi:
                parts.append(batch.slice(lo - offset, hi - offset))
            offset += len(batch)
            if offset >= stop:
                break
        return parts

    def _empty(self, split: str) -> Batch:
        batches = self.batches[split]
        if batches:
            return batches[0].slice(0, 0)
        coarse = None if self.coarse_class_names is None else np.zeros((0,), np.int64)
        return Batch(split, np.zeros((0, *CIFAR_SHAPE), np.uint8), np.zeros((0,), np.int64), [], coarse)

    def class_counts(self, split: str) -> dict[str, int]:
        counts = np.zeros(len(self.class_names), dtype=np.int64)
        for batch in self.batches[split]:
            counts += np.bincount(batch.labels, minlength=len(self.class_names))
        return {name: int(n) for name, n in zip(self.class_names, counts)}


def paths_inside(root: Path, names: Iterable[object], listed_in: Path) -> list[Path]:
    """``root / name`` for each file an export's manifest or metadata names; refused unless it
    stays inside ``root``: a relative name without ``..``, and no symbolic link out of it.

    Cheap for 60,000 names: the textual checks run per name, folders are resolved once each, and
    a file is resolved only if it is itself a link."""
    base = Path(os.path.realpath(root))
    folders: dict[Path, bool] = {}
    paths = []
    for name in names:
        path = root / _relative_name(name, listed_in)
        inside = folders.get(path.parent)
        if inside is None:
            inside = folders[path.parent] = _within(path.parent, base)
        if not inside or (os.path.islink(path) and not _within(path, base)):
            raise UnsafeInputError(f"{listed_in}: names {name!r}, which leads outside {root}; refused")
        paths.append(path)
    return paths


def _relative_name(name: object, listed_in: Path) -> str:
    if not isinstance(name, str) or not name or "\0" in name:
        raise UnsafeInputError(f"{listed_in}: {name!r} is not a file name")
    # String checks, not PurePath objects: this runs for every image of an export. Both
    # separators count, so a name means the same on Windows.
    parts = name.replace("\\", "/").split("/")
    drive = len(parts[0]) >= 2 and parts[0][1] == ":" and parts[0][0].isalpha()  # C:, c:x
    if not parts[0] or drive or ".." in parts:
        raise UnsafeInputError(f"{listed_in}: names {name!r}, outside the folder it describes; refused")
    return name


def _within(path: Path, base: Path) -> bool:
    real = Path(os.path.realpath(path))
    return real == base or base in real.parents
