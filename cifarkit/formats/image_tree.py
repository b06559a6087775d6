"""Labelled image trees: ``OUT/<split>/<class_name>/<index>.<ext>``, JPEG or PNG; for CIFAR-100
``--layout coarse/fine`` gives ``OUT/<split>/<superclass>/<class_name>/<index>.<ext>``.

Atomicity without a rename per file: a split is written into a hidden staging folder,
``OUT/.partial-<split>``, with a journal of the chunks that are complete, and renamed to
``OUT/<split>`` when every chunk is: one rename per split instead of one per image (creating the
60,000 small files is most of a JPEG export's time). A re-run rewrites only the chunks the
journal does not list. Reading goes through the folder-tree source, which restores order, indices
and labels from the export's ``manifest.csv``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..metadata.export_state import STAGING_PREFIX, TREE_LAYOUTS, ExportState
from ..metadata.names import folder_names, path_component
from ..writers.atomic import is_partial, output_error, write_plain
from .base import FormatAdapter, Owns, Piece, WriteOptions, index_width
from .codecs import encode_images, png
from .parallel import run_tasks

LAYOUTS = TREE_LAYOUTS  # --layout: <split>/<class>/ or CIFAR-100's <split>/<coarse>/<fine>/
NESTED = "coarse/fine"
JOURNAL = ".chunks-done"  # in a staging folder: the first index of each chunk written in full
IMAGES_PER_TASK = 1000  # images per worker task and journal entry: ~50 ms of work


@dataclass(frozen=True)
class Chunk(Piece):
    """A run of images written into the split's staging folder by one task."""

    names: tuple[str, ...] = ()  # per image, its path inside the split folder: <class>/<index>.<ext>

    def manifest_paths(self) -> list[str]:
        return [f"{self.split}/{name}" for name in self.names]


