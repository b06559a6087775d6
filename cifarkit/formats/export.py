"""``cifarkit export``: a dataset in any registered format (:mod:`cifarkit.formats`), resumable
and parallel.

This module runs what every format shares; the format's adapter plans the work, writes it and
describes it. The job is split into independent pieces (a chunk of images, or one shard) that
worker processes write; the workers inherit the dataset, so a task is a few indices. A small
state file records everything that decides the bytes written, so re-running the same command
after a kill skips finished work and ends byte-identical to an uninterrupted run, while a
different command cannot silently mix two exports; ``--overwrite`` removes only the files that
state says the earlier export wrote, and refuses if OUT holds anything else. Every export also
gets ``labels.txt``, ``manifest.csv`` (one row per image) and ``cifarkit_info.json``, each
written atomically (a TFRecord export adds TFDS's own metadata). Image files are checked before anything is written,
so a corrupt one is reported by name at the start, not half-way (``skip_bad`` leaves such files
out and lists them in cifarkit_info.json).

Exclusivity: the whole export, from the state check to the last metadata file, runs holding
:mod:`cifarkit.writers.folder_lock` on OUT, so two exports into one folder cannot interleave their files; the
second is refused in one line that names the first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import OutputError, SourceError, UsageError
from ..metadata.export_state import (
    STAGING_PREFIX,
    STATE_FILE,
    ExportState,
    ResumeInfo,
    finished,
    read_state,
    state_json,
)
from ..metadata.fields import MAX_SHARDS
from ..metadata.names import folder_names
from ..runtime.progress import MODES as PROGRESS_MODES
from ..runtime.progress import Meter, progress_mode
from ..sources.file_names import FileNames
from ..sources.labelled import Batch, LabelledImages, LazyImages
from ..writers.atomic import is_partial, output_error, remove_partials, write_text
from ..writers.clear import Owns, foreign_entry, remove_owned
from ..writers.folder_lock import LOCK_NAME, hold
from ..writers.manifest import write_json, write_labels, write_manifest
from . import ADAPTERS, FORMATS, FormatAdapter, Piece, get_adapter
from .base import CIFARKIT_INFO, DEFAULT_QUALITY, INFO_FILE, ExportRunner
from .parallel import default_workers, run_tasks
from .photos import FileCheck, bad_report, check_files
from .sharding import check_exclusive, parse_size

__all__ = ["FORMATS", "ExportOptions", "ExportSummary", "export_dataset"]

METADATA_FILES = ("labels.txt", "manifest.csv", CIFARKIT_INFO, INFO_FILE, STATE_FILE)
FILES_PER_CHECK = 200  # image files checked per worker task


@dataclass(frozen=True)
class ExportOptions:
    """How to export. ``format`` names the adapter (an alias such as ``jpeg`` is stored as the
    format's own name), which is :attr:`adapter`; the options after ``workers`` belong to the
    formats that declare them (:attr:`cifarkit.formats.base.FormatAdapter.options`)."""

    format: str = "jpg"
    splits: tuple[str, ...] | None = None  # None: every split the source has
    quality: int = DEFAULT_QUALITY  # JPEG quality (jpg trees and --encoding jpeg)
    workers: int = field(default_factory=default_workers)
    shards: int | None = None  # TFRecord shards per split; None: one per 5,000 images
    # Bytes a shard holds about (an int, or "256MB", "1GiB"); not with shards (cifarkit.formats.sharding)
    shard_size: int | str | None = None
    encoding: str = "auto"  # TFRecord image encoding; auto: PNG, or a JPEG/PNG file's own bytes
    overwrite: bool = False
    quiet: bool = False
    tfds_layout: bool = False  # TFRecord: write into OUT/<name>/<version>/, for tfds.load(data_dir=OUT)
    skip_bad: bool = False  # leave out image files that cannot be read (listed in cifarkit_info.json)
    layout: str = "class"  # image trees: cifarkit.formats.image_tree.LAYOUTS
    progress: str | None = None  # a mode of cifarkit.runtime.progress; None: from quiet and the terminal
    # Where the checks and writes run: None, this machine's worker processes; or an ExportRunner
    # (cifarkit.formats.beam_export.BeamRunner: Apache Beam). Every runner writes the same bytes.
    runner: ExportRunner | None = field(default=None, compare=False)
    adapter: FormatAdapter = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked when the options are made, before any data is read.
        adapter = get_adapter(self.format)
        object.__setattr__(self, "adapter", adapter)
        object.__setattr__(self, "format", adapter.name)
        if not 1 <= self.quality <= 100:
            raise UsageError(f"--quality must be between 1 and 100. Received: quality={self.quality}")
        if self.workers < 1:
            raise UsageError(f"--workers must be at least 1. Received: workers={self.workers}")
        if self.progress is not None and self.progress not in PROGRESS_MODES:
            raise UsageError(
                f"progress must be one of {', '.join(PROGRESS_MODES)}. Received: progress={self.progress!r}"
            )
        if self.shards is not None and not 1 <= self.shards <= MAX_SHARDS:
            raise UsageError(f"--shards must be between 1 and {MAX_SHARDS:,}. Received: shards={self.shards}")
        if self.shard_size is not None:
            object.__setattr__(self, "shard_size", parse_size(self.shard_size))
        check_exclusive(self.shards, self.shard_size)
        _refuse_unused(self)
        adapter.check_options(self)


def _refuse_unused(options: ExportOptions) -> None:
    """An option of other formats only, given a value other than its default, is refused: ignored,
    it would write something other than what was asked (``--quality`` with png)."""
    for option in fields(options):
        owners = [name for name, adapter in ADAPTERS.items() if option.name in adapter.options]
        value = getattr(options, option.name)
        if owners and option.name not in options.adapter.options and value != option.default:
            raise UsageError(
                f"--{option.name.replace('_', '-')} is for --format {' or '.join(owners)}; --format "
                f"{options.format} does not use it. Received: {option.name}={value!r}"
            )


@dataclass
class ExportSummary:
    out: Path
    counts: dict[str, int]
    skipped: int = 0  # images already written by an interrupted run
    complete: bool = False  # OUT held this export, finished: nothing was written
    bad: list[FileCheck] = field(default_factory=list)  # image files left out (skip_bad)


def _check(dataset: LabelledImages, options: ExportOptions) -> tuple[str, ...]:
    splits = options.splits or dataset.splits
    unknown = [s for s in splits if s not in dataset.batches]
    if unknown:
        raise UsageError(f"split '{unknown[0]}' is not in {dataset.location.name}; it has: {', '.join(dataset.splits)}")
    return folder_names(splits, "split", dataset.location)  # each becomes a folder or part of a file name


def _check_class_names(dataset: LabelledImages) -> None:
    """labels.txt holds one name a line: a name that is empty or holds a line break (any that
    ``str.splitlines`` knows) or a NUL would not read back as the same list of classes."""
    for kind, names in (("class", dataset.class_names), ("coarse class", dataset.coarse_class_names or ())):
        for index, name in enumerate(names):
            if not name or "\0" in name or name.splitlines() != [name]:
                raise SourceError(
                    f"{dataset.location}: {kind} {index} has the name {name!r}, which cannot be written "
                    "as one line of labels.txt (empty, or holds a line break or NUL)"
                )


def _fingerprint(
    dataset: LabelledImages, splits: tuple[str, ...], adapter: FormatAdapter, options: ExportOptions
) -> dict:
    """Everything that decides the bytes written; the worker count does not."""
    return {
        "dataset": dataset.name,
        "source": dataset.location.name,
        "counts": {s: dataset.count(s) for s in splits},
        "format": adapter.name,
        **adapter.fingerprint(dataset, splits, options),
    }


def _prepare(out: Path, fingerprint: dict, resume: ResumeInfo, options: ExportOptions) -> None:
    """Create OUT, or resume the same export in it; never mix two different exports, and never
    remove what an export did not write."""
    try:
        previous = read_state(out)
    except SourceError as exc:
        raise OutputError(f"{exc}; cannot tell what an earlier export wrote there, so choose another --out") from None
    state = state_json(fingerprint, resume)
    if previous is not None and previous.matches(fingerprint) and not options.overwrite:
        remove_partials(out)  # leftovers of the interrupted run; finished files are kept
        if previous.resume != resume:  # a state written before it recorded the command
            write_text(out / STATE_FILE, json.dumps(state, sort_keys=True) + "\n")
        return
    owns = _owned(previous)
    if out.is_dir() and any(p.name != LOCK_NAME for p in out.iterdir()):
        if not options.overwrite:
            foreign = foreign_entry(out, lambda path, is_dir: path == LOCK_NAME or owns(path, is_dir))
            if previous is None or foreign is not None:
                raise OutputError(
                    f"{out}: holds files cifarkit did not write ({foreign or 'unknown'}); choose another --out"
                )
            raise OutputError(
                f"{out}: holds an export with other options; pass --overwrite to replace it, or choose another --out"
            )
        remove_owned(out, owns, "the earlier export" if previous is not None else "cifarkit", keep=(LOCK_NAME,))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(out, exc) from None
    write_text(out / STATE_FILE, json.dumps(state, sort_keys=True) + "\n")


def _complete(out: Path, fingerprint: dict, options: ExportOptions) -> bool:
    """Whether OUT holds this same export, finished as every reader checks it (its last file
    written, no split left in staging): a re-run then has nothing to write."""
    try:
        previous = read_state(out)
    except SourceError:  # _prepare says what is wrong with it
        return False
    return (
        not options.overwrite
        and previous is not None
        and previous.matches(fingerprint)
        and finished(out)
        and not any(out.glob(STAGING_PREFIX + "*"))
    )


def _all_written(
    dataset: LabelledImages, out: Path, splits: tuple[str, ...], adapter: FormatAdapter, options: ExportOptions
) -> bool:
    """Whether every file the export's plan puts its images in is there, and the metadata files
    every export writes (one removed since is written again by the usual path)."""
    files = {"labels.txt", "manifest.csv", CIFARKIT_INFO}
    for split in splits:
        files.update(path for piece in adapter.plan(dataset, split, options) for path in piece.manifest_paths())
    return all(os.path.isfile(out / path) for path in files)


def _owned(state: ExportState | None) -> Owns:
    """What the export ``state`` describes wrote in OUT: the files every export writes at its top,
    and what its format's adapter claims; with no state, nothing."""
    adapter = ADAPTERS.get(state.format) if state is not None else None
    format_owns = adapter.owns(state) if adapter is not None else None

    def owns(path: str, is_dir: bool) -> bool:
        if state is None:
            return False
        if not is_dir and "/" not in path and (path in METADATA_FILES or is_partial(path)):
            return True
        return format_owns is not None and format_owns(path, is_dir)

    return owns


def _resume(dataset: LabelledImages, options: ExportOptions) -> ResumeInfo:
    """How this export was asked for: what a reader of an unfinished one tells the user to re-run."""
    source = os.path.abspath(dataset.location)
    return ResumeInfo(
        source=source if source.isprintable() else "<source>",
        quality=options.quality,
        splits=None if options.splits is None else tuple(options.splits),
        shards=options.shards,
        shard_size=options.shard_size,
        encoding=options.encoding,
        tfds_layout=options.tfds_layout,
        layout=options.layout,
        skip_bad=options.skip_bad,
    )


def _progress(total: int, split: str, options: ExportOptions) -> Meter:
    # A bar on a terminal; plain lines or JSON records in logs, CI and pipes.
    mode = options.progress or progress_mode(options.quiet)
    return Meter(total, "export", split, mode, desc=f"{split:>5}")


def _manifest_rows(dataset: LabelledImages, plans: dict[str, list[Piece]]) -> Iterator[tuple]:
    """The manifest's rows, piece by piece: where each image went and where it came from. Made as
    the file is written, so that a million rows are never held at once."""
    names, coarse_names = dataset.class_names, dataset.coarse_class_names
    for pieces in plans.values():
        for piece in pieces:
            paths, index = iter(piece.manifest_paths()), piece.start
            for part in dataset.parts(piece.split, piece.start, piece.stop):  # no pixels read, none joined
                coarse = None if part.coarse_labels is None else part.coarse_labels.tolist()
                # ``paths`` last: zip stops at the part's end before taking the next part's path
                for i, (label, source, path) in enumerate(zip(part.labels.tolist(), part.source_files, paths)):
                    row = (path, piece.split, index + i, label, names[label], source)
                    yield row if coarse is None else (*row, coarse[i], coarse_names[coarse[i]])
                index += len(part)


def export_dataset(dataset: LabelledImages, out: Path, options: ExportOptions = ExportOptions()) -> ExportSummary:
    """Write ``dataset`` under ``out`` in ``options.format``; safe to re-run after an interruption."""
    adapter = options.adapter
    splits = _check(dataset, options)
    _check_class_names(dataset)
    out = Path(out).joinpath(*adapter.folder(dataset, options))
    for folder in (out, *out.parents):
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"{folder}: exists and is not a folder")
    dataset, bad = _checked_files(dataset, splits, options)
    fingerprint = _fingerprint(dataset, splits, adapter, options)
    with hold(out, "an export"):
        summary = _export_locked(dataset, out, splits, adapter, fingerprint, options, bad)
    summary.bad = bad
    return summary


