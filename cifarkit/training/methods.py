"""Training methods any model can use, from the fast-training work on CIFAR-10 (Keller Jordan,
"94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024, arXiv 2404.00498; and Page's "How to
train your ResNet" series before it):

- :func:`whiten_first_conv`: data-dependent initialisation. The first convolution's filters are
  set to the whitening directions of the training images' patches (eigenvectors of their
  second-moment matrix divided by the square root of their eigenvalues), and their negatives
  where there are filters enough, so its outputs start decorrelated with unit variance.
- :class:`WeightAverage`: an exponential moving average of the weights, kept apart and swapped in
  for validation and at the end (EMA), or with the network pulled back onto it at every update
  (Lookahead, Zhang et al. 2019, as airbench uses it), its decay warming up as ``(t / T) ** 3``.
- :class:`WarmupDecay`: a learning-rate schedule evaluated at every optimizer step: linear
  warm-up from a fraction of the rate, then a linear or cosine decay to another fraction.

Importing this module imports Keras and registers :class:`WarmupDecay` for saved optimizers.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

WHITEN_EPS = 5e-4  # added to each eigenvalue before dividing: directions of tiny variance stay tame
WHITEN_IMAGES = 5000  # training images the patch statistics are computed from (airbench's number)
# airbench's schedule: from 0.2 of the rate up to the rate over the first 23% of the steps, then
# linearly down to 0.07 of it at the end.
WARMUP_FRACTION = 0.23
WARMUP_START = 0.2
DECAY_END = 0.07
STEP_SCHEDULES = ("warmup-linear", "warmup-cosine")
# airbench's Lookahead: every 5 steps, decay 0.95 per step scaled by (step / total steps) ** 3,
# so the average barely acts early and holds most weight at the end.
AVERAGE_EVERY = 5
AVERAGE_DECAY = 0.95
AVERAGE_POWER = 3
AVERAGING = ("none", "ema", "lookahead")


# --------------------------------------------------------------------------------------------
# Whitening initialisation


def patches(images: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Every ``kh`` x ``kw`` patch of float images (N, H, W, C), flattened in the order of a
    Keras kernel's first three axes (row, column, channel): (N * (H-kh+1) * (W-kw+1), kh*kw*C)."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (kh, kw), axis=(1, 2))  # N, H', W', C, kh, kw
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kh * kw * images.shape[-1]).astype(np.float64)


def whitening_filters(images: np.ndarray, kh: int, kw: int, eps: float = WHITEN_EPS) -> np.ndarray:
    """(kh, kw, C, kh*kw*C) filters, largest-variance direction first, whose outputs on the
    patches of ``images`` have second moments ``lambda / (lambda + eps)``: the identity, but for
    directions of variance near ``eps``."""
    flat = patches(images, kh, kw)
    moments = flat.T @ flat / len(flat)
    values, vectors = np.linalg.eigh(moments)
    order = np.argsort(values)[::-1]
    values, vectors = np.maximum(values[order], 0.0), vectors[:, order]
    scaled = vectors / np.sqrt(values + eps)
    return scaled.reshape(kh, kw, images.shape[-1], -1).astype(np.float32)


def first_conv(network):
    """The network's first convolution (in the order its layers were built)."""
    for layer in network._flatten_layers(include_self=False):
        if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
            return layer
    raise ValueError(f"{network.name} has no convolution to whiten")


def whiten_first_conv(network, images: np.ndarray, eps: float = WHITEN_EPS) -> int:
    """Set the first convolution's filters from the patches of ``images`` (float, as the network
    sees them): the whitening directions, then their negatives where filters remain (so that a
    ReLU or GELU after it keeps both signs); filters beyond twice the patch size keep their
    initial values, and a convolution with fewer filters takes the directions of largest
    variance. Returns how many filters were set."""
    layer = first_conv(network)
    kernel = np.array(layer.kernel.numpy() if hasattr(layer.kernel, "numpy") else layer.kernel)
    kh, kw, channels, filters = kernel.shape
    if channels != images.shape[-1]:
        raise ValueError(f"{layer.name} takes {channels} channels; the images have {images.shape[-1]}")
    white = whitening_filters(images, kh, kw, eps)
    both = np.concatenate([white, -white], axis=-1)
    count = min(filters, both.shape[-1])
    kernel[..., :count] = both[..., :count]
    layer.kernel.assign(kernel)
    return count


