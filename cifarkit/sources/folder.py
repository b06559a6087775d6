"""Labelled image-folder trees as a source: ``root/<split>/<class>/*`` or ``root/<class>/*``.

Any tree of that shape works (cats vs dogs, flowers, or a cifarkit JPEG/PNG export), with
images of any size; class names come from the folder names. When the tree is a cifarkit export,
its ``manifest.csv`` restores the original order, indices and labels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from ..errors import SourceError
from .image_file import MAX_PIXELS, read_image  # noqa: F401  (imported from here by readers and tests)
from .labelled import Batch, LabelledImages, LazyImages, paths_inside

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Folder names treated as splits rather than classes; "val"/"validation" are kept as named.
SPLIT_NAMES = ("train", "test", "val", "validation", "valid")


def _listing(folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:  # a class folder without read permission, or one removed meanwhile
        raise SourceError(f"{folder}: cannot list the folder ({exc.strerror})") from None


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in _listing(folder)
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )  # fmt: skip


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in _listing(folder) if p.is_dir() and not p.name.startswith("."))


def looks_like_image_tree(root: Path) -> bool:
    if (root / "manifest.csv").is_file() and (root / "labels.txt").is_file():
        return True  # a cifarkit tree export, at any depth (--layout coarse/fine nests it)
    return any(_images_in(d) for d in _subdirs(root)) or any(
        _images_in(c) for d in _subdirs(root) for c in _subdirs(d)
    )


def read_folder(root: Path) -> LabelledImages:
    if (root / "manifest.csv").is_file() and (root / "labels.txt").is_file():
        return read_export_tree(root)
    split_dirs = [d for d in _subdirs(root) if d.name in SPLIT_NAMES and _subdirs(d)]
    layout = {d.name: d for d in split_dirs} if split_dirs else {"train": root}
    class_names = tuple(sorted({c.name for d in layout.values() for c in _subdirs(d) if _images_in(c)}))
    if not class_names:
        raise SourceError(f"{root}: no images found (expected <split>/<class>/*.png|jpg or <class>/*.png|jpg)")
    index = {name: i for i, name in enumerate(class_names)}
    batches: dict[str, list[Batch]] = {}
    for split in sorted(layout, key=lambda s: (SPLIT_NAMES.index(s), s)):
        for class_dir in _subdirs(layout[split]):
            paths = _images_in(class_dir)
            if not paths:
                continue
            labels = np.full(len(paths), index[class_dir.name], dtype=np.int64)
            rel = [str(p.relative_to(root)) for p in paths]
            batches.setdefault(split, []).append(Batch(split, LazyImages(paths), labels, rel))
    return LabelledImages(
        name=root.resolve().name, format="image folder tree", location=root,
        class_names=class_names, batches=batches, verification="not applicable (image folder)",
    )  # fmt: skip


def read_export_tree(root: Path) -> LabelledImages:
    """A cifarkit JPEG/PNG export: order, labels and names from its manifest and labels.txt."""
    class_names = tuple(line for line in (root / "labels.txt").read_text().splitlines() if line)
    rows: dict[str, list[dict[str, str]]] = {}
    try:
        with open(root / "manifest.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                rows.setdefault(row["split"], []).append(row)
        batches: dict[str, list[Batch]] = {}
        for split, items in rows.items():
            items.sort(key=lambda r: int(r["index"]))
            labels = np.array([int(r["label"]) for r in items], dtype=np.int64)
            coarse = (np.array([int(r["coarse_label"]) for r in items], dtype=np.int64)
                      if items and "coarse_label" in items[0] else None)  # fmt: skip
            paths = paths_inside(root, [r["path"] for r in items], root / "manifest.csv")
            batches[split] = [Batch(split, LazyImages(paths), labels, [r["source_file"] for r in items], coarse)]
    except (KeyError, ValueError) as exc:
        raise SourceError(f"{root / 'manifest.csv'}: malformed manifest ({exc})") from None
    info_name = root.resolve().name
    return LabelledImages(
        name=info_name, format="cifarkit image export", location=root, class_names=class_names,
        batches=batches, verification="not applicable (image folder)",
    )  # fmt: skip