def _checked_files(dataset: LabelledImages, splits: tuple[str, ...], options: ExportOptions):
    """Check every image file of ``splits`` before anything is written; refuse the export if one
    cannot be read, or (``skip_bad``) return the dataset without them. Arrays need no check.
    The tasks are made as the workers take them: a task's names, not the whole tree's, as strings."""
    files = [b.images.paths for s in splits for b in dataset.batches[s] if isinstance(b.images, LazyImages)]
    total = sum(map(len, files))
    if not total:
        return dataset, []
    tasks = (
        ([str(p) for p in paths[i : i + FILES_PER_CHECK]],)
        for paths in files
        for i in range(0, len(paths), FILES_PER_CHECK)
    )
    found = (c for checks in run_tasks(check_files, tasks, options.workers) for c in checks if c.error)
    if options.runner is not None:  # checked where the export is written: on the runner's workers
        found = options.runner.check_files(dataset, splits, options)
    bad = sorted(found, key=lambda c: c.path)
    if not bad:
        return dataset, []
    if not options.skip_bad:
        raise SourceError(bad_report(bad, total) + "; nothing written: pass --skip-bad to export the others")
    return _without(dataset, {c.path for c in bad}), bad


def _without(dataset: LabelledImages, bad: set[str]) -> LabelledImages:
    batches: dict[str, list[Batch]] = {}
    for split, parts in dataset.batches.items():
        batches[split] = []
        for batch in parts:
            if not isinstance(batch.images, LazyImages):
                batches[split].append(batch)
                continue
            # 8 bytes a file kept, not a list of Python ints (36): the listing may be millions long
            keep = np.fromiter((i for i, p in enumerate(batch.images.paths) if str(p) not in bad), np.int64)
            coarse = None if batch.coarse_labels is None else batch.coarse_labels[keep]
            images = LazyImages(_pick(batch.images.paths, keep))
            batches[split].append(Batch(split, images, batch.labels[keep], _pick(batch.source_files, keep), coarse))
    return replace(dataset, batches=batches)


