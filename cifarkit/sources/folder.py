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
from .records import Batch, Dataset, LazyImages

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Folder names treated as splits rather than classes; "val"/"validation" are kept as named.
SPLIT_NAMES = ("train", "test", "val", "validation", "valid")


def read_image(path: Path) -> np.ndarray:
    """Decode any image imageio reads into (H, W, 3) uint8: grey is repeated, alpha dropped."""
    import warnings

    import imageio.v3 as iio

    try:
        with warnings.catch_warnings():  # imageio's legacy plugins warn while trying a bad file
            warnings.simplefilter("ignore", DeprecationWarning)
            img = np.asarray(iio.imread(path))
    except Exception as exc:  # imageio raises many kinds; all mean "not a readable image"
        reason = (str(exc).strip().splitlines() or [""])[0]  # imageio adds lines of plugin advice
        raise SourceError(f"{path}: cannot decode image ({type(exc).__name__}: {reason})") from None
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    elif img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    elif img.ndim == 3 and img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise SourceError(f"{path}: unsupported image shape {img.shape}")
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)  # 16-bit PNGs: keep the high byte
        else:
            raise SourceError(f"{path}: unsupported pixel type {img.dtype}")
    return np.ascontiguousarray(img)


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )  # fmt: skip


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def looks_like_image_tree(root: Path) -> bool:
    return any(_images_in(d) for d in _subdirs(root)) or any(
        _images_in(c) for d in _subdirs(root) for c in _subdirs(d)
    )


def read_folder(root: Path) -> Dataset:
    if (root / "manifest.csv").is_file() and (root / "labels.txt").is_file():
        return _read_export(root)
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
    return Dataset(
        name=root.resolve().name, format="image folder tree", location=root,
        class_names=class_names, batches=batches, verification="not applicable (image folder)",
    )  # fmt: skip


def _read_export(root: Path) -> Dataset:
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
            paths = [root / r["path"] for r in items]
            batches[split] = [Batch(split, LazyImages(paths), labels, [r["source_file"] for r in items], coarse)]
    except (KeyError, ValueError) as exc:
        raise SourceError(f"{root / 'manifest.csv'}: malformed manifest ({exc})") from None
    info_name = root.resolve().name
    return Dataset(
        name=info_name, format="cifarkit image export", location=root, class_names=class_names,
        batches=batches, verification="not applicable (image folder)",
    )  # fmt: skip
