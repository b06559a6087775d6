"""What every reader hands out: a :class:`DataReader` (a dataset's splits, counts and class names,
and how to build a ``tf.data.Dataset`` of (uint8 image, int32 label) for a split), and the
tf.data settings every reader shares.

Readers of sources build one here from :class:`~cifarkit.sources.labelled.LabelledImages`: CIFAR
arrays held in memory as uint8 (all of CIFAR-10 is 180 MB) and sliced by tf.data, or image files
decoded in the pipeline (:mod:`cifarkit.readers.image_decode`). Each export format builds its own
(:meth:`cifarkit.formats.base.FormatAdapter.open`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..constants import CIFAR_SHAPE
from ..errors import UsageError
from ..sources.labelled import LabelledImages, LazyImages

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import
# Bytes read ahead per TFRecord file: TFDS's (file_adapters.TfRecordFileAdapter.BUFFER_SIZE).
RECORD_READ_BUFFER = 8 << 20
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
    """What a reader knows about a source or export before building any pipeline; ``dataset``
    builds the pipeline of a split. (Not :class:`~cifarkit.sources.labelled.LabelledImages`, the
    numpy images a source reads, which export formats write.)"""

    name: str
    kind: str  # "tfrecord", "image files" or "arrays"
    location: Path
    class_names: tuple[str, ...]
    counts: dict[str, int]
    image_shape: tuple[int, int, int] | None  # None: images of different sizes
    _build: Callable = field(repr=False, default=None)
    arrays: dict = field(repr=False, default_factory=dict)  # split -> (images, labels) for "arrays"
    files: dict = field(repr=False, default_factory=dict)  # split -> shard paths for "tfrecord"
    # split -> {"coarse_label": int64 array}: labels beyond the one the pipeline carries (CIFAR-100)
    extras: dict = field(repr=False, default_factory=dict)
    coarse_class_names: tuple[str, ...] | None = None  # CIFAR-100's 20 superclasses, where known
    # split -> (uint8 image, int32 label, int64 coarse label), for readers whose records carry the
    # coarse label (TFRecord); arrays and files keep theirs in ``extras`` instead.
    coarse_build: Callable | None = field(repr=False, default=None)
    # For "tfrecord": split -> examples in each shard of ``files`` where the metadata lists them, and
    # ``with_coarse -> (serialized record -> element)``; together they let :mod:`cifarkit.readers.file_shuffle`
    # read the shards of a slice in any order.
    shard_lengths: dict = field(repr=False, default_factory=dict)
    record_parser: Callable | None = field(repr=False, default=None)
    # Its builders take ``size=`` and square images as they decode them, a JPEG decoding only its
    # central square (:func:`cifarkit.readers.image_decode.decode_squared`); otherwise they are squared after.
    squares_on_decode: bool = False

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.counts)

    def has_coarse_labels(self, split: str) -> bool:
        return self.coarse_build is not None or "coarse_label" in self.extras.get(split, {})

    def dataset(self, split: str, *, image_size: int | None = None, num_workers: int = 1, with_coarse: bool = False):
        """(uint8 image, int32 label) pairs in dataset order; ``with_coarse`` adds the int64 coarse
        label as a third element (readers with :attr:`coarse_build` only).

        ``image_size`` squares images of mixed sizes; sources of one shape (CIFAR) ignore it.
        """
        if split not in self.counts:
            raise UsageError(f"{self.location}: no split {split!r}; it has {', '.join(self.counts)}")
        if with_coarse and self.coarse_build is None:
            raise UsageError(f"{self.location}: its records carry no coarse labels")
        square = self.squarer(image_size)
        fused = square is not None and self.squares_on_decode
        build = self.coarse_build if with_coarse else self._build
        ds = build(split, size=image_size) if fused else build(split)
        if num_workers <= 1:
            # A TFRecord reader cannot know its length; stating it lets ``len(ds)`` work, Keras end
            # epochs without a "ran out of data" warning, and a shard that holds fewer or more
            # records than dataset_info.json says fail loudly. Not under multi-worker sharding,
            # where each worker reads only its share.
            ds = _with_length(ds, self.counts[split])
        if square is not None and not fused:
            ds = ds.map(square, num_parallel_calls=AUTOTUNE, deterministic=True)
        return shard_policy(ds, len(self.files.get(split, ())) >= max(num_workers, 2))

    def stored(self, split: str, *, with_coarse: bool = False):
        """The split's elements as stored, in dataset order: images of mixed sizes keep their own
        (for reading a split whole into arrays, as ``info`` and ``export`` do)."""
        build = self.coarse_build if with_coarse else self._build
        return build(split)

    def squarer(self, image_size: int | None):
        """``(image, *labels) -> (image squared to image_size, *labels)`` for images of mixed sizes,
        None where they share one shape."""
        if self.image_shape is not None:
            return None
        if image_size is None:
            raise UsageError(f"{self.location}: images differ in size; give an image size to bring them to")
        return _squarer(image_size)

    def pieces(self, spec: str) -> list:
        """The :class:`~cifarkit.readers.splits.Piece` list a split spec (``train[:90%]+test``) selects."""
        from .splits import resolve

        return resolve(spec, self.counts, str(self.location))

    def piece_dataset(self, piece, *, image_size: int | None = None, with_coarse: bool = False):
        """(uint8 image, int32 label) pairs of one piece of a split, with its length known (and the
        coarse label with ``with_coarse``, as :meth:`dataset`)."""
        if self.kind == "arrays" and not with_coarse:
            import tensorflow as tf

            images, labels = self.arrays[piece.split]
            return tf.data.Dataset.from_tensor_slices(
                (images[piece.start : piece.stop], labels[piece.start : piece.stop])
            )
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
            return replace(
                self,
                counts=counts,
                arrays={s: self.arrays[s] for s in counts if s in self.arrays},
                files={s: self.files[s] for s in counts if s in self.files},
            )
        extras = {
            name: {
                key: np.concatenate([self.extras[p.split][key][p.start : p.stop] for p in pieces])
                for key in self.extras.get(pieces[0].split, {})
            }
            for name, pieces in chosen.items()
            if all(p.split in self.extras for p in pieces)
        }
        if self.kind == "arrays":
            arrays = {name: _concat_pieces(self.arrays, pieces) for name, pieces in chosen.items()}
            return replace(self, counts=counts, arrays=arrays, _build=_array_builder(arrays), files={}, extras=extras)

        def build(split: str, with_coarse: bool = False, size: int | None = None):
            parts = [self.piece_dataset(p, image_size=size, with_coarse=with_coarse) for p in chosen[split]]
            ds = parts[0]
            for part in parts[1:]:
                ds = ds.concatenate(part)
            return ds

        coarse = None if self.coarse_build is None else lambda split, **size: build(split, True, **size)
        return replace(
            self, counts=counts, _build=build, files={}, extras=extras, coarse_build=coarse, shard_lengths={}
        )


def _concat_pieces(arrays: dict, pieces: list) -> tuple[np.ndarray, np.ndarray]:
    if len(pieces) == 1:  # a view, no copy
        images, labels = arrays[pieces[0].split]
        return images[pieces[0].start : pieces[0].stop], labels[pieces[0].start : pieces[0].stop]
    return tuple(np.concatenate([arrays[p.split][i][p.start : p.stop] for p in pieces]) for i in (0, 1))


def _array_builder(arrays: dict):
    def build(split: str):
        import tensorflow as tf

        return tf.data.Dataset.from_tensor_slices(arrays[split])

    return build


def _with_length(ds, count: int):
    import tensorflow as tf

    if ds.cardinality() != tf.data.UNKNOWN_CARDINALITY:
        return ds
    return ds.apply(tf.data.experimental.assert_cardinality(count))


def _squarer(size: int):
    from .squaring import resize_shorter_centre

    def fn(image, *labels):  # the label, and the coarse label where there is one
        return (resize_shorter_centre(image, size), *labels)

    return fn


def shard_policy(ds, by_file: bool):
    """Shard by file where there are enough files (each worker reads its own shards), otherwise
    by element (every worker reads everything and keeps its share): never silently AUTO."""
    import tensorflow as tf

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
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


def from_labelled(dataset: LabelledImages, files_shape: tuple[int, int, int] | None = None) -> DataReader:
    """A source already read by :mod:`cifarkit.sources`: arrays in memory, or image file names
    (decoded to ``files_shape`` if every image has it, as in an export of CIFAR)."""
    counts = {s: dataset.count(s) for s in dataset.splits}
    lazy = any(isinstance(b.images, LazyImages) for bs in dataset.batches.values() for b in bs)
    extras = {
        s: {"coarse_label": np.concatenate([b.coarse_labels for b in bs]).astype(np.int64)}
        for s, bs in dataset.batches.items()
        if bs and all(b.coarse_labels is not None for b in bs)
    }
    if not lazy:
        arrays = {}
        for split, batches in dataset.batches.items():
            images = np.concatenate([b.images for b in batches]) if len(batches) > 1 else batches[0].images
            labels = np.concatenate([b.labels for b in batches]).astype(np.int32)
            arrays[split] = (images, labels)

        shapes = {a[0].shape[1:] for a in arrays.values()}
        shape = tuple(shapes.pop()) if len(shapes) == 1 else None
        return DataReader(
            dataset.name,
            "arrays",
            dataset.location,
            dataset.class_names,
            counts,
            shape,
            _build=_array_builder(arrays),
            arrays=arrays,
            extras=extras,
            coarse_class_names=dataset.coarse_class_names,
        )

    paths = {s: [str(p) for b in bs for p in b.images.paths] for s, bs in dataset.batches.items()}
    labels = {s: np.concatenate([b.labels for b in bs]).astype(np.int32) for s, bs in dataset.batches.items()}

    def build(split: str, size: int | None = None):
        from .image_decode import decode_files

        return decode_files(paths[split], labels[split], files_shape, size)

    return DataReader(
        dataset.name,
        "image files",
        dataset.location,
        dataset.class_names,
        counts,
        files_shape,
        _build=build,
        extras=extras,
        coarse_class_names=dataset.coarse_class_names,
        squares_on_decode=True,
    )


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
