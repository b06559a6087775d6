"""Dataset statistics: per-channel mean and std, the RGB covariance and its eigen decomposition.

One streaming pass over uint8 images with float64 sums (pixel count, sum and the 3x3 sum of
outer products), so the whole of CIFAR-10 never has to be held as floats. Everything is stated
for pixel values on the [0, 1] scale (uint8 / 255); the 0-255 mean and std are stored as well
because that is how people usually quote them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import SourceError, UsageError
from ..writers.atomic import write_text

SCALE = "[0, 1]: uint8 pixel / 255"
STATS_FILE = "stats.json"


@dataclass(frozen=True)
class Stats:
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    covariance: tuple[tuple[float, ...], ...]  # 3x3, RGB
    eigenvalues: tuple[float, float, float]  # descending
    eigenvectors: tuple[tuple[float, ...], ...]  # 3x3, column i belongs to eigenvalue i
    pixels: int  # pixels (per channel) the numbers were computed from
    images: int
    dataset: str = ""
    split: str = "train"
    scale: str = SCALE

    def to_json(self) -> dict:
        data = asdict(self)
        data["mean_255"] = [m * 255 for m in self.mean]
        data["std_255"] = [s * 255 for s in self.std]
        return data

    @staticmethod
    def from_json(data: dict) -> Stats:
        """The statistics in ``data`` as a saved model's layer config holds them, checked as a
        statistics file is (:mod:`cifarkit.metadata.stats_file`)."""
        from ..metadata.stats_file import parse_stats

        try:
            text = json.dumps(data, allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:  # not JSON data, NaN in it, nested too deep
            raise SourceError(f"malformed statistics ({exc})") from None
        return Stats.from_file(parse_stats(text, "statistics"))

    @staticmethod
    def from_file(checked) -> Stats:
        """A :class:`cifarkit.metadata.stats_file.StatsFile` as :class:`Stats`."""
        return Stats(
            mean=checked.mean,
            std=checked.std,
            covariance=checked.covariance,
            eigenvalues=checked.eigenvalues,
            eigenvectors=checked.eigenvectors,
            pixels=checked.pixels,
            images=checked.images,
            dataset=checked.dataset,
            split=checked.split,
            scale=checked.scale or SCALE,
        )


# Pixels turned into float64 at a time (24 MB for RGB): a batch of 1,024 CIFAR images, so the
# sums over CIFAR are taken exactly as one batch at a time.
PIXEL_CHUNK = 1024 * 32 * 32


class RunningMoments:
    """Float64 sums of pixels and of their outer products, fed one uint8 batch at a time."""

    def __init__(self, channels: int = 3) -> None:
        self.pixels = 0
        self.images = 0
        self.total = np.zeros(channels, np.float64)  # 1 for grey images (MNIST), 3 for RGB
        self.outer = np.zeros((channels, channels), np.float64)

    def update(self, images: np.ndarray) -> None:
        images = np.asarray(images)
        if self.pixels == 0 and images.shape[-1] != len(self.total):  # channels follow the first batch
            self.__init__(images.shape[-1])
        pixels = images.reshape(-1, len(self.total))
        self.images += len(images)
        # As floats a chunk at a time: a batch of big images (a photo tree squared to 227) would
        # otherwise be copied whole as float64, eight times its size.
        for start in range(0, len(pixels), PIXEL_CHUNK):
            flat = pixels[start : start + PIXEL_CHUNK].astype(np.float64)
            flat /= 255.0  # in place: one float copy, not two
            self.pixels += flat.shape[0]
            self.total += flat.sum(axis=0)
            self.outer += flat.T @ flat
            del flat  # before the next chunk's copy is made

    def finish(self, dataset: str = "", split: str = "train") -> Stats:
        if self.pixels == 0:
            raise SourceError("no images to compute statistics from")
        mean = self.total / self.pixels
        cov = self.outer / self.pixels - np.outer(mean, mean)  # population covariance
        values, vectors = np.linalg.eigh(cov)
        order = np.argsort(values)[::-1]
        values, vectors = values[order], vectors[:, order]
        # eigh's signs are arbitrary; make each eigenvector's largest component positive so the
        # stored numbers do not flip between numpy builds.
        signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), range(len(values))])
        vectors = vectors * signs
        return Stats(
            mean=tuple(mean.tolist()),
            std=tuple(np.sqrt(np.diag(cov)).tolist()),
            covariance=tuple(tuple(r) for r in cov.tolist()),
            eigenvalues=tuple(values.tolist()),
            eigenvectors=tuple(tuple(r) for r in vectors.tolist()),
            pixels=self.pixels,
            images=self.images,
            dataset=dataset,
            split=split,
        )


def compute_stats(batches: Iterable[np.ndarray], dataset: str = "", split: str = "train") -> Stats:
    moments = RunningMoments()
    for images in batches:
        moments.update(images)
    return moments.finish(dataset, split)


def save_stats(stats: Stats, path: Path) -> None:
    write_text(Path(path), json.dumps(stats.to_json(), indent=2) + "\n")


def load_stats(path: Path) -> Stats:
    """A statistics file (``cifarkit stats``, a run's ``stats.json``), checked; one line otherwise."""
    from ..metadata.stats_file import read_stats_file

    path = Path(path)
    if not path.exists():
        raise SourceError(f"{path}: no such statistics file")
    return Stats.from_file(read_stats_file(path))


def bundled_stats(dataset: str) -> Stats | None:
    """Statistics shipped with cifarkit (computed by ``cifarkit stats`` on the real training set)."""
    from ..metadata.stats_file import parse_stats

    entry = resources.files("cifarkit") / "defaults" / f"{dataset}-stats.json"
    if not entry.is_file():
        return None
    return Stats.from_file(parse_stats(entry.read_bytes(), entry))


# The bundled statistics describe the full official training split; a sample or a subset gets
# its own numbers computed on the spot (one pass, seconds for CIFAR sizes).
FULL_TRAIN_COUNTS = {"cifar10": 50_000, "cifar100": 50_000}


def stats_for(source, split: str = "train", *, image_size: int | None = None, progress: str = "off") -> Stats:
    """Statistics for a :class:`~cifarkit.readers.reader.DataReader`: bundled when they apply, else computed."""
    if source.counts.get(split) == FULL_TRAIN_COUNTS.get(source.name) and split == "train":
        bundled = bundled_stats(source.name)
        if bundled is not None:
            return bundled
    return compute_source_stats(source, split, image_size=image_size, progress=progress)


def compute_source_stats(
    source, split: str = "train", *, image_size: int | None = None, progress: str = "off"
) -> Stats:
    """One streaming pass over a split of a :class:`~cifarkit.readers.reader.DataReader`;
    ``progress`` is a mode of :mod:`cifarkit.runtime.progress`."""
    from ..runtime.progress import Meter

    if split not in source.counts:
        raise UsageError(
            f"{source.location}: no split {split!r} to compute statistics from; it has {', '.join(source.counts)}"
        )
    moments = RunningMoments()
    with Meter(source.counts[split], "stats", split, progress, desc=f"stats {split}", leave=False) as bar:
        for images in _image_batches(source, split, image_size):
            moments.update(images)
            bar.update(len(images))
    return moments.finish(source.name, split)


STATS_BATCH = 1024  # images summed at a time (the float64 copy of a batch is 25 MB for CIFAR)


def _image_batches(source, split: str, image_size: int | None) -> Iterable[np.ndarray]:
    """uint8 batches of a split: sliced from the arrays in memory (no TensorFlow needed), or
    decoded by tf.data for image files and TFRecords."""
    held = source.in_memory(split)
    if held is not None:
        images = held[0]
        for start in range(0, len(images), STATS_BATCH):
            yield images[start : start + STATS_BATCH]
        return
    from .reader import without_autotune

    ds = without_autotune(source.dataset(split, image_size=image_size).batch(STATS_BATCH))
    for images, _ in ds.as_numpy_iterator():
        yield images
