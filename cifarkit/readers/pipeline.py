"""Batched input pipelines for training and evaluation.

The order of the steps is the design, so it lives in one place:

- shuffle whole examples (or their indices) before batching, reshuffled every epoch;
- batch before augmenting, so every augmentation is one batched op instead of N small ones;
- ``drop_remainder`` for training, so every step has the same shape (one compiled graph);
- a recipe that begins with a random-resized crop (inception) has it taken as each file or record
  is decoded, where the reader can (:func:`decode_crop`): a JPEG is then read only within its box,
  and the rest of the recipe runs on the batch;
- augment last on the host, or not at all when the accelerator does it (``augment_on="device"``):
  then the pipeline ships uint8 batches, 3 KB per CIFAR image instead of 600 KB per 227x227 float
  crop, and :class:`cifarkit.augment.layer.Augmentation` runs the same transform as the model's
  first layer;
- prefetch last, so the next batch is being prepared while the current one trains;
- tf.data's autotuning off, so no epoch or validation pass waits on its thread when Keras drops
  the iterator (:func:`cifarkit.data.without_autotune`).

Evaluation is a separate function with no randomness at all.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UsageError
from ..runtime.lazy import tf
from .reader import AUTOTUNE, DataReader, shard_policy, without_autotune

AUGMENT_PLACES = ("host", "device")
# Added to a run's data seed for the crops taken at decode, so that their stream is not the host
# augmentation's (seeded with the data seed itself) nor another run seed's.
DECODE_CROP_SEED_OFFSET = 1 << 32


def check_place(augment_on: str) -> None:
    if augment_on not in AUGMENT_PLACES:
        raise UsageError(f"--augment-on must be host or device. Received: augment_on={augment_on!r}")


def uint8_batches(
    source: DataReader,
    split: str,
    *,
    batch_size: int,
    shuffle: bool,
    seed: int | None,
    drop_remainder: bool,
    image_size: int | None = None,
    num_workers: int = 1,
    crop=None,
):
    """(uint8 (B, H, W, 3), int32 (B,)) batches of a split, shuffled or in order; ``crop`` (a
    :class:`~cifarkit.readers.image_decode.RandomCrop`) cuts each image as it is decoded."""
    held = source.in_memory(split) if crop is None else None
    if held is not None:
        # Shuffle indices, then gather a whole batch at once from the uint8 arrays in memory:
        # one op per batch instead of one dataset element per image.
        images, labels = held
        images_t, labels_t = tf.constant(images), tf.constant(labels)
        ds = tf.data.Dataset.range(len(labels))
        if shuffle:
            ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
        ds = ds.map(lambda idx: (tf.gather(images_t, idx), tf.gather(labels_t, idx)), num_parallel_calls=AUTOTUNE)
        return shard_policy(ds, by_file=False)
    # Image files and whole TFRecord splits are shuffled before they are decoded: the decoded
    # images held are then only those in flight, about a decode per core and the AUTOTUNE batches
    # being assembled and prefetched (a few batches), never a shuffle buffer of them
    # (tests/readers/test_shuffle_memory.py). Other stores shuffle decoded elements,
    # reader.DECODED_SHUFFLE_BUFFER of them.
    ds = source.dataset(split, image_size=image_size, num_workers=num_workers, crop=crop, shuffle=shuffle, seed=seed)
    return ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)


def train_batches(
    source: DataReader,
    split: str,
    transform: Callable,
    *,
    batch_size: int,
    seed: int = 0,
    augment_on: str = "host",
    image_size: int | None = None,
    num_workers: int = 1,
    crop=None,
):
    """Shuffled training batches: float32 augmented on the host, or uint8 for the device to augment.
    ``crop``: the random-resized crop taken at decode (:func:`decode_crop`), before ``transform``."""
    check_place(augment_on)
    ds = uint8_batches(
        source,
        split,
        batch_size=batch_size,
        shuffle=True,
        seed=seed,
        drop_remainder=True,
        image_size=image_size,
        num_workers=num_workers,
        crop=crop,
    )
    if augment_on == "host":
        # One fresh [2] seed per batch from a seeded stream that differs every epoch: reproducible
        # under --seed, never the same crop twice.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip(ds, seeds)
        ds = ds.map(lambda batch, s: (transform(batch[0], s), batch[1]), num_parallel_calls=AUTOTUNE)
    return without_autotune(ds.prefetch(AUTOTUNE))


def decode_crop(recipe, source: DataReader, seed: int):
    """(the :class:`~cifarkit.readers.image_decode.RandomCrop` the reader takes as it decodes each
    training image, the recipe left to run on the batches): where the recipe begins with a
    random-resized crop and the reader :attr:`~DataReader.can_crop_at_decode`, the crop is drawn on
    each whole file (a JPEG decoded only within its box) from a stream seeded by ``seed``, and the
    recipe goes on from its next op; otherwise (None, the recipe), and its own op crops the
    squared images."""
    from dataclasses import replace

    from .image_decode import RandomCrop

    if not recipe.ops or recipe.ops[0][0] != "random_resized_crop" or not source.can_crop_at_decode:
        return None, recipe
    first = recipe.steps[0]
    crop = RandomCrop(first.size, seed + DECODE_CROP_SEED_OFFSET, first.scale, first.ratio)
    return crop, replace(recipe, ops=recipe.ops[1:])


def eval_batches(
    source: DataReader,
    split: str,
    transform: Callable | None,
    *,
    batch_size: int,
    image_size: int | None = None,
    num_workers: int = 1,
):
    """Batches in dataset order, every image once, transformed without randomness (or uint8 if
    ``transform`` is None, for a model that preprocesses on the device)."""
    ds = uint8_batches(
        source,
        split,
        batch_size=batch_size,
        shuffle=False,
        seed=None,
        drop_remainder=False,
        image_size=image_size,
        num_workers=num_workers,
    )
    if transform is not None:
        ds = ds.map(lambda x, y: (transform(x), y), num_parallel_calls=AUTOTUNE)
    return without_autotune(ds.prefetch(AUTOTUNE))
