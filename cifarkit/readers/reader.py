"""The reader protocol: what every reader knows about a dataset before building a pipeline (its
splits, counts and class names) and how it builds a ``tf.data.Dataset`` of (uint8 image, int32
label) for a split, a slice of one, or a selection of several; and the tf.data settings every
reader shares.

Three kinds implement it, each holding only its own storage: arrays in memory
(:mod:`cifarkit.readers.arrays`, CIFAR and MNIST as sources read them: all of CIFAR-10 is 180 MB
of uint8), image files decoded in the pipeline (:mod:`cifarkit.readers.files`) and TFRecord shards
(:mod:`cifarkit.readers.records`). A selection of a reader that cannot slice its storage is a
:mod:`cifarkit.readers.composed` reader. :func:`cifarkit.readers.labelled.from_labelled` makes a
reader of a source; each export format makes its own (:meth:`cifarkit.formats.base.FormatAdapter.open`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..constants import CIFAR_SHAPE
from ..errors import UsageError, option
from ..runtime.lazy import tf

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import
# Bytes read ahead per TFRecord file: TFDS's (file_adapters.TfRecordFileAdapter.BUFFER_SIZE).
RECORD_READ_BUFFER = 8 << 20
# Readers that can only shuffle decoded elements (arrays on disk, Parquet, WebDataset, selections
# of records) hold this many in the shuffle buffer: 30 MB of CIFAR images, 2 GB of 256x256
# photos. Image files and whole splits of TFRecords shuffle before decoding (shuffled_split).
DECODED_SHUFFLE_BUFFER = 10_000
# Exports of these datasets hold 32x32 images only, so their readers can promise a static shape.
CIFAR_NAMES = ("cifar10", "cifar100")
# Every image of an export of these has one shape (MNIST's keep their one grey channel).
FIXED_SHAPES = {
    **{name: CIFAR_SHAPE for name in CIFAR_NAMES},
    "mnist": (28, 28, 1),
    "fashion_mnist": (28, 28, 1),
    "kmnist": (28, 28, 1),
}


@dataclass
class DataReader:
    """A dataset's splits as a reader sees them. Subclasses provide :meth:`split_dataset` and the
    two selections (:meth:`_selected`, :meth:`_subset`); everything else is shared. (Not
    :class:`~cifarkit.sources.labelled.LabelledImages`, the numpy images a source reads, which
    export formats write.)"""

    kind: ClassVar[str] = "data"  # named in reports and messages: "arrays", "image files", "tfrecord"

    name: str
    location: Path
    class_names: tuple[str, ...]
    counts: dict[str, int]
    image_shape: tuple[int, int, int] | None  # None: images of different sizes
    # split -> {"coarse_label": int64 array}: labels held beside the pipeline (CIFAR-100 sources)
    extras: dict = field(repr=False, default_factory=dict)
    coarse_class_names: tuple[str, ...] | None = None  # CIFAR-100's 20 superclasses, where known

    # What each kind provides.
    def split_dataset(self, split: str, *, with_coarse: bool = False, size: int | None = None, crop=None):
        """(uint8 image, int32 label[, int64 coarse label]) of a whole split in dataset order,
        each image squared to ``size`` where one is given, or cut by ``crop`` (a
        :class:`~cifarkit.readers.image_decode.RandomCrop`, readers that :attr:`can_crop_at_decode`
        only; the others' signatures leave it out, so it is passed only where given)."""
        raise NotImplementedError

    def _selected(self, chosen: dict[str, list], counts: dict[str, int], extras: dict) -> DataReader:
        """A reader whose split ``name`` is the :class:`~cifarkit.readers.splits.Piece` list ``chosen[name]``."""
        raise NotImplementedError

    def _subset(self, base_split: str, picks: dict[str, np.ndarray], counts: dict[str, int], extras: dict):
        """A reader whose splits ``picks`` are sorted index subsets of ``base_split``."""
        raise NotImplementedError

    def range_dataset(
        self, split: str, start: int, stop: int, *, with_coarse: bool = False, size: int | None = None, crop=None
    ):
        """Images ``start:stop`` of a split as :meth:`split_dataset` gives them (no options set);
        storage that can begin mid-split overrides it to skip reading what it leaves out."""
        ds = self.split_dataset(split, **decode_options(with_coarse, size, crop))
        if (start, stop) == (0, self.counts[split]):
            return ds
        return ds.skip(start).take(stop - start)

    @property
    def parses_coarse(self) -> bool:
        """Whether the pipeline itself carries the coarse label (records that hold one)."""
        return False

    def in_memory(self, split: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(uint8 images, int32 labels) of a split held in memory, or None if it is read from files."""
        return None

    def known_labels(self, split: str) -> np.ndarray | None:
        """A split's labels where they are known without decoding anything (arrays, file lists)."""
        return None

    def shard_files(self, split: str) -> list[str]:
        """The files a split is stored in, where each worker of several can read its own."""
        return []

    def can_shuffle_files(self, pieces: list) -> bool:
        """Whether the pieces can be read shard by shard in a shuffled order (:mod:`.file_shuffle`)."""
        return False

    def shuffled_split(self, split: str, seed: int | None, *, with_coarse: bool = False, size=None, crop=None):
        """:meth:`split_dataset`'s elements in an order shuffled anew at every pass (``seed``
        repeats the sequence of orders), shuffled before they are decoded (file names, encoded
        records); None where the storage can only be shuffled as decoded elements."""
        return None

    @property
    def can_crop_at_decode(self) -> bool:
        """Whether :meth:`dataset` can cut a random-resized crop of each image as it decodes it
        (``crop=``), a JPEG only within its box: encoded files and records. Arrays and the other
        stores hand over whole images, which the recipe's own op then crops."""
        return False

    # Shared by every kind.
    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.counts)

    def has_coarse_labels(self, split: str) -> bool:
        return self.parses_coarse or "coarse_label" in self.extras.get(split, {})

    def dataset(
        self,
        split: str,
        *,
        image_size: int | None = None,
        num_workers: int = 1,
        with_coarse: bool = False,
        crop=None,
        shuffle: bool = False,
        seed: int | None = None,
    ):
        """(uint8 image, int32 label) pairs in dataset order, or with ``shuffle`` in an order
        shuffled anew every pass (``seed`` repeats the sequence); ``with_coarse`` adds the int64
        coarse label as a third element (readers that :attr:`parses_coarse` only).

        ``image_size`` squares images of mixed sizes; sources of one shape (CIFAR) ignore it.
        ``crop`` (a :class:`~cifarkit.readers.image_decode.RandomCrop`, where the reader
        :attr:`can_crop_at_decode`) instead cuts each image at its own random box as it is decoded.
        """
        if split not in self.counts:
            raise UsageError(f"{self.location}: no split {split!r}; it has {', '.join(self.counts)}")
        if with_coarse and not self.parses_coarse:
            raise UsageError(f"{self.location}: its records carry no coarse labels")
        if crop is not None and not self.can_crop_at_decode:
            raise UsageError(f"{self.location}: a {self.kind} source cannot be cropped as it is decoded")
        size = None if crop is not None else self.square_size(image_size)
        options = decode_options(with_coarse, size, crop)
        # Under multi-worker sharding by file each worker's share is cut from the shards as stored;
        # sharding by element (file lists) keeps any order every worker draws alike.
        by_file = num_workers > 1 and bool(self.shard_files(split))
        early = self.shuffled_split(split, seed, **options) if shuffle and not by_file else None
        ds = early if early is not None else self.split_dataset(split, **options)
        if shuffle and early is None:
            ds = ds.shuffle(min(self.counts[split], DECODED_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
        if num_workers <= 1:
            # A TFRecord reader cannot know its length; stating it lets ``len(ds)`` work, Keras end
            # epochs without a "ran out of data" warning, and a shard that holds fewer or more
            # records than dataset_info.json says fail loudly. Not under multi-worker sharding,
            # where each worker reads only its share.
            ds = _with_length(ds, self.counts[split])
        return shard_policy(ds, len(self.shard_files(split)) >= max(num_workers, 2))

    def stored(self, split: str, *, with_coarse: bool = False):
        """The split's elements as stored, in dataset order: images of mixed sizes keep their own
        (for reading a split whole into arrays, as ``info`` and ``export`` do)."""
        return self.split_dataset(split, with_coarse=with_coarse)

    def square_size(self, image_size: int | None) -> int | None:
        """The square size images are brought to: ``image_size`` for images of mixed sizes (which
        need one), None where they share one shape."""
        if self.image_shape is not None:
            return None
        if image_size is None:
            raise UsageError(
                f"{self.location}: images differ in size; pass {option('--image-size N', 'image_size=N')} "
                "to bring them to one square size"
            )
        return image_size

    def pieces(self, spec: str) -> list:
        """The :class:`~cifarkit.readers.splits.Piece` list a split spec (``train[:90%]+test``) selects."""
        from .splits import resolve

        return resolve(spec, self.counts, str(self.location))

    def piece_dataset(self, piece, *, image_size: int | None = None, with_coarse: bool = False):
        """(uint8 image, int32 label) pairs of one piece of a split, with its length known (and the
        coarse label with ``with_coarse``, as :meth:`dataset`)."""
        ds = self.dataset(piece.split, image_size=image_size, with_coarse=with_coarse)
        if (piece.start, piece.stop) == (0, self.counts[piece.split]):
            return ds
        return ds.skip(piece.start).take(len(piece))

    def select(self, selection: dict[str, str]) -> DataReader:
        """A reader whose splits are the names of ``selection``, each the images its spec selects
        (``{"train": "test[:8000]", "test": "test[8000:]"}``); a spec naming a split this data
        lacks is refused in one line. Plain split names are kept as they are."""
        chosen = {name: self.pieces(spec) for name, spec in selection.items()}
        counts = {name: sum(len(p) for p in pieces) for name, pieces in chosen.items()}
        if all(name == spec and spec in self.counts for name, spec in selection.items()):
            return replace(self, counts=counts)
        extras = {
            name: {
                key: np.concatenate([self.extras[p.split][key][p.start : p.stop] for p in pieces])
                for key in self.extras.get(pieces[0].split, {})
            }
            for name, pieces in chosen.items()
            if all(p.split in self.extras for p in pieces)
        }
        return self._selected(chosen, counts, extras)

    def subset(self, base_split: str, picks: dict[str, np.ndarray]) -> DataReader:
        """A reader whose splits ``picks`` (name -> sorted indices) are subsets of ``base_split``,
        which they replace; the other splits stay."""
        counts = {s: n for s, n in self.counts.items() if s != base_split}
        counts.update({s: len(idx) for s, idx in picks.items()})
        extras = {s: e for s, e in self.extras.items() if s != base_split}
        if base_split in self.extras:
            held = self.extras[base_split]
            extras.update({s: {key: values[idx] for key, values in held.items()} for s, idx in picks.items()})
        return self._subset(base_split, picks, counts, extras)


def decode_options(with_coarse: bool, size: int | None, crop) -> dict:
    """Keyword arguments of :meth:`DataReader.split_dataset`, ``crop`` only where there is one."""
    options = {"with_coarse": with_coarse, "size": size}
    return options if crop is None else {**options, "crop": crop}


def _with_length(ds, count: int):
    if ds.cardinality() != tf.data.UNKNOWN_CARDINALITY:
        return ds
    return ds.apply(tf.data.experimental.assert_cardinality(count))


def squarer(size: int):
    """``(image, *labels) -> (image squared to size, *labels)``, for a pipeline of images of mixed sizes."""
    from .squaring import resize_shorter_centre

    def fn(image, *labels):  # the label, and the coarse label where there is one
        return (resize_shorter_centre(image, size), *labels)

    return fn


def shard_policy(ds, by_file: bool):
    """Shard by file where there are enough files (each worker reads its own shards), otherwise
    by element (every worker reads everything and keeps its share): never silently AUTO."""
    options = tf.data.Options()
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.FILE if by_file else policy.DATA
    return ds.with_options(options)


def without_autotune(ds):
    """Switch tf.data's autotuning off for a pipeline that cifarkit itself iterates.

    In TensorFlow 2.21 deleting an iterator of an autotuned pipeline blocks until the autotuning
    thread's next wake-up, and those come at 10 ms, 30 ms, ... 5.11 s, 10.23 s, 20.47 s, 40.95 s,
    81.91 s after the iterator was made, then every 60 s. Keras makes a new iterator every epoch
    and every validation pass, so each of them could stall for up to a minute (a plain
    ``model.fit`` lost 0-8 s of each 12-s epoch in scripts/bench_train.py). Without autotuning
    there is no such thread; AUTOTUNE parallelism then stays at its starting value (the number of
    cores, at most 16). Datasets handed to users (:func:`load`) keep TensorFlow's default.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def to_numpy(ds, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Materialise (images, labels) of a reader's dataset; for tests, statistics and previews."""
    if limit is not None:
        ds = ds.take(limit)
    images, labels = [], []
    for image, label in without_autotune(ds.batch(1024)).as_numpy_iterator():
        images.append(image)
        labels.append(label)
    if not images:
        return np.zeros((0, *CIFAR_SHAPE), np.uint8), np.zeros((0,), np.int32)
    return np.concatenate(images), np.concatenate(labels)
