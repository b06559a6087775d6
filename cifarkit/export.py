"""``cifarkit export``: a dataset to a JPEG/PNG tree or TFRecord shards, resumable and parallel.

The job is split into independent tasks (a chunk of images, or one shard) that worker processes
write; the workers inherit the dataset, so a task is a few indices. A small state file records
the options the folder is being written with, so re-running the same command after a kill skips
finished work and ends byte-identical to an uninterrupted run, while a different command cannot
silently mix two exports.

Atomicity: a TFRecord shard is written under a temporary name and renamed. An image tree split
is written into a hidden staging folder, ``OUT/.partial-<split>``, with a journal of the chunks
that are complete, and renamed to ``OUT/<split>`` when every chunk is: one rename per split
instead of one per file. A re-run rewrites only the chunks the journal does not list.

Exclusivity: the whole export, from the state check to the last metadata file, runs holding
:mod:`folder_lock` on OUT, so two exports into one folder cannot interleave their files; the
second is refused in one line that names the first.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, folder_lock
from .errors import OutputError, SourceError, UsageError
from .parallel import default_workers, run_tasks
from .sources.records import Dataset
from .writers import image_tree, png, tfrecord
from .writers.atomic import output_error, remove_partials, write_text
from .writers.manifest import write_json, write_labels, write_manifest

FORMATS = ("jpg", "png", "tfrecord")
STATE_FILE = ".cifarkit-export.json"
IMAGES_PER_TASK = 1000  # images per worker task and journal entry: ~50 ms of work
IMAGES_PER_SHARD = 5000  # default shard size: 12 CIFAR-10 shards, enough to shard across workers
METADATA_FILES = ("labels.txt", "manifest.csv", "dataset_info.json", STATE_FILE)
STAGING_PREFIX = ".partial-"  # OUT/.partial-<split>: an image-tree split being written
JOURNAL = ".chunks-done"  # in a staging folder: the first index of each chunk written in full


@dataclass(frozen=True)
class ExportOptions:
    format: str = "jpg"
    splits: tuple[str, ...] | None = None  # None: every split the source has
    quality: int = 95  # JPEG quality (image trees and --encoding jpeg)
    workers: int = field(default_factory=default_workers)
    shards: int | None = None  # TFRecord shards per split; None: one per IMAGES_PER_SHARD images
    encoding: str = "png"  # TFRecord image encoding
    overwrite: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        # Checked when the options are made, before any data is read.
        if self.format not in FORMATS:
            raise UsageError(f"unknown format '{self.format}'; choose one of {', '.join(FORMATS)}")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100. Received: quality={self.quality}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1. Received: workers={self.workers}")
        if self.shards is not None and self.shards < 1:
            raise UsageError(f"--shards must be at least 1. Received: shards={self.shards}")
        if self.encoding not in tfrecord.ENCODINGS:
            raise UsageError(f"unknown encoding '{self.encoding}'; choose one of {', '.join(tfrecord.ENCODINGS)}")


@dataclass
class ExportSummary:
    out: Path
    counts: dict[str, int]
    skipped: int = 0  # images already written by an interrupted run


def _check(dataset: Dataset, options: ExportOptions) -> tuple[str, ...]:
    splits = options.splits or dataset.splits
    unknown = [s for s in splits if s not in dataset.batches]
    if unknown:
        raise UsageError(f"split '{unknown[0]}' is not in {dataset.location.name}; it has: {', '.join(dataset.splits)}")
    return tuple(splits)


def _shards(n: int, options: ExportOptions) -> int:
    wanted = options.shards or math.ceil(n / IMAGES_PER_SHARD)
    return max(1, min(wanted, n))


def _fingerprint(dataset: Dataset, splits: tuple[str, ...], options: ExportOptions) -> dict:
    """Everything that decides the bytes written; the worker count does not."""
    fp = {
        "dataset": dataset.name,
        "source": dataset.location.name,
        "counts": {s: dataset.count(s) for s in splits},
        "format": options.format,
    }
    if options.format == "jpg" or (options.format == "tfrecord" and options.encoding == "jpeg"):
        fp["quality"] = options.quality
    if options.format == "png" or (options.format == "tfrecord" and options.encoding == "png"):
        fp["png_deflate"] = png.COMPRESSOR  # another deflate writes other (equally valid) bytes
    if options.format == "tfrecord":
        fp["encoding"] = options.encoding
        fp["shards"] = {s: _shards(dataset.count(s), options) for s in splits}
    else:
        fp["layout"] = "staged splits"  # how an unfinished split looks on disk
    return fp


def _prepare(out: Path, fingerprint: dict, options: ExportOptions, splits: tuple[str, ...]) -> None:
    """Create OUT, or resume the same export in it; never mix two different exports."""
    state_path = out / STATE_FILE
    try:
        previous = json.loads(state_path.read_text()) if state_path.is_file() else None
    except (OSError, ValueError):
        previous = {}
    if previous == fingerprint and not options.overwrite:
        remove_partials(out)  # leftovers of the interrupted run; finished files are kept
        return
    if out.is_dir() and any(p.name != folder_lock.LOCK_NAME for p in out.iterdir()):
        if not options.overwrite:
            what = "an export with other options" if previous is not None else "files cifarkit did not write"
            raise OutputError(f"{out}: holds {what}; pass --overwrite to replace it, or choose another --out")
        _clean(out, splits)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc) from None
    write_text(state_path, json.dumps(fingerprint, sort_keys=True) + "\n")


def _clean(out: Path, splits: tuple[str, ...]) -> None:
    """--overwrite: remove what an export writes (split folders, shards, metadata), nothing else."""
    try:
        for name in METADATA_FILES:
            (out / name).unlink(missing_ok=True)
        for path in out.glob("*.tfrecord-*-of-*"):
            path.unlink()
        for split in set(splits) | {"train", "test"}:
            if (out / split).is_dir():
                shutil.rmtree(out / split)
        for staging in out.glob(STAGING_PREFIX + "*"):
            shutil.rmtree(staging)
        remove_partials(out)
    except OSError as exc:
        raise output_error(out, exc) from None


def _progress(total: int, split: str, quiet: bool):
    from tqdm import tqdm

    # disable=None: tqdm turns itself off when stderr is not a terminal (logs, CI, pipes).
    return tqdm(total=total, desc=f"{split:>5}", unit="img", disable=True if quiet else None, leave=True)


def _write_chunk(dataset: Dataset, split: str, start: int, stop: int, folder: str, names: list[str],
                 fmt: str, quality: int) -> tuple[int, int]:  # fmt: skip
    """Worker: images ``start:stop`` of ``split`` into the staging folder; returns (start, count)
    for the journal."""
    images = dataset.take(split, start, stop).images
    return start, image_tree.write_images(images, folder, names, fmt, quality)


def _write_shard(dataset: Dataset, path: str, split: str, start: int, stop: int, width: int,
                 encoding: str, quality: int) -> tuple[int, int]:  # fmt: skip
    """Worker: one TFRecord shard; returns (written, skipped)."""
    part = dataset.take(split, start, stop)
    return tfrecord.write_shard(path, split, start, width, part.images, part.labels, part.coarse_labels,
                                encoding, quality)  # fmt: skip


def _read_journal(path: Path) -> set[int]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise output_error(path, exc) from None
    # Only whole lines: a kill can cut the last one short.
    return {int(line) for line in text.split("\n")[:-1] if line.isdigit()}


def _export_tree(dataset: Dataset, split: str, out: Path, options: ExportOptions, rows: list, bar) -> int:
    """Write one split as an image tree; returns how many images an earlier run had written."""
    n = dataset.count(split)
    width = image_tree.index_width(n)
    ext = image_tree.EXTENSIONS[options.format]
    dirs = [image_tree.safe_dirname(name) for name in dataset.class_names]
    final, staging = out / split, out / f"{STAGING_PREFIX}{split}"
    chunks = []
    for start in range(0, n, IMAGES_PER_TASK):
        stop = min(n, start + IMAGES_PER_TASK)
        part = dataset.take(split, start, stop)
        names = [f"{dirs[label]}/{start + i:0{width}d}.{ext}" for i, label in enumerate(part.labels)]
        _add_rows(rows, dataset, part, split, start, [f"{split}/{name}" for name in names])
        chunks.append((split, start, stop, str(staging), names, options.format, options.quality))
    if final.is_dir():  # finished by an earlier run of this same export
        bar.update(n)
        return n
    done = _read_journal(staging / JOURNAL)
    todo = [chunk for chunk in chunks if chunk[1] not in done]
    already = n - sum(stop - start for _, start, stop, *_ in todo)
    try:
        for name in set(dirs):
            (staging / name).mkdir(parents=True, exist_ok=True)
        bar.update(already)
        with open(staging / JOURNAL, "a") as journal:
            for start, written in run_tasks(_write_chunk, todo, options.workers, shared=dataset):
                journal.write(f"{start}\n")
                journal.flush()  # in the kernel: survives a kill of this process
                bar.update(written)
        (staging / JOURNAL).unlink()
        staging.rename(final)
    except OSError as exc:
        raise output_error(Path(exc.filename or staging), exc) from None
    return already


def _export_shards(dataset: Dataset, split: str, out: Path, options: ExportOptions, rows: list, bar) -> int:
    """Write one split as TFRecord shards; returns how many images an earlier run had written."""
    n = dataset.count(split)
    shards = _shards(n, options)
    width = image_tree.index_width(n)
    tasks = []
    for shard in range(shards):
        start, stop = shard * n // shards, (shard + 1) * n // shards
        name = tfrecord.shard_name(dataset.name, split, shard, shards)
        _add_rows(rows, dataset, dataset.take(split, start, stop), split, start, [name] * (stop - start))
        tasks.append((str(out / name), split, start, stop, width, options.encoding, options.quality))
    skipped = 0
    for written, already in run_tasks(_write_shard, tasks, options.workers, shared=dataset):
        bar.update(written + already)
        skipped += already
    return skipped


def _add_rows(rows: list, dataset: Dataset, part, split: str, start: int, paths: list[str]) -> None:
    names = dataset.class_names
    for i, (path, label) in enumerate(zip(paths, part.labels)):
        row = (path, split, start + i, int(label), names[label], part.source_files[i])
        if part.coarse_labels is not None:
            coarse = int(part.coarse_labels[i])
            row += (coarse, dataset.coarse_class_names[coarse])
        rows.append(row)


def _check_class_names(dataset: Dataset) -> None:
    """labels.txt holds one name a line: a name that is empty or holds a line break (any that
    ``str.splitlines`` knows) or a NUL would not read back as the same list of classes."""
    for kind, names in (("class", dataset.class_names), ("coarse class", dataset.coarse_class_names or ())):
        for index, name in enumerate(names):
            if not name or "\0" in name or name.splitlines() != [name]:
                raise SourceError(f"{dataset.location}: {kind} {index} has the name {name!r}, which cannot be written "
                                  "as one line of labels.txt (empty, or holds a line break or NUL)")  # fmt: skip


def export_dataset(dataset: Dataset, out: Path, options: ExportOptions = ExportOptions()) -> ExportSummary:
    """Write ``dataset`` under ``out`` in ``options.format``; safe to re-run after an interruption."""
    splits = _check(dataset, options)
    _check_class_names(dataset)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    fingerprint = _fingerprint(dataset, splits, options)
    with folder_lock.hold(out, "an export"):
        return _export_locked(dataset, out, splits, fingerprint, options)


def _export_locked(dataset: Dataset, out: Path, splits: tuple[str, ...], fingerprint: dict,
                   options: ExportOptions) -> ExportSummary:  # fmt: skip
    _prepare(out, fingerprint, options, splits)
    rows: list[tuple] = []
    summary = ExportSummary(out=out, counts={})
    export_split = _export_shards if options.format == "tfrecord" else _export_tree
    for split in splits:
        n = dataset.count(split)
        summary.counts[split] = n
        with _progress(n, split, options.quiet) as bar:
            summary.skipped += export_split(dataset, split, out, options, rows, bar)
    coarse = dataset.coarse_class_names is not None
    write_labels(out / "labels.txt", dataset.class_names)
    write_manifest(out / "manifest.csv", rows, coarse)
    write_json(out / "dataset_info.json", _dataset_info(dataset, splits, options, fingerprint))
    return summary


def _dataset_info(dataset: Dataset, splits: tuple[str, ...], options: ExportOptions, fingerprint: dict) -> dict:
    info: dict = {
        "name": dataset.name,
        "format": options.format,
        "source": {"file": dataset.location.name, "format": dataset.format, "verification": dataset.verification},
        "class_names": list(dataset.class_names),
    }
    if dataset.coarse_class_names is not None:
        info["coarse_class_names"] = list(dataset.coarse_class_names)
    info["splits"] = {}
    for split in splits:
        entry: dict = {"count": dataset.count(split), "class_counts": dataset.class_counts(split)}
        if options.format == "tfrecord":
            shards = fingerprint["shards"][split]
            entry["shards"] = shards
            entry["files"] = [tfrecord.shard_name(dataset.name, split, i, shards) for i in range(shards)]
        info["splits"][split] = entry
    if options.format == "tfrecord":
        specs = tfrecord.feature_specs(coarse=dataset.coarse_class_names is not None, encoding=options.encoding)
        info["encoding"] = options.encoding
        info["features"] = {s.name: {"dtype": s.kind, "description": s.description} for s in specs}
    else:
        info["layout"] = "<split>/<class_name>/<index>." + image_tree.EXTENSIONS[options.format]
    info["cifarkit_version"] = __version__
    return info