def class_folders(dataset, nested: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The class (and superclass) names as folder names: each one path component, no two that
    would be one folder on disk (``cat`` and ``cat ``), or one line naming them. Not rewritten:
    a rewritten name could land in another class's folder."""
    where = dataset.location
    fine = folder_names(dataset.class_names, "class", where)
    coarse = folder_names(dataset.coarse_class_names or (), "superclass", where) if nested else ()
    return fine, coarse


def write_images(images, folder: str, names, codec: str, quality: int) -> int:
    """Write each image to ``folder/<name>`` (runs in worker processes); returns the count.

    ``folder`` is a staging folder, so a file needs no temporary name of its own: three system
    calls per file (open, write, close) instead of five with an existence check and a rename. A
    file whose write fails is removed.
    """
    for data, name in zip(encode_images(images, codec, quality), names):
        path = f"{folder}/{name}"
        try:
            write_plain(path, data)
        except OSError as exc:
            raise output_error(Path(path), exc) from exc
    return len(names)


def _write_chunk(dataset, chunk: Chunk, folder: str, codec: str, quality: int) -> tuple[int, int]:
    """Worker: one chunk into the staging folder; returns (start, count) for the journal."""
    images = dataset.take(chunk.split, chunk.start, chunk.stop).images
    return chunk.start, write_images(images, folder, chunk.names, codec, quality)


def _read_journal(path: Path) -> set[int]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise output_error(path, exc) from None
    # Only whole lines: a kill can cut the last one short.
    return {int(line) for line in text.split("\n")[:-1] if line.isdigit()}


class ImageTree(FormatAdapter):
    """``--format jpg`` or ``--format png``: one image file per image, in class folders."""

    pieces_apart = False  # a split's staging folder is renamed once its last chunk is written

    def __init__(self, name: str):
        self.name = name  # also the file extension
        self.options = ("quality", "layout") if name == "jpg" else ("layout",)  # PNG is lossless: no quality

    def check_options(self, options: WriteOptions) -> None:
        if options.layout not in LAYOUTS:
            raise UsageError(f"unknown layout '{options.layout}'; choose one of {', '.join(LAYOUTS)}")

    def fingerprint(self, dataset, splits, options: WriteOptions) -> dict:
        nested = options.layout == NESTED
        if nested and dataset.coarse_class_names is None:
            raise UsageError(f"--layout {NESTED} needs superclasses (CIFAR-100); {dataset.name} has none")
        class_folders(dataset, nested)  # refused before anything is written
        fp: dict = {"quality": options.quality} if self.name == "jpg" else {"png_deflate": png.COMPRESSOR}
        fp["layout"] = "staged splits"  # how an unfinished split looks on disk
        if nested:
            fp["folders"] = options.layout
        return fp

    def plan(self, dataset, split: str, options: WriteOptions) -> list[Chunk]:
        n = dataset.count(split)
        width = index_width(n)
        nested = options.layout == NESTED
        dirs, coarse_dirs = class_folders(dataset, nested)
        chunks = []
        for start in range(0, n, IMAGES_PER_TASK):
            stop = min(n, start + IMAGES_PER_TASK)
            part = dataset.take(split, start, stop)
            folders = [dirs[label] for label in part.labels]
            if nested:
                folders = [f"{coarse_dirs[c]}/{f}" for c, f in zip(part.coarse_labels, folders)]
            names = tuple(f"{folder}/{start + i:0{width}d}.{self.name}" for i, folder in enumerate(folders))
            chunks.append(Chunk(split, start, stop, names))
        return chunks

    def write_split(self, dataset, split: str, out: Path, pieces: list[Chunk], options: WriteOptions, progress) -> int:
        n = dataset.count(split)
        split = path_component(split, "split", dataset.location)
        final, staging = out / split, out / f"{STAGING_PREFIX}{split}"
        if final.is_dir():  # finished by an earlier run of this same export
            progress.update(n)
            return n
        done = _read_journal(staging / JOURNAL)
        todo = [(chunk, str(staging), self.name, options.quality) for chunk in pieces if chunk.start not in done]
        already = n - sum(chunk.stop - chunk.start for chunk, *_ in todo)
        try:
            nested = options.layout == NESTED
            folders = set() if nested else set(class_folders(dataset, False)[0])
            folders |= {name.rpartition("/")[0] for chunk in pieces for name in chunk.names}
            for name in sorted(folders):
                (staging / name).mkdir(parents=True, exist_ok=True)
            progress.update(already)
            with open(staging / JOURNAL, "a") as journal:
                for start, written in run_tasks(_write_chunk, todo, options.workers, shared=dataset):
                    journal.write(f"{start}\n")
                    journal.flush()  # in the kernel: survives a kill of this process
                    progress.update(written)
            (staging / JOURNAL).unlink()
            staging.rename(final)
        except OSError as exc:
            raise output_error(Path(exc.filename or staging), exc) from None
        return already

    def describe(self, dataset, options: WriteOptions) -> dict:
        folders = "<coarse_class_name>/<class_name>" if options.layout == NESTED else "<class_name>"
        return {"layout": f"<split>/{folders}/<index>.{self.name}"}

    def owns(self, state: ExportState) -> Owns:
        """``<split>/<class>/<index>.<ext>`` (a superclass folder above the class under
        coarse/fine), and the same in ``.partial-<split>/`` with its journal, for each split the
        state counts: the index below the split's count, the extension this format's."""
        depth = 2 if state.folders == NESTED else 1  # folders between a split and its images
        image = re.compile(rf"[0-9]+\.{self.name}")
        tops = {name: count for split, count in state.counts.items() for name in (split, STAGING_PREFIX + split)}

        def owns(path: str, is_dir: bool) -> bool:
            parts = path.split("/")
            count = tops.get(parts[0])
            if count is None:
                return False
            if is_dir:
                return len(parts) <= 1 + depth
            if parts[0].startswith(STAGING_PREFIX) and parts[1:] == [JOURNAL] or is_partial(parts[-1]):
                return True
            return len(parts) == 2 + depth and image.fullmatch(parts[-1]) is not None and int(parts[-1][:-4]) < count

        return owns

    def open(self, root: Path, info, *, verify: bool = True):
        from ..readers.labelled import from_labelled
        from ..readers.reader import FIXED_SHAPES
        from ..sources import open_source

        dataset = open_source(root, verify=verify)
        # An export of CIFAR (MNIST) holds 32x32x3 (28x28x1) images only: a static shape.
        exported = dataset.format == "cifarkit image export"
        return from_labelled(dataset, FIXED_SHAPES.get(info.name) if exported else None)
