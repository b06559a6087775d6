"""How many shards a split is written as, and where each begins: ``--shards N`` or ``--shard-size``.

TFDS (``core/utils/shard_utils.py``) chooses a power of two of shards between 64 MiB and 1 GiB
each from the records' total size, once every record is written to temporary buckets, and gives
each shard as many examples. cifarkit plans before writing, from an estimate of each image's record
(:func:`record_estimates`): an image file's own size where ``--encoding auto`` keeps its bytes,
the pixels' size for ``raw``, and otherwise the ratio of the encoded size to either, measured on
a few images spread through the split. Then:

- ``--shards N``: N shards of equal image counts (as TFDS's ``get_shard_boundaries``).
- ``--shard-size SIZE``: as few shards as keep each under SIZE, their bounds placed so that each
  holds about the same bytes (photos of 20 KB and 400 KB side by side make equal image counts
  uneven files); images of one size (arrays) are split by count, which is the same thing.
- neither: the format's images per shard (5,000), and no shard over 256 MiB (:data:`DEFAULT_SHARD_BYTES`,
  in TFDS's range), even in bytes as under ``--shard-size``.

The bounds of a split are part of the export's fingerprint (:func:`bounds_digest`), so a re-run
resumes only where every finished shard still holds the images the plan gives it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import weakref
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..metadata.fields import MAX_SHARDS
from ..sources.labelled import LazyImages

DEFAULT_SHARD_BYTES = 256 << 20  # the default's cap on a shard's bytes (TFDS: 64 MiB to 1 GiB)
RECORD_OVERHEAD = 64  # about what a record adds to its image: framing, label, id, the keys
SAMPLE_IMAGES = 32  # images encoded to measure the encoded size of the others
MAX_SHARD_SIZE = 1 << 50
_UNITS = {"": 1, "b": 1, "k": 1000, "m": 1000**2, "g": 1000**3, "t": 1000**4}
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(i?)(b?)", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``256MB`` (10**6), ``256MiB`` (2**20), ``1.5GB``, ``65536``: a size in bytes; one line if not."""
    if isinstance(text, int):
        size = text
    else:
        found = _SIZE.fullmatch(str(text).strip())
        if found is None or (found.group(3) and not found.group(2)):
            raise UsageError(f"--shard-size must be a size such as 256MB, 1GiB or 65536. Received: {text!r}")
        number, unit, binary, _ = found.groups()
        scale = 1024 ** "kmgt".index(unit.lower()) * 1024 if binary else _UNITS[unit.lower()]
        size = int(float(number) * scale)
    if not 1 <= size <= MAX_SHARD_SIZE:
        raise UsageError(f"--shard-size must be between 1 byte and 1 PiB. Received: {text!r}")
    return size


def check_exclusive(shards: int | None, shard_size: int | None) -> None:
    if shards is not None and shard_size is not None:
        raise UsageError(
            "--shards and --shard-size both choose the shards: give one. "
            f"Received: shards={shards}, shard_size={shard_size}"
        )


@dataclass(frozen=True)
class ShardPlan:
    bounds: tuple[tuple[int, int], ...]  # (start, stop) of each shard, in order
    by_bytes: bool  # placed by estimated bytes (the digest is in the fingerprint), not image counts


def plan_shards(
    dataset,
    split: str,
    options,
    images_per_shard: int,
    estimate,
    default_bytes: int | None = None,
    max_shards: int = MAX_SHARDS,
) -> ShardPlan:
    """The shards of ``split`` under ``options.shards`` / ``options.shard_size`` (see the module's
    notes); ``estimate(dataset, split)`` gives each image's estimated record bytes (called only
    where the plan needs it). Without either option: ``images_per_shard`` a shard, and where
    ``default_bytes`` is given, none over it."""
    n = dataset.count(split)
    shard_size = getattr(options, "shard_size", None)
    if options.shards is not None or n == 0:
        return ShardPlan(_even(n, _clamp(options.shards or 1, n, max_shards)), False)
    by_count = _clamp(math.ceil(n / images_per_shard), n, max_shards)
    if shard_size is None and (default_bytes is None or _at_most(dataset, split, images_per_shard) <= default_bytes):
        return ShardPlan(_even(n, by_count), False)  # no estimate needed
    sizes = np.asarray(estimate(dataset, split), np.float64)
    total = float(sizes.sum())
    count = math.ceil(total / shard_size) if shard_size is not None else max(by_count, math.ceil(total / default_bytes))
    count = _clamp(count, n, max_shards)
    if np.all(sizes == sizes[0]):  # images of one size: split by count (the same bounds as --shards)
        return ShardPlan(_even(n, count), False)
    return ShardPlan(_balanced(sizes, count), True)


