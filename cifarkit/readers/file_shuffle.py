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
from .reader import AUTOTUNE, RECORD_READ_BUFFER
from .records import RecordReader

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


def shuffled_files(
    reader: RecordReader,
    pieces: list,
    *,
    seed: int | None = None,
    with_coarse: bool = False,
    image_size: int | None = None,
):
    """``(split name, index in the split, (image, label[, coarse label]))`` of every example of the
    pieces (where :meth:`RecordReader.can_shuffle_files`), their shards (all pieces' together, as
    TFDS) in an order that changes every iteration; ``seed`` makes the sequence of orders repeatable."""
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
    # Images of mixed sizes are squared as they are decoded, as in the reader's own pipeline.
    parse = reader.checked_parser(with_coarse, reader.square_size(image_size))
    ds = ds.map(
        lambda name, index, record: (name, index, parse(record)), num_parallel_calls=AUTOTUNE, deterministic=True
    )
    return ds.apply(tf.data.experimental.assert_cardinality(sum(takes)))