def _pick(items, keep: np.ndarray):
    """``items[i]`` for each index in ``keep``, compact names kept compact."""
    return items[keep] if isinstance(items, FileNames) else [items[i] for i in keep.tolist()]


def _export_locked(
    dataset: LabelledImages,
    out: Path,
    splits: tuple[str, ...],
    adapter: FormatAdapter,
    fingerprint: dict,
    options: ExportOptions,
    bad: list[FileCheck],
) -> ExportSummary:
    complete = _complete(out, fingerprint, options) and _all_written(dataset, out, splits, adapter, options)
    _prepare(out, fingerprint, _resume(dataset, options), options)
    if complete:
        counts = {split: dataset.count(split) for split in splits}
        return ExportSummary(out=out, counts=counts, skipped=sum(counts.values()), complete=True)
    plans: dict[str, list[Piece]] = {}
    summary = ExportSummary(out=out, counts={})
    for split in splits:
        n = dataset.count(split)
        summary.counts[split] = n
        if options.runner is not None:  # planned here, every split written below in one go
            plans[split] = adapter.plan(dataset, split, options)
            continue
        with _progress(n, split, options) as bar:
            plans[split] = adapter.plan(dataset, split, options)
            summary.skipped += adapter.write_split(dataset, split, out, plans[split], options, bar)
    if options.runner is not None:
        summary.skipped = options.runner.write(dataset, out, plans, options, bad)
    write_labels(out / "labels.txt", dataset.class_names)
    write_manifest(out / "manifest.csv", _manifest_rows(dataset, plans), dataset.coarse_class_names is not None)
    adapter.finish(out, dataset, plans, options)
    info = _dataset_info(dataset, adapter, plans, options)
    if bad:
        info["skipped"] = [{"file": c.path, "reason": c.error} for c in bad]
    write_json(out / CIFARKIT_INFO, info)
    return summary


def _dataset_info(
    dataset: LabelledImages, adapter: FormatAdapter, plans: dict[str, list[Piece]], options: ExportOptions
) -> dict:
    info: dict = {
        "name": dataset.name,
        "format": adapter.name,
        "source": {"file": dataset.location.name, "format": dataset.format, "verification": dataset.verification},
        "class_names": list(dataset.class_names),
    }
    if dataset.coarse_class_names is not None:
        info["coarse_class_names"] = list(dataset.coarse_class_names)
    info["splits"] = {
        split: {
            "count": dataset.count(split),
            "class_counts": dataset.class_counts(split),
            **adapter.describe_split(pieces),
        }
        for split, pieces in plans.items()
    }
    info.update(adapter.describe(dataset, options))
    info["cifarkit_version"] = __version__
    return info
