"""The batches ``fit`` trains and validates on: tf.data pipelines on the TensorFlow backend,
:mod:`cifarkit.readers.feed` on the others.

- TensorFlow: :mod:`cifarkit.readers.pipeline`, augmenting on the host (a ``tf.data`` map) or shipping
  uint8 batches for the device. A resumed run draws a fresh, reproducible order from (seed,
  epoch it resumes at).
- JAX and PyTorch: uint8 batches of the in-memory arrays (CIFAR archives, MNIST IDX files),
  gathered and queued by a background thread; the model's first layer augments them on the
  device. Epoch ``e`` visits the images in the order of (seed, e), so a resumed run takes the
  very orders an uninterrupted one would. Keras reads the training batches as an endless
  generator, one epoch every ``steps`` batches, and each validation pass as a ``PyDataset`` of
  its batches in dataset order (a generator would not do: Keras replays the batches it peeked at
  first whenever it starts reading one again, which shifted every pass after the first). Under
  JAX data parallelism each process feeds its slice of every global batch, and a validation
  pass pads its last batch to split over the devices (weighted so that the numbers stay exact).

Under a multi-worker strategy each worker reads its own part: on TensorFlow one input pipeline
per worker (not per replica), sharded by tf.data as the reader's shard policy says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A resumed run draws a fresh data order from (seed, epoch it resumes at) rather than replaying
# the order of the first epoch (tf.data's shuffle knows no epoch number).
RESUME_SEED_STRIDE = 1_000_003


@dataclass
class Inputs:
    train: Any
    validation: Any
    fit_options: dict = field(default_factory=dict)  # steps_per_epoch and validation_steps for generators
    streams: list = field(default_factory=list)  # feed streams to close when training ends
    callbacks: list = field(default_factory=list)  # what the batches need from fit (the host recipe's epoch)

    def close(self) -> None:
        for stream in self.streams:
            stream.close()


def run_inputs(config, data, stats, placement, steps: int, initial_epoch: int) -> Inputs:
    """The training and validation batches of a run, starting at ``initial_epoch``."""
    from ..runtime.strategy import keras_backend

    backend = keras_backend()
    if backend == "tensorflow":
        return _tf_data(config, data, stats, placement, initial_epoch)
    return _fed(config, data, placement, steps, initial_epoch, backend)


def check_inputs(data, recipe) -> None:
    """Refuse, before anything is written, data the backend cannot feed or the recipe cannot take."""
    from ..augment.recipes import check_channels
    from ..readers.feed import source_arrays
    from ..runtime.strategy import keras_backend

    check_channels(recipe, data.input_shape[-1], data.source.location)
    backend = keras_backend()
    if backend != "tensorflow":
        source_arrays(data.source, "train", backend)


def _tf_data(config, data, stats, placement, initial_epoch: int) -> Inputs:
    from ..augment.recipes import epoch_variable, eval_transform, train_transform
    from ..readers.pipeline import decode_crop, eval_batches, train_batches
    from .methods import EpochCounter

    recipe = config.recipe
    num_workers = placement.workers  # tf.distribute's input pipelines: one per worker, however many replicas
    # A resumed run takes a fresh data order (and host augmentation stream) for the epochs left.
    data_seed = config.seed + RESUME_SEED_STRIDE * initial_epoch
    on_host = config.augment_on == "host"
    epoch = epoch_variable(recipe) if on_host else None  # for alt_flip; on the device the layer holds it
    # Inception's crop is taken as each photo is decoded where the reader can; the device's layer
    # crops the squared images itself.
    crop, train_recipe = decode_crop(recipe, data.source, data_seed) if on_host else (None, recipe)
    train_ds = train_batches(
        data.source,
        "train",
        train_transform(train_recipe, stats, epoch) if on_host else None,
        batch_size=config.batch_size,
        seed=data_seed,
        augment_on=config.augment_on,
        image_size=data.image_size,
        num_workers=num_workers,
        crop=crop,
    )
    val_ds = eval_batches(
        data.source,
        config.val_split,
        eval_transform(recipe, stats) if on_host else None,
        batch_size=config.batch_size,
        image_size=data.image_size,
        num_workers=num_workers,
    )
    return Inputs(train_ds, val_ds, callbacks=[EpochCounter(epoch)] if epoch is not None else [])


def _fed(config, data, placement, steps: int, initial_epoch: int, backend: str) -> Inputs:
    from ..readers.feed import Feed, source_arrays

    # This process's slice of each global batch, which splits over every replica.
    share = {"part": placement.worker_index, "parts": placement.workers, "batch_multiple": placement.replicas}
    images, labels = source_arrays(data.source, "train", backend)
    train = Feed(images, labels, batch_size=config.batch_size, seed=config.seed, **share)
    train = train.epochs(first_epoch=initial_epoch)
    val_images, val_labels = source_arrays(data.source, config.val_split, backend)
    # In dataset order, every image once per pass, the last batch short.
    validation = Feed(
        val_images, val_labels, batch_size=config.batch_size, shuffle=False, drop_remainder=False, **share
    )
    return Inputs(_generator(train), evaluation_passes(validation), {"steps_per_epoch": steps}, [train])


def evaluation_passes(feed):
    """The feed's batches of epoch 0 as a Keras ``PyDataset``: one whole pass each time Keras reads it."""
    from ..runtime.lazy import keras

    class Passes(keras.utils.PyDataset):
        def __len__(self) -> int:
            return len(feed)

        def __getitem__(self, number: int):
            return feed.batch(number)

    return Passes()


def _generator(stream):
    # Keras takes generators, not other iterators, as data.
    yield from stream