# --------------------------------------------------------------------------------------------
# Learning rate per step


@keras.saving.register_keras_serializable(package="cifarkit")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``lr * f(step)``: ``f`` rises linearly from ``start`` to 1 over the first ``warmup`` of
    ``total_steps``, then falls to ``end`` at the last step, linearly or along a half cosine."""

    def __init__(
        self,
        lr: float,
        total_steps: int,
        warmup: float = WARMUP_FRACTION,
        start: float = WARMUP_START,
        end: float = DECAY_END,
        shape: str = "linear",
    ):
        if shape not in ("linear", "cosine"):
            raise ValueError(f"shape must be linear or cosine. Received: shape={shape!r}")
        if not 0 <= warmup < 1:
            raise ValueError(f"warmup must be a fraction in [0, 1). Received: warmup={warmup!r}")
        self.lr, self.total_steps, self.warmup = float(lr), max(1, int(total_steps)), float(warmup)
        self.start, self.end, self.shape = float(start), float(end), shape

    def factor(self, step):
        """``f(step)`` in ``keras.ops`` (a float32 tensor)."""
        step = ops.cast(step, "float32")
        warm = float(max(1, int(self.warmup * self.total_steps))) if self.warmup else 0.0
        rising = self.start + (1.0 - self.start) * step / max(warm, 1.0)
        frac = ops.clip((step - warm) / max(self.total_steps - warm, 1.0), 0.0, 1.0)
        if self.shape == "cosine":
            falling = self.end + (1.0 - self.end) * 0.5 * (1.0 + ops.cos(math.pi * frac))
        else:
            falling = 1.0 + (self.end - 1.0) * frac
        return ops.where(step < warm, rising, falling)

    def __call__(self, step):
        return self.lr * self.factor(step)

    def get_config(self):
        return {
            "lr": self.lr,
            "total_steps": self.total_steps,
            "warmup": self.warmup,
            "start": self.start,
            "end": self.end,
            "shape": self.shape,
        }


def learning_rate(schedule: str, lr: float, total_steps: int, warmup: float | None = None):
    """What the optimizer takes: a :class:`WarmupDecay` for the per-step schedules, else the
    number (the per-epoch schedules set it from a callback)."""
    if schedule not in STEP_SCHEDULES:
        return lr
    shape = schedule.split("-", 1)[1]
    return WarmupDecay(lr, total_steps, WARMUP_FRACTION if warmup is None else warmup, shape=shape)


# --------------------------------------------------------------------------------------------
# Weight averaging


class WeightAverage(keras.callbacks.Callback):
    """An exponential moving average of the model's float variables (weights and batch-norm
    statistics), updated every ``every`` optimizer steps with decay
    ``decay ** every * (step / total_steps) ** power``.

    ``mode="lookahead"``: after each update the model's variables are set to the average (the
    slow weights pull the fast ones back). ``mode="ema"``: the average is kept apart, swapped in
    for each validation pass, and written into the model when training ends (both modes).
    With several steps per call into the compiled function, updates happen at the first call
    boundary at or after each multiple of ``every``, with the decay for the steps since the last.
    """

    def __init__(
        self,
        total_steps: int,
        mode: str = "lookahead",
        every: int = AVERAGE_EVERY,
        decay: float = AVERAGE_DECAY,
        power: float = AVERAGE_POWER,
    ):
        super().__init__()
        if mode not in AVERAGING[1:]:
            raise ValueError(f"mode must be ema or lookahead. Received: mode={mode!r}")
        self.total_steps, self.mode, self.every = max(1, int(total_steps)), mode, int(every)
        self.decay, self.power = float(decay), float(power)
        self.average = None
        self.last_step = 0
        self._held = None
        self.finished = False

    def variables(self):
        return [v for v in self.model.variables if "float" in str(v.dtype)]

    def on_train_begin(self, logs=None):
        self.average = [np.array(v.numpy(), np.float64) for v in self.variables()]
        self.last_step = int(np.asarray(self.model.optimizer.iterations))

    def decay_at(self, step: int, steps: int) -> float:
        return (self.decay**steps) * min(1.0, step / self.total_steps) ** self.power

    def on_train_batch_end(self, batch, logs=None):
        step = int(np.asarray(self.model.optimizer.iterations))
        if self.finished or step - self.last_step < self.every:
            return
        self.update(self.decay_at(step, step - self.last_step))
        self.last_step = step
        if step >= self.total_steps:
            # The last step: the model becomes the average before the last validation pass and
            # checkpoint, so the saved model is the one the run reports.
            self.finish()

    def finish(self) -> None:
        for variable, value in zip(self.variables(), self.average):
            variable.assign(value.astype(variable.dtype))
        self.finished = True

    def update(self, decay: float) -> None:
        variables = self.variables()
        for index, variable in enumerate(variables):
            self.average[index] = decay * self.average[index] + (1 - decay) * np.asarray(variable.numpy(), np.float64)
            if self.mode == "lookahead":
                variable.assign(self.average[index].astype(variable.dtype))

    def _swap_in(self) -> None:
        variables = self.variables()
        self._held = [np.array(v.numpy()) for v in variables]
        for variable, value in zip(variables, self.average):
            variable.assign(value.astype(variable.dtype))

    def on_test_begin(self, logs=None):
        if self.mode == "ema" and self.average is not None and not self.finished:
            self._swap_in()

    def on_test_end(self, logs=None):
        if self._held is not None:
            for variable, value in zip(self.variables(), self._held):
                variable.assign(value)
            self._held = None

    def on_train_end(self, logs=None):
        if self.average is not None and not self.finished:
            self.finish()


# --------------------------------------------------------------------------------------------
# The trainer's side


class EpochCounter(keras.callbacks.Callback):
    """Writes the epoch number into the augmentation layer's ``epoch`` variable as each epoch
    begins, for recipe ops that depend on it (alt_flip)."""

    def __init__(self, variable):
        super().__init__()
        self.variable = variable

    def on_epoch_begin(self, epoch, logs=None):
        self.variable.assign(epoch)


def method_callbacks(config, compiled, steps: int) -> list:
    """The callbacks the run's methods need: weight averaging and the augmentation's epoch."""
    callbacks = []
    if config.averaging and config.averaging != "none":
        callbacks.append(WeightAverage(steps * config.epochs, config.averaging))
    augmentation = compiled.export_model.get_layer("preprocess")
    if getattr(augmentation, "epoch", None) is not None:
        callbacks.append(EpochCounter(augmentation.epoch))
    return callbacks


def sample_images(source, image_size, count: int = WHITEN_IMAGES) -> np.ndarray:
    """The first ``count`` uint8 training images (fewer if the split is smaller)."""
    from ..evaluation.evaluate import eval_batches

    taken, held = [], 0
    for images, _ in eval_batches(source, "train", batch_size=1000, image_size=image_size):
        taken.append(np.asarray(images))
        held += len(taken[-1])
        if held >= count:
            break
    return np.concatenate(taken)[:count]


def whiten_network(export_model, network, data, say=lambda message: None) -> None:
    """:func:`whiten_first_conv` on the training images as the network sees them (the saved
    model's preprocessing, centre view)."""
    images = sample_images(data.source, data.image_size)
    views = np.asarray(export_model.get_layer("preprocess").views(images))
    count = whiten_first_conv(network, views)
    say(
        f"whitened {first_conv(network).name}'s first {count} filters from the patches of {len(images):,} training "
        "images"
    )