class ShardPlans:
    """An adapter's shard plans, made once per dataset, split and options (the estimate reads
    every file's size, and the plan is asked for by the fingerprint, the completeness check and
    the writing), and the fingerprint's fields that they decide."""

    def __init__(self, images_per_shard: int, encoded_sizes, overhead: int, capped: bool, max_shards=MAX_SHARDS):
        """``capped``: the default also keeps each shard under :data:`DEFAULT_SHARD_BYTES`."""
        self.images_per_shard, self.encoded_sizes, self.overhead = images_per_shard, encoded_sizes, overhead
        self.capped, self.max_shards = capped, max_shards
        self._cache: tuple = ()  # (weak reference to the dataset, {key: ShardPlan})

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": ()}  # a weak reference is not sent anywhere

    def get(self, dataset, split: str, options) -> ShardPlan:
        shard_size = getattr(options, "shard_size", None)
        key = (split, options.shards, shard_size, options.encoding, options.quality)
        ref, cached = self._cache or (None, {})
        if ref is None or ref() is not dataset:
            ref, cached = weakref.ref(dataset), {}
            self._cache = (ref, cached)
        if key not in cached:
            sizes = self.encoded_sizes(options.encoding, options.quality)

            def estimate(dataset, split):
                return record_estimates(dataset, split, options.encoding, options.quality, sizes, self.overhead)

            cap = DEFAULT_SHARD_BYTES if self.capped else None
            cached[key] = plan_shards(dataset, split, options, self.images_per_shard, estimate, cap, self.max_shards)
        return cached[key]

    def fingerprint(self, dataset, splits, options) -> dict:
        """``shards`` per split; ``shard_size`` where given; and where the bounds follow the images'
        sizes, their digest per split, so that a re-run resumes only over the same sizes."""
        plans = {s: self.get(dataset, s, options) for s in splits}
        fp: dict = {"shards": {s: len(plan.bounds) for s, plan in plans.items()}}
        if getattr(options, "shard_size", None) is not None:
            fp["shard_size"] = options.shard_size
        by_bytes = {s: bounds_digest(plan) for s, plan in plans.items() if plan.by_bytes}
        if by_bytes:
            fp["shard_bounds"] = by_bytes
        return fp


def bounds_digest(plan: ShardPlan) -> str:
    """A short digest of the bounds, for the fingerprint (a state file stays small at any size)."""
    flat = np.asarray(plan.bounds, np.int64).tobytes()
    return hashlib.sha256(flat).hexdigest()[:16]


def _clamp(count: int, n: int, most: int = MAX_SHARDS) -> int:
    return max(1, min(count, n, most))


def _even(n: int, count: int) -> tuple[tuple[int, int], ...]:
    return tuple((i * n // count, (i + 1) * n // count) for i in range(count))


def _balanced(sizes: np.ndarray, count: int) -> tuple[tuple[int, int], ...]:
    """Bounds where the running total of ``sizes`` is nearest each ``total * i / count``, each
    shard holding at least one image."""
    n = len(sizes)
    ends = np.cumsum(sizes)
    targets = ends[-1] * np.arange(1, count) / count
    cuts = np.searchsorted(ends, targets)  # the first image whose end reaches the target
    # Cut after that image where its end is nearer the target than the end before it.
    before = np.where(cuts > 0, ends[np.maximum(cuts - 1, 0)], 0.0)
    cuts = np.where(ends[cuts] - targets <= targets - before, cuts + 1, cuts)
    starts = [0]
    for i, cut in enumerate(cuts.tolist(), 1):
        starts.append(min(max(cut, starts[-1] + 1), n - (count - i)))  # non-empty, room for the rest
    return tuple(zip(starts, [*starts[1:], n]))


def _at_most(dataset, split: str, images: int) -> float:
    """An upper bound on the bytes of ``images`` arrays of the split, raw (PNG of noise is a little
    more: the margin); infinite for files, whose sizes take a look."""
    largest = 0
    for batch in dataset.batches[split]:
        if isinstance(batch.images, (LazyImages, list)):
            return math.inf
        if len(batch):
            largest = max(largest, int(np.prod(batch.images.shape[1:])))
    return 1.1 * largest * images + RECORD_OVERHEAD * images


def record_estimates(
    dataset, split: str, encoding: str, quality: int, encoded_sizes, overhead: int = RECORD_OVERHEAD
) -> np.ndarray:
    """Each image's record bytes, about: see the module's notes. ``encoded_sizes(images)``: the
    encoded image bytes the format stores for each of a few images (a batch's slice);
    ``overhead``: what a record adds to its image."""
    weights = np.concatenate([_weights(batch) for batch in dataset.batches[split]] or [np.zeros(0)])
    files = any(isinstance(batch.images, LazyImages) for batch in dataset.batches[split])
    if (files and encoding == "auto") or (not files and encoding == "raw") or not len(weights):
        return weights + overhead
    picks = np.unique(np.linspace(0, len(weights) - 1, min(SAMPLE_IMAGES, len(weights))).astype(np.int64))
    sampled = sum(sum(encoded_sizes(dataset.take(split, int(i), int(i) + 1).images)) for i in picks)
    ratio = sampled / max(1.0, float(weights[picks].sum()))
    return weights * ratio + overhead


def _weights(batch) -> np.ndarray:
    if isinstance(batch.images, LazyImages):
        return np.fromiter((os.stat(path).st_size for path in batch.images.paths), np.float64, len(batch))
    if isinstance(batch.images, list):
        return np.array([image.nbytes for image in batch.images], np.float64)
    per_image = int(np.prod(batch.images.shape[1:])) if batch.images.ndim > 1 else 0
    return np.full(len(batch), float(per_image))
