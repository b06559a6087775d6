"""What a Beam worker of ``cifarkit export --runner beam`` runs (:mod:`.beam_export` builds the
pipeline): it opens the source again, checks a run of image files, or writes pieces of a split
with the format's own adapter.

Workers do not receive the dataset: a CIFAR archive's pixels, or a million file names, would
travel in every work item or in the pipeline's graph. Each worker process opens the source at the
same path instead (once, kept for the items that follow) and proves it holds the same images as
the command's listing: :func:`digest` of both must match, or the item fails naming the source.

A failure a user can cause (a file that cannot be written, a changed source) comes back as a
result, not as an exception, so the command reports it in its own one line (Beam would log the
worker's traceback and retry the item).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

import apache_beam as beam
import numpy as np

from .._version import __version__
from ..errors import CifarkitError, OutputError, SourceError
from ..sources import open_source
from ..sources.labelled import LabelledImages, LazyImages
from .export import ExportOptions
from .export import _without as without_files
from .photos import check_files


@dataclass(frozen=True)
class SourceRef:
    """How a worker gets the export's dataset: the source's path (as the command was given it,
    so a file's path is the same string on both sides), the files left out (``--skip-bad``) and
    the digest of what is left."""

    location: str
    digest: str
    bad: frozenset[str] = frozenset()


def digest(dataset: LabelledImages) -> str:
    """What decides the bytes an export writes from ``dataset``, hashed: names, every split's
    labels and the file each image came from, and the pixels of images held in memory."""
    h = hashlib.blake2b(digest_size=20)
    h.update(repr((dataset.name, dataset.class_names, dataset.coarse_class_names)).encode())
    for split, batches in dataset.batches.items():
        h.update(repr((split, [len(b) for b in batches])).encode())
        for batch in batches:
            h.update(np.ascontiguousarray(batch.labels, np.int64).tobytes())
            if batch.coarse_labels is not None:
                h.update(np.ascontiguousarray(batch.coarse_labels, np.int64).tobytes())
            h.update("\0".join(map(str, batch.source_files)).encode())
            if isinstance(batch.images, np.ndarray):
                h.update(np.ascontiguousarray(batch.images).data)
            elif not isinstance(batch.images, LazyImages):  # a list of arrays of mixed sizes
                for image in batch.images:
                    h.update(repr(image.shape).encode() + np.ascontiguousarray(image).tobytes())
    return h.hexdigest()


_opened: dict[SourceRef, LabelledImages] = {}  # in a worker process: the dataset of the last source


def open_again(ref: SourceRef) -> LabelledImages:
    """The export's dataset in this worker, as the command listed it (:class:`SourceRef`)."""
    dataset = _opened.get(ref)
    if dataset is None:
        _opened.clear()
        dataset = open_source(ref.location, verify=False)  # the command verified it; the digest checks the rest
        if ref.bad:
            dataset = without_files(dataset, set(ref.bad))
        if digest(dataset) != ref.digest:
            raise SourceError(
                f"{ref.location}: a Beam worker found other images there than the command listed (the source "
                "changed, or the workers see another folder at that path); nothing of it was written"
            )
        _opened[ref] = dataset
    return dataset


def failure(exc: CifarkitError, split: str) -> dict:
    return {"split": split, "error": str(exc), "kind": type(exc).__name__}


class _Silent:
    """A worker's progress: the command reports each split once the pipeline is done."""

    def update(self, n: int = 1) -> None:
        pass


class CheckFiles(beam.DoFn):
    """Work item ``(split, start, stop)``: check those image files of the split as the local
    exporter does; yields one result per file that fails, and one count."""

    def __init__(self, ref: SourceRef):
        self.ref = ref

    def process(self, item: tuple[str, int, int]):
        split, start, stop = item
        try:
            images = open_again(self.ref).take(split, start, stop).images
        except CifarkitError as exc:
            yield failure(exc, split)
            return
        paths = [str(path) for path in images.paths] if isinstance(images, LazyImages) else []
        for index, check in enumerate(check_files(paths), start):
            if check.error:
                yield {"split": split, "index": index, "path": check.path, "error": check.error}
        yield {"split": split, "checked": stop - start}


def writer_fingerprint(dataset: LabelledImages, splits: tuple[str, ...], options: ExportOptions) -> dict:
    """What decides the bytes this process writes beyond the data: cifarkit's version and the
    format's fingerprint (which names the libraries whose versions change bytes: zlib, pyarrow...)."""
    return {"cifarkit": __version__, **options.adapter.fingerprint(dataset, splits, options)}


class WritePieces(beam.DoFn):
    """Work item ``(split, pieces)``: the format adapter's own ``write_split`` for those planned
    pieces, in this worker process, each piece to its temporary name and renamed as the local
    exporter writes it; yields the images written and skipped (an earlier run's).

    The export options travel as the values they were made from and are made again in the worker
    (one process, its own adapter): an adapter may hold what it decided for the command's dataset.
    A worker whose :func:`writer_fingerprint` differs from the command's writes nothing: on other
    machines, another zlib or pyarrow would write other bytes."""

    def __init__(self, ref: SourceRef, out: str, options: ExportOptions, fingerprint: dict):
        self.ref, self.out, self.fingerprint = ref, out, fingerprint
        self.settings = {f.name: getattr(options, f.name) for f in fields(options) if f.init}
        self.settings.update(workers=1, runner=None)

    def process(self, item: tuple[str, tuple]):
        split, pieces = item
        try:
            options = ExportOptions(**self.settings)
            dataset = open_again(self.ref)
            self._check_writer(dataset, options)
            skipped = options.adapter.write_split(dataset, split, Path(self.out), list(pieces), options, _Silent())
        except CifarkitError as exc:
            yield failure(exc, split)
            return
        yield {"split": split, "images": sum(p.stop - p.start for p in pieces), "skipped": skipped}

    def _check_writer(self, dataset: LabelledImages, options: ExportOptions) -> None:
        ours = writer_fingerprint(dataset, tuple(self.fingerprint["splits"]), options)
        ours["splits"] = self.fingerprint["splits"]
        for key, value in self.fingerprint.items():
            if ours.get(key) != value:
                raise OutputError(
                    f"a Beam worker would write other bytes than this machine: its {key} is {ours.get(key)!r}, "
                    f"this machine's {value!r}; install the same versions on the workers"
                )


def save_results(results: list[dict], target: str) -> None:
    """The pipeline's last step: every item's result in one JSON file the command reads."""
    import json

    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(target) as handle:
        handle.write(json.dumps(results).encode())
