"""Any cifarkit source or export as a ``tf.data.Dataset`` of (uint8 image, label), and the
tfds-like API: :func:`load` (TFDS's split syntax, dict or supervised elements, int64 labels) and
:func:`load_numpy` (arrays as ``keras.datasets`` returns them).

- an export: the format adapter that wrote it (named in its ``dataset_info.json``) reads it: a
  TFRecord export through its shards, parsed with the feature spec that wrote them; a JPEG/PNG
  tree through its manifest, images decoded in the pipeline;
- a CIFAR archive or extracted folder, or any ``<split>/<class>/*`` image tree: read by
  :mod:`cifarkit.sources`, then held in memory as uint8 arrays or decoded from the files.

Images that do not all share one size (generic folder trees) are brought to one square size per
image (its central square, resized) so that they can be batched; CIFAR stays 32x32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UsageError
from .formats import adapter_for_export
from .formats.tfrecord import name_corrupt_shard
from .readers.image_decode import source_error_in
from .readers.labelled import from_labelled
from .readers.reader import (
    AUTOTUNE,
    CIFAR_NAMES,
    CIFAR_SHAPE,
    DataReader,
    shard_policy,
    to_numpy,
    without_autotune,
)
from .runtime.lazy import tf

__all__ = [
    "AUTOTUNE",
    "CIFAR_NAMES",
    "CIFAR_SHAPE",
    "DataReader",
    "DatasetInfo",
    "from_labelled",
    "load",
    "load_numpy",
    "locate",
    "name_corrupt_shard",
    "open_data",
    "shard_policy",
    "source_error_in",
    "to_numpy",
    "without_autotune",
]


def open_data(path: str | Path, *, verify: bool = True) -> DataReader:
    """Find out what ``path`` holds and return a :class:`DataReader` for it."""
    path = Path(path).expanduser()
    from .sources.source_path import check_source_path

    check_source_path(path)  # a name too long, a device, a pipe: one line before anything reads it
    found = adapter_for_export(path) if path.is_dir() else None
    if found is not None:
        adapter, info = found
        return adapter.open(path, info, verify=verify)
    from .sources import open_source

    return from_labelled(open_source(path, verify=verify))


def locate(name_or_path: str | Path, data_dir: str | Path | None = None) -> Path:
    """A path as given (or inside ``data_dir``), else a dataset name (``cifar10``, ``mnist``, ...)
    looked for where the CLI looks (:func:`cifarkit.sources.discover.find_named`)."""
    path = Path(name_or_path).expanduser()
    if data_dir is not None and not path.is_absolute() and (Path(data_dir).expanduser() / path).exists():
        return Path(data_dir).expanduser() / path
    if path.exists():
        return path
    from .sources.discover import find_named

    return find_named(str(name_or_path).split(":")[0], data_dir)  # "cifar10:3.0.2": TFDS's version is not ours


@dataclass(frozen=True)
class ClassLabel:
    names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class SplitInfo:
    name: str
    num_examples: int


@dataclass(frozen=True)
class DatasetInfo:
    """What ``load(..., with_info=True)`` returns beside the data, shaped like the parts of
    ``tfds.core.DatasetInfo`` people use: ``info.features["label"].names``,
    ``info.splits["train"].num_examples``, ``info.supervised_keys``."""

    name: str
    location: Path
    image_shape: tuple[int, int, int] | None
    features: dict
    splits: dict
    supervised_keys: tuple[str, str] = ("image", "label")


def dataset_info(reader: DataReader, coarse_names: tuple[str, ...] | None = None) -> DatasetInfo:
    features = {"image": reader.image_shape, "label": ClassLabel(tuple(reader.class_names))}
    if coarse_names:
        features["coarse_label"] = ClassLabel(tuple(coarse_names))
    splits = {name: SplitInfo(name, n) for name, n in reader.counts.items()}
    return DatasetInfo(reader.name, reader.location, reader.image_shape, features, splits)


def load(
    name_or_path: str | Path,
    split=None,
    *,
    as_supervised: bool = True,
    batch_size: int | None = None,
    shuffle_files: bool = False,
    with_info: bool = False,
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    verify: bool = True,
    seed: int | None = None,
):
    """``tf.data.Dataset`` of a dataset's split, as ``tfds.load`` gives it.

    ``name_or_path``: a path (any source or export) or a dataset name searched for as the CLI does.
    ``split``: a spec in TFDS's syntax (``"train[:90%]"``, ``"train+test"``, see
    :mod:`cifarkit.readers.splits`), a list of them (a list of datasets), or None (a dict of every split).
    Elements are (uint8 (H, W, C) image, int64 label) with ``as_supervised``, else dicts with
    ``image``, ``label``, ``id`` (``train_00042``) and, for CIFAR-100 (its archives, a TFRecord
    export, a TFDS-prepared folder), ``coarse_label``. ``batch_size=-1`` gives each split as
    tensors, the whole split in one batch, as ``tfds.load`` does:
    ``x, y = load("cifar10", "test", batch_size=-1)``.

    ``shuffle_files`` shuffles as ``tfds.load`` does where there are files to shuffle: a TFRecord
    folder whose metadata lists each shard's length (cifarkit's TFRecord exports, TFDS's folders) is
    read shard by shard in an order that changes at every iteration, 16 shards interleaved 16
    records at a time; the records inside a shard keep their order (:mod:`cifarkit.readers.file_shuffle`).
    Everything else shuffles its examples instead, each iteration anew: arrays held in memory (an
    archive) all at once; image files (one example each) and pre-TFDS TFRecord exports, whose
    shard lengths are unknown, through a buffer of 10,000. ``seed`` makes either repeatable.
    """
    reader = open_data(locate(name_or_path, data_dir), verify=verify)

    def one(spec: str):
        ds = dataset_of(
            reader,
            spec,
            as_supervised=as_supervised,
            batch_size=batch_size,
            shuffle=shuffle_files,
            image_size=image_size,
            seed=seed,
        )
        return ds.get_single_element() if batch_size == -1 else ds

    if split is None:
        result = {name: one(name) for name in reader.counts}
    elif isinstance(split, (list, tuple)):
        result = [one(spec) for spec in split]
    else:
        result = one(split)
    return (result, dataset_info(reader, _coarse_names(reader))) if with_info else result


def _coarse_names(reader: DataReader) -> tuple[str, ...] | None:
    return reader.coarse_class_names


# Examples a shuffle holds when they are not arrays in memory (decoded images or records).
SHUFFLE_BUFFER = 10_000


def dataset_of(
    reader: DataReader,
    spec: str,
    *,
    as_supervised: bool = True,
    batch_size: int | None = None,
    shuffle: bool = False,
    image_size: int | None = None,
    seed: int | None = None,
):
    """The examples ``spec`` selects, in order (or shuffled, see :func:`load`), as :func:`load`
    hands them out."""
    pieces = reader.pieces(spec)
    total = sum(len(p) for p in pieces)
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or (batch_size < 1 and batch_size != -1)
    ):
        raise UsageError(
            f"batch_size must be a positive integer or -1 (the whole split). Received: batch_size={batch_size!r}"
        )
    # A coarse label the records carry is parsed with them; one held in memory is gathered.
    coarse = not as_supervised and reader.parses_coarse
    if as_supervised and not shuffle and batch_size not in (None, -1):
        batches = _record_batches(reader, pieces, batch_size, image_size)
        if batches is not None:
            return batches.prefetch(AUTOTUNE)
    if shuffle and total and reader.can_shuffle_files(pieces):
        ds = _files_shuffled(reader, pieces, as_supervised, coarse, image_size, seed)
    else:
        ds = _in_order(reader, pieces, as_supervised, coarse, image_size)
        if shuffle:  # no shards to shuffle, or their lengths unknown: the examples, through a buffer
            buffer = total if reader.in_memory(pieces[0].split) is not None else min(total, SHUFFLE_BUFFER)
            ds = ds.shuffle(max(buffer, 1), seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.batch(
            max(total, 1) if batch_size == -1 else batch_size, num_parallel_calls=AUTOTUNE, deterministic=True
        )
    # As tfds.load: the next elements are made while the caller uses these.
    return ds.prefetch(AUTOTUNE)


def _record_batches(reader: DataReader, pieces: list, batch_size: int, image_size: int | None):
    """TFRecord batches parsed a batch at a time (:meth:`~cifarkit.readers.records.RecordReader.batches`),
    where the reader is one and its images share a shape; else None."""
    from .readers.records import RecordReader

    if not isinstance(reader, RecordReader):
        return None
    return reader.batches(pieces, batch_size, size=reader.square_size(image_size))


def _int64_label(image, label):
    return image, tf.cast(label, tf.int64)


def _in_order(reader: DataReader, pieces: list, as_supervised: bool, coarse: bool, image_size: int | None):
    ds = None
    for piece in pieces:
        part = reader.piece_dataset(piece, image_size=image_size, with_coarse=coarse)
        if not as_supervised:
            part = tf.data.Dataset.zip(tf.data.Dataset.range(piece.start, piece.stop), part)
            part = part.map(_as_dict(reader, piece.split), num_parallel_calls=AUTOTUNE, deterministic=True)
        else:
            part = part.map(_int64_label, num_parallel_calls=AUTOTUNE, deterministic=True)
        ds = part if ds is None else ds.concatenate(part)
    return ds


def _files_shuffled(
    reader: DataReader, pieces: list, as_supervised: bool, coarse: bool, image_size: int | None, seed: int | None
):

    from .readers.file_shuffle import shuffled_files

    ds = shuffled_files(reader, pieces, seed=seed, with_coarse=coarse, image_size=image_size)
    if as_supervised:
        return ds.map(
            lambda name, index, example: _int64_label(*example[:2]), num_parallel_calls=AUTOTUNE, deterministic=True
        )
    to_dict = _as_dict(reader, None)
    return ds.map(
        lambda name, index, example: to_dict(index, example, name), num_parallel_calls=AUTOTUNE, deterministic=True
    )


def _as_dict(reader: DataReader, split: str | None):
    """``(index, (image, label[, coarse label]), [split]) -> {"image", "label", "id",
    ["coarse_label"]}``, ids as TFDS's CIFAR builders write them (``train_00042``); ``split``
    (a string tensor) where the elements come from several splits."""
    coarse = reader.extras.get(split, {}).get("coarse_label") if split is not None else None
    coarse = None if coarse is None else tf.constant(coarse)

    def fn(index, example, name=split):
        image, label = example[:2]
        out = {
            "image": image,
            "label": tf.cast(label, tf.int64),
            "id": tf.strings.join([name, tf.strings.as_string(index, width=5, fill="0")], "_"),
        }
        if len(example) > 2:  # parsed from the record
            out["coarse_label"] = example[2]
        elif coarse is not None:
            out["coarse_label"] = tf.gather(coarse, index)
        return out

    return fn


def arrays_of(reader: DataReader, spec: str, *, label: str = "label", image_size: int | None = None):
    """(uint8 images, int64 labels) that ``spec`` selects, as NumPy arrays."""
    if label not in ("label", "coarse_label"):
        raise UsageError(f"label must be 'label' or 'coarse_label'. Received: label={label!r}")
    pieces = reader.pieces(spec)
    if label == "coarse_label" and not all(reader.has_coarse_labels(p.split) for p in pieces):
        raise UsageError(f"{reader.location}: no coarse labels (CIFAR-100's archives and exports have them)")
    images, labels = [], []
    for piece in pieces:
        held = reader.extras.get(piece.split, {}).get("coarse_label") if label == "coarse_label" else None
        held_arrays = reader.in_memory(piece.split)
        if held_arrays is not None:
            x, y = (a[piece.start : piece.stop] for a in held_arrays)
        elif label == "coarse_label" and held is None:  # in the records: parsed with the images
            part = reader.piece_dataset(piece, image_size=image_size, with_coarse=True)
            x, y = to_numpy(part.map(lambda image, fine, coarse: (image, coarse)))
        else:
            x, y = to_numpy(reader.piece_dataset(piece, image_size=image_size))
        if held is not None:
            y = held[piece.start : piece.stop]
        images.append(x)
        labels.append(np.asarray(y, np.int64))
    return np.concatenate(images), np.concatenate(labels)


def load_numpy(
    name_or_path: str | Path,
    split=("train", "test"),
    *,
    label: str = "label",
    data_dir: str | Path | None = None,
    image_size: int | None = None,
    verify: bool = True,
):
    """NumPy arrays as ``keras.datasets.<name>.load_data()`` returns them: ``(x_train, y_train),
    (x_test, y_test)`` for the default ``split``, one ``(x, y)`` for a single spec.

    ``x``: uint8 (N, H, W, C), grey images keeping their channel (Keras's MNIST drops it);
    ``y``: int64 (N,) (Keras gives CIFAR's as uint8 (N, 1)); ``label="coarse_label"`` gives
    CIFAR-100's coarse labels (Keras's ``label_mode="coarse"``).
    """
    reader = open_data(locate(name_or_path, data_dir), verify=verify)
    if isinstance(split, str):
        return arrays_of(reader, split, label=label, image_size=image_size)
    return tuple(arrays_of(reader, spec, label=label, image_size=image_size) for spec in split)
