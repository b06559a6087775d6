"""uint8 training batches from arrays in memory, without tf.data: for any Keras backend.

A CIFAR archive is read into numpy arrays (``cifarkit.sources``); this feed shuffles their
indices once per epoch, gathers whole batches of uint8 images (3 KB a CIFAR image) on a
background thread, and keeps a few ready in a bounded queue, so the training loop, whose model
augments on the device (:class:`cifarkit.augment.layer.Augmentation`), finds the next batch
waiting. It says how long the consumer waited for input, which is the figure that tells whether
the input keeps the accelerator busy.

    feed = Feed(images, labels, batch_size=128, seed=0)
    for images, labels in feed.epochs(3):     # 3 epochs, each in its own shuffled order
        model.train_on_batch(images, labels)
    feed.stats.wait_seconds                   # time the loop spent waiting for a batch

Order: epoch e visits the images in ``np.random.default_rng((seed, e)).permutation(n)`` (the
same seed gives the same orders, every epoch its own, as tf.data's ``reshuffle_each_iteration``
does, though not tf.data's very orders); without shuffling, in dataset order. With
``drop_remainder`` every batch is full (one compiled step shape), and the last ``n % batch_size``
images of an epoch's order sit that epoch out (other ones every epoch); without it every image
comes once per epoch.

Data parallel (:mod:`cifarkit.runtime.jax_parallel`): ``batch_size`` is the global batch. With
``parts`` processes, process ``part`` takes the ``part``-th of ``parts`` equal slices of every
global batch, as Keras's own per-process sharding of a tf.data pipeline does (``rebatch`` then
``shard``), so the processes together train on the very batches one process would. A global
batch must split over the devices, so ``batch_multiple`` pads a short last batch (of an
evaluation pass) to a multiple of it with copies of its first image weighted 0, and then every
batch carries sample weights: ``n_padded / n`` on each real image, so that Keras's weighted
metrics and its loss (summed over the rows, averaged over every row of every batch) come out as
the plain means over the ``n`` real images.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ..errors import UsageError

DEFAULT_PREFETCH = 4  # batches ready ahead: enough to hide a hiccup, few enough to bound memory
_DONE = object()  # end of the stream, put after the last batch
_POLL_SECONDS = 0.1  # how often a blocked producer checks whether it should stop


@dataclass
class FeedStats:
    """What the consumer and the producer spent, summed over every stream of a feed."""

    batches: int = 0
    images: int = 0
    wait_seconds: float = 0.0  # consumer blocked on an empty queue: input-bound time
    produce_seconds: float = 0.0  # producer thread gathering batches

    def share_waiting(self, total_seconds: float) -> float:
        """Fraction of ``total_seconds`` (the loop's wall time) spent waiting for input."""
        return self.wait_seconds / total_seconds if total_seconds > 0 else 0.0


class Feed:
    """Shuffled uint8 batches of ``images`` (N, H, W, C) and int32 ``labels`` (N,)."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_remainder: bool = True,
        prefetch: int = DEFAULT_PREFETCH,
        part: int = 0,
        parts: int = 1,
        batch_multiple: int = 1,
    ):
        if len(images) != len(labels):
            raise UsageError(f"images and labels differ in length: {len(images)} and {len(labels)}")
        if batch_size < 1 or prefetch < 1:
            raise UsageError(
                f"batch_size and prefetch must be positive. Received: batch_size={batch_size}, prefetch={prefetch}"
            )
        if drop_remainder and batch_size > len(labels):
            raise UsageError(f"batch_size {batch_size} is larger than the {len(labels)} images (no full batch)")
        _check_parts(batch_size, part, parts, batch_multiple)
        self.images, self.labels = images, np.asarray(labels, np.int32)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.drop_remainder, self.prefetch = drop_remainder, prefetch
        self.part, self.parts, self.batch_multiple = part, parts, batch_multiple
        padding = 0 if drop_remainder else -len(labels) % batch_multiple
        # The weight of a real image when a short batch is padded; None: no padding, no weights.
        self.weight = (len(labels) + padding) / len(labels) if padding else None
        self.stats = FeedStats()

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.labels), self.batch_size)
        return full if self.drop_remainder or not rest else full + 1

    def order(self, epoch: int) -> np.ndarray:
        """The indices epoch ``epoch`` visits, in order (all of them; see the module docstring)."""
        if not self.shuffle:
            return np.arange(len(self.labels))
        return np.random.default_rng((self.seed, epoch)).permutation(len(self.labels))

    def _batches(self, first_epoch: int, epochs: int | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        epoch = first_epoch
        while epochs is None or epoch < first_epoch + epochs:
            order = self.order(epoch)
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                yield self.gather(order[start : start + self.batch_size])
            epoch += 1

    def batch(self, number: int, epoch: int = 0) -> tuple:
        """Batch ``number`` of epoch ``epoch``, gathered here (for a reader that indexes batches)."""
        if not 0 <= number < len(self):
            raise IndexError(f"batch {number} of {len(self)}")
        return self.gather(self.order(epoch)[number * self.batch_size : (number + 1) * self.batch_size])

    def gather(self, index: np.ndarray) -> tuple:
        """This process's slice of the global batch of images ``index``: (images, labels), or
        (images, labels, weights) where a short batch is padded (see the module docstring)."""
        weights = None
        if self.weight is not None:
            padding = -len(index) % self.batch_multiple
            weights = np.full(len(index) + padding, self.weight, np.float32)
            weights[len(index) :] = 0
            index = np.concatenate([index, np.full(padding, index[0])])
        share = len(index) // self.parts
        mine = slice(self.part * share, (self.part + 1) * share)
        batch = np.take(self.images, index[mine], axis=0), np.take(self.labels, index[mine])
        return batch if weights is None else (*batch, weights[mine])

    def epochs(self, epochs: int | None = None, *, first_epoch: int = 0) -> Stream:
        """Batches of ``epochs`` epochs (None: without end) from ``first_epoch`` on, one stream
        whose thread runs across epoch boundaries. Close it (or use ``with``) to stop early."""
        return Stream(self, first_epoch, epochs)


def _check_parts(batch_size: int, part: int, parts: int, batch_multiple: int) -> None:
    """Every global batch, padded ones too, must split into ``parts`` equal slices."""
    if parts < 1 or not 0 <= part < parts:
        raise UsageError(f"part must be one of the {parts} parts. Received: part={part}, parts={parts}")
    if batch_multiple < 1 or batch_multiple % parts or batch_size % batch_multiple:
        raise UsageError(
            f"batch_size must be a multiple of batch_multiple, and batch_multiple of the {parts} parts. "
            f"Received: batch_size={batch_size}, batch_multiple={batch_multiple}"
        )


def _put(items: queue.Queue, stop: threading.Event, item) -> bool:
    """Queue ``item``, waiting for room; False if the stream was closed meanwhile."""
    while not stop.is_set():
        try:
            items.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def _produce(batches: Iterator, items: queue.Queue, stop: threading.Event, stats: FeedStats) -> None:
    """The thread's loop. It holds no reference to its Stream, so a stream dropped without
    close() is still collected, and its __del__ stops this loop."""
    try:
        while not stop.is_set():
            start = time.perf_counter()
            item = next(batches, _DONE)
            stats.produce_seconds += time.perf_counter() - start
            if not _put(items, stop, item) or item is _DONE:
                return
    except BaseException as exc:  # noqa: BLE001  (handed to the consumer, raised there)
        _put(items, stop, exc)


class Stream:
    """An iterator over a feed's batches, prepared by one background thread."""

    def __init__(self, feed: Feed, first_epoch: int, epochs: int | None):
        self._feed = feed
        self._queue: queue.Queue = queue.Queue(maxsize=feed.prefetch)
        self._stop = threading.Event()
        self._finished = False
        args = (feed._batches(first_epoch, epochs), self._queue, self._stop, feed.stats)
        self._thread = threading.Thread(target=_produce, args=args, daemon=True, name="cifarkit-feed")
        self._thread.start()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self._finished:
            raise StopIteration
        start = time.perf_counter()
        item = self._queue.get()
        stats = self._feed.stats
        stats.wait_seconds += time.perf_counter() - start
        if item is _DONE or isinstance(item, BaseException):
            self.close()
            if item is _DONE:
                raise StopIteration
            raise item
        stats.batches += 1
        stats.images += len(item[1])
        return item

    def close(self) -> None:
        """Stop the thread and wait for it; batches not taken are dropped."""
        self._finished = True
        self._stop.set()
        while self._thread.is_alive():
            try:  # make room, so a producer blocked on a full queue sees the stop at once
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=_POLL_SECONDS)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if not self._finished:
            self._stop.set()


# The sources this feed serves: those whose reader holds arrays in memory (an ArrayReader).
IN_MEMORY_SOURCES = (
    "CIFAR archives (python or binary version, .tar.gz or extracted) and MNIST-family IDX files (or Keras's mnist.npz)"
)


def source_arrays(source, split: str, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, int32 labels) of a reader's split held in memory; other sources (image
    trees, TFRecords) are decoded by tf.data, so without it they are refused in one line."""
    if split not in source.counts:
        raise UsageError(f"{source.location}: no split {split!r}; it has {', '.join(source.counts)}")
    held = source.in_memory(split)
    if held is None:
        raise UsageError(
            f"{source.location} is a {source.kind} source, which needs TensorFlow's tf.data; on the "
            f"{backend} backend cifarkit reads {IN_MEMORY_SOURCES} (or run with KERAS_BACKEND=tensorflow)"
        )
    images, labels = held
    return images, np.asarray(labels, np.int32)
