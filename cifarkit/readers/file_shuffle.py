"""``shuffle_files`` as ``tfds.load`` does it: the order of the shards is shuffled, anew at every
iteration, and the shards are interleaved; the examples inside a shard keep their order.

TFDS (core/reader.py ``_read_files``) makes one instruction per shard (file, skip, take), shuffles
the instructions with ``seed`` and ``reshuffle_each_iteration``, and interleaves
``TFRecordDataset(file).skip(skip).take(take)`` with ``ReadConfig``'s defaults when shuffling:
16 shards at a time, 16 records from each in turn. A slice of a split (``train[:90%]``) takes each
shard's share of it, from the shard lengths TFDS's ``dataset_info.json`` lists.
"""

from __future__ import annotations

from typing import NamedTuple

from ..runtime.lazy import tf
from .reader import AUTOTUNE, RECORD_READ_BUFFER, DataReader

CYCLE_LENGTH = 16  # ReadConfig.interleave_cycle_length when shuffling files (utils/read_config.py)
BLOCK_LENGTH = 16  # ReadConfig.interleave_block_length


class Window(NamedTuple):
    """The records of one shard that a piece of a split takes."""

    shard: int  # its position in the split's shard list
    skip: int  # records of the shard before the piece begins
    take: int
    first: int  # the index in the split of the first record taken


def windows(lengths: list[int], start: int, stop: int) -> list[Window]:
    """Each shard's share of examples ``start:stop`` of a split whose shards hold ``lengths``."""
    out, offset = [], 0
    for shard, length in enumerate(lengths):
        low, high = max(start, offset), min(stop, offset + length)
        if high > low:
            out.append(Window(shard, low - offset, high - low, low))
        offset += length
    return out


def shuffled_records(reader: DataReader, pieces: list, *, seed: int | None = None):
    """``(split name, index in the split, serialized record)`` of every example of the pieces
    (where :meth:`RecordReader.can_shuffle_files`), their shards (all pieces' together, as TFDS)
    in an order that changes every iteration; ``seed`` makes the sequence of orders repeatable."""
    rows = [
        (reader.files[p.split][w.shard], p.split, w.skip, w.take, w.first)
        for p in pieces
        for w in windows(reader.shard_lengths[p.split], p.start, p.stop)
    ]
    files, names, skips, takes, firsts = (list(column) for column in zip(*rows))
    instructions = tf.data.Dataset.from_tensor_slices(
        (files, names, tf.constant(skips, tf.int64), tf.constant(takes, tf.int64), tf.constant(firsts, tf.int64))
    )
    instructions = instructions.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)

    def read(file, name, skip, take, first):
        records = tf.data.TFRecordDataset(file, buffer_size=RECORD_READ_BUFFER).skip(skip).take(take)
        labelled = tf.data.Dataset.from_tensors(name).repeat(), tf.data.Dataset.range(first, first + take), records
        return tf.data.Dataset.zip(labelled)

    # deterministic: the same seed gives the same orders, whatever the threads do.
    ds = instructions.interleave(
        read, cycle_length=CYCLE_LENGTH, block_length=BLOCK_LENGTH, num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return ds.apply(tf.data.experimental.assert_cardinality(sum(takes)))


def shuffled_files(
    reader: DataReader,
    pieces: list,
    *,
    seed: int | None = None,
    with_coarse: bool = False,
    image_size: int | None = None,
):
    """``(split name, index in the split, (image, label[, coarse label]))`` of every example of the
    pieces, read as :func:`shuffled_records` orders them."""
    # Images of mixed sizes are squared as they are decoded, as in the reader's own pipeline.
    parse = reader.checked_parser(with_coarse, reader.square_size(image_size))
    ds = shuffled_records(reader, pieces, seed=seed)
    return ds.map(
        lambda name, index, record: (name, index, parse(record)), num_parallel_calls=AUTOTUNE, deterministic=True
    )


def shuffled_split(reader: DataReader, split: str, seed: int | None, *, with_coarse: bool, size, crop):
    """A whole split's examples as :meth:`RecordReader.split_dataset` parses them, shuffled before
    they are parsed: the shards in a new order every pass, interleaved, then a shuffle buffer of
    the encoded records (:func:`record_buffer`), so no decoded image waits in one. None where the
    shard lengths are not known."""
    from .image_decode import crop_seeds
    from .splits import Piece

    count = reader.counts[split]
    if not count or not reader.can_shuffle_files([Piece(split, 0, count)]):
        return None
    reader.check_split(split)
    records = shuffled_records(reader, [Piece(split, 0, count)], seed=seed).map(lambda name, index, record: record)
    records = records.shuffle(record_buffer(reader.files[split], count), seed=seed, reshuffle_each_iteration=True)
    if crop is not None:
        records = tf.data.Dataset.zip(records, crop_seeds(crop))
    return records.map(reader.parser(with_coarse, size, crop), num_parallel_calls=AUTOTUNE, deterministic=True)


# The encoded records a shuffle holds after the shards' order is shuffled: about 256 MB of them
# (5,000 photos of 50 KB), at most 10,000 (30 MB of CIFAR PNGs).
ENCODED_SHUFFLE_BYTES = 256 << 20
ENCODED_SHUFFLE_RECORDS = 10_000


def record_buffer(files: list[str], count: int) -> int:
    """How many of a split's ``count`` records (stored in ``files``) a shuffle buffer holds."""
    stored = sum(tf.io.gfile.stat(f).length for f in files)
    per_record = max(stored // max(count, 1), 1)
    return max(1, min(count, ENCODED_SHUFFLE_RECORDS, ENCODED_SHUFFLE_BYTES // per_record))
