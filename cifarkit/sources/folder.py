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
from .records import Batch, Dataset, LazyImages, paths_inside

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Folder names treated as splits rather than classes; "val"/"validation" are kept as named.
SPLIT_NAMES = ("train", "test", "val", "validation", "valid")


# Pixels an image header may claim: 100 megapixels (a 10000 x 10000 photo, 300 MB decoded as RGB)
# is far beyond any dataset image; a bigger claim is a decompression bomb (a 20000 x 20000 PNG of
# zeros is a few hundred KB on disk and 1.2 GB decoded), refused before anything is decoded.
MAX_PIXELS = 100_000_000
# Pillow modes of 16 or 32 bits per grey pixel; scaled to 8 bits by keeping the high byte.
_WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: Path) -> np.ndarray:
    """Decode any image Pillow reads into (H, W, 3) uint8, the first frame of an animation.

    Grey is repeated, alpha dropped, palettes looked up, CMYK and YCCK JPEGs (Adobe's inverted
    CMYK included) converted to RGB; a header claiming more than :data:`MAX_PIXELS` is refused.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():  # Pillow warns of big or odd files; our own checks speak
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                _check_pixels(path, image.size)
                return _to_rgb(path, image)
    except SourceError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own check, at twice its default limit
        raise _too_big(path, str(exc).split(",")[0]) from None
    except Exception as exc:  # Pillow raises many kinds for a crafted file; all mean "not readable"
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise SourceError(f"{path}: cannot decode image ({type(exc).__name__}: {reason})") from None


def _check_pixels(path: Path, size: tuple[int, int]) -> None:
    width, height = size
    if width * height > MAX_PIXELS:
        raise _too_big(path, f"{width} x {height} pixels")


def _too_big(path: Path, what: str) -> SourceError:
    return SourceError(
        f"{path}: image larger than cifarkit reads ({what}; the limit is {MAX_PIXELS // 1_000_000} "
        "megapixels), refused before decoding: a decompression bomb?"
    )


def _to_rgb(path: Path, image) -> np.ndarray:
    """A decoded Pillow image as (H, W, 3) uint8."""
    if image.mode in _WIDE_GREY_MODES:
        grey = np.asarray(image).astype(np.int64)  # byte order already resolved by Pillow
        high = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)  # 16-bit grey: keep the high byte
        return np.ascontiguousarray(np.repeat(high[..., None], 3, axis=-1))
    if image.mode == "F":
        raise SourceError(f"{path}: unsupported pixel type (floating point, Pillow mode F)")
    if image.mode == "PA":
        image = image.convert("RGBA")  # the one mode Pillow cannot take straight to RGB
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


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
            paths = paths_inside(root, [r["path"] for r in items], root / "manifest.csv")
            batches[split] = [Batch(split, LazyImages(paths), labels, [r["source_file"] for r in items], coarse)]
    except (KeyError, ValueError) as exc:
        raise SourceError(f"{root / 'manifest.csv'}: malformed manifest ({exc})") from None
    info_name = root.resolve().name
    return Dataset(
        name=info_name, format="cifarkit image export", location=root, class_names=class_names,
        batches=batches, verification="not applicable (image folder)",
    )  # fmt: skip
