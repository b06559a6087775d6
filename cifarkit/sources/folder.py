"""Labelled image-folder trees as a source: ``root/<split>/<class>/*`` or ``root/<class>/*``.

Any tree of that shape works (cats vs dogs, flowers, or a cifarkit JPEG/PNG export), with
images of any size; class names come from the folder names. When the tree is a cifarkit export,
its ``manifest.csv`` restores the original order, indices and labels; any other tree is read
with its classes interleaved (:func:`stratified_order`), so that a slice of a split keeps every
class.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..metadata.export_info import read_export_info
from ..metadata.manifest import has_manifest, read_manifest
from .file_names import FileNames, stratified_permutation
from .image_file import MAX_PIXELS, read_image  # noqa: F401  (imported from here by readers and tests)
from .labelled import Batch, LabelledImages, LazyImages, paths_inside
from .listing import SplitListing

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
# Folder names treated as splits rather than classes; "val"/"validation" are kept as named.
SPLIT_NAMES = ("train", "test", "val", "validation", "valid")


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError as exc:  # a class folder without read permission, or one removed meanwhile
        raise SourceError(f"{folder}: cannot list the folder ({exc.strerror})") from None


def _check_name(folder: Path | str, name: str) -> None:
    """Refuse, in one line, a name that is not printable UTF-8: a class name, a manifest row and
    labels.txt hold it as UTF-8 text on one line."""
    try:
        name.encode("utf-8")  # undecodable bytes come as lone surrogates, which fail here
        printable = name.isprintable()
    except UnicodeEncodeError:
        printable = False
    if not printable:
        raise SourceError(f"{folder}: holds {name!a}, a name that is not printable UTF-8; rename it to read the tree")


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _images_in(folder: Path) -> list[str]:
    """The names of ``folder``'s image files, sorted: one folder's in memory at a time."""
    names = sorted(e.name for e in _entries(folder) if _is_image_name(e.name) and _is_file(e))
    for name in names:
        _check_name(folder, name)
    return names


def _subdirs(folder: Path) -> list[Path]:
    names = sorted(e.name for e in _entries(folder) if not e.name.startswith(".") and _is_dir(e))
    for name in names:
        _check_name(folder, name)
    return [folder / name for name in names]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows links, as Path.is_dir; a stat only where d_type is unknown
    except OSError:
        return False


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def looks_like_image_tree(root: Path) -> bool:
    if has_manifest(root):
        return True  # a cifarkit tree export, at any depth (--layout coarse/fine nests it)
    return any(_images_in(d) for d in _subdirs(root)) or any(_images_in(c) for d in _subdirs(root) for c in _subdirs(d))


def read_folder(root: Path) -> LabelledImages:
    if has_manifest(root):
        return read_export_tree(root)
    split_dirs = [d for d in _subdirs(root) if d.name in SPLIT_NAMES and _subdirs(d)]
    layout = {d.name: d for d in split_dirs} if split_dirs else {"train": root}
    listed = {split: _listed(layout[split]) for split in layout}
    class_names = tuple(sorted({d.name for dirs, _ in listed.values() for d in dirs}))
    if not class_names:
        raise SourceError(f"{root}: no images found (expected <split>/<class>/*.png|jpg or <class>/*.png|jpg)")
    index = {name: i for i, name in enumerate(class_names)}
    batches: dict[str, list[Batch]] = {}
    for split in sorted(layout, key=lambda s: (SPLIT_NAMES.index(s), s)):
        dirs, listing = listed[split]
        batches[split] = [_stratified_batch(split, root, dirs, listing.stratified([index[d.name] for d in dirs]))]
    return LabelledImages(
        name=root.resolve().name,
        format="image folder tree",
        location=root,
        class_names=class_names,
        batches=batches,
        verification="not applicable (image folder)",
    )


def _listed(split_folder: Path) -> tuple[list[Path], SplitListing]:
    """The class folders of a split that hold images, each listed once into one compact listing
    (:mod:`.listing`: in memory for a small tree, on disk for a large one)."""
    dirs, listing = [], SplitListing()
    for folder in _subdirs(split_folder):
        if names := _images_in(folder):
            dirs.append(folder)
            listing.add(str(folder), names)
    return dirs, listing


def _stratified_batch(split: str, root: Path, dirs: list[Path], ordered: tuple[FileNames, np.ndarray]) -> Batch:
    """One split's files in :func:`stratified_order` (``ordered``: their paths and labels), with
    their names relative to ``root`` (the manifest's source column) sharing the same listing."""
    paths, labels = ordered
    relative = paths.with_folders([str(folder.relative_to(root)) for folder in dirs])
    return Batch(split, LazyImages(paths), labels, relative)


def stratified_order(classes: list[tuple[int, list[Path]]]) -> tuple[list[Path], np.ndarray]:
    """The files of every class in one sequence where each class is spread evenly: the ``i``-th
    of a class of ``n`` files sits at ``(i + 0.5) / n`` of the way through (ties by label), so any
    slice (``train[:80%]``, ``train[80%:]``) holds every class in about its share. A tree read
    class by class would give a slice of one class only."""
    order = stratified_permutation([len(paths) for _, paths in classes], [label for label, _ in classes])
    files = [(label, path) for label, paths in classes for path in paths]
    return [files[i][1] for i in order], np.array([files[i][0] for i in order], dtype=np.int64)


def read_export_tree(root: Path) -> LabelledImages:
    """A cifarkit JPEG/PNG export: order, labels and names from its manifest and labels.txt,
    checked against the class and image counts its cifarkit_info.json records."""
    info = read_export_info(root)
    coarse_names = info.coarse_class_names if info is not None else None
    manifest = read_manifest(
        root, len(info.class_names) if info is not None else None, len(coarse_names) if coarse_names else None
    )
    if info is not None:
        _check_counts(manifest, info)
    batches: dict[str, list[Batch]] = {}
    for split, rows in manifest.splits.items():
        paths = paths_inside(root, rows.paths, manifest.path)
        coarse = np.asarray(rows.coarse, np.int64) if rows.coarse is not None and coarse_names else None
        batches[split] = [Batch(split, LazyImages(paths), manifest.labels(split), rows.sources, coarse)]
    for split in info.splits if info is not None else ():
        if split not in batches:  # exported empty: no row of the manifest names it (_check_counts: none recorded)
            none = np.zeros(0, np.int64)
            batches[split] = [Batch(split, LazyImages([]), none, [], none if coarse_names else None)]
            batches = {s: batches[s] for s in dict.fromkeys([*info.splits, *batches])}  # as exported
    return LabelledImages(
        name=root.resolve().name,
        format="cifarkit image export",
        location=root,
        class_names=manifest.class_names,
        batches=batches,
        coarse_class_names=coarse_names if coarse_names and _has_coarse(batches) else None,
        verification="not applicable (image folder)",
    )


def _has_coarse(batches: dict[str, list[Batch]]) -> bool:
    return bool(batches) and all(b.coarse_labels is not None for bs in batches.values() for b in bs)


def _check_counts(manifest, info) -> None:
    """The manifest lists as many images of each split as cifarkit_info.json records."""
    listed = {split: len(rows.paths) for split, rows in manifest.splits.items()}
    for split in dict.fromkeys([*listed, *info.splits]):
        recorded = info.splits[split].count if split in info.splits else None
        if listed.get(split, 0) != (recorded or 0) or recorded is None:
            raise SourceError(
                f"{manifest.path}: lists {listed.get(split, 0):,} images of split {split!r} where "
                f"{info.path.name} records {'none' if recorded is None else f'{recorded:,}'}"
            )
