"""Augmentation ops registered by name: the vocabulary recipes are written in.

An op is a small frozen dataclass made by a factory registered under its name
(``make_op("crop", 227)``), as big_vision's preprocessing registry does. It acts on a batch in
flight, which carries the mode (``"train"``: random, ``"eval"``: the centre, ``"ten_crop"``: the
paper's ten test views), and has two implementations of the same arithmetic:

- ``host(batch)``: TensorFlow, for the tf.data pipeline (:class:`cifarkit.augment.host.HostBatch`);
  random ops draw from the batch's stateless seed, at their own ``seed_path``;
- ``draw(rng, count, size, mode)`` then ``device(batch, value)``: ``keras.ops``, for the
  :class:`~cifarkit.augment.layer.Augmentation` layer on any backend
  (:class:`cifarkit.augment.device.DeviceBatch`); the random choice is drawn apart from the
  arithmetic, so a test can replay it.

Geometry ops (resize, pad, crop, flip) only describe a window; the batch samples it once, when
an op needs pixels or at the end, so "resize to 256, crop 227, mirror" is one gather from the
32x32 images. Colour ops (PCA jitter, normalisation) act per image and channel.

To add an op: write its dataclass here with ``@register_op("name")`` (``host``, ``draw`` and
``device``, ``caption`` and ``phrase``); then name it in a recipe of :mod:`cifarkit.augment.recipes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..runtime.lazy import keras, ops, tf

# Re-exported: whoever imports make_op from here has every op below registered.
from .op_registry import OPS, Op, check_positive, make_op, register_op  # noqa: F401

PAD_MODES = ("REFLECT", "SYMMETRIC", "CONSTANT")  # tf.pad's spelling
# The AlexNet paper's colour jitter draws alpha ~ N(0, 0.1) per image and per presentation.
PCA_SIGMA = 0.1


@register_op("resize")
@dataclass(frozen=True)
class Resize(Op):
    """Bilinear resize to ``size`` x ``size``, virtual: the window that follows reads the small image."""

    size: int

    def __post_init__(self):
        check_positive("size", self.size)

    def out_size(self, size: int) -> int:
        return self.size

    def caption(self) -> str:
        return f"resize {self.size}"

    def phrase(self) -> str:
        return f"resize to {self.size}x{self.size}"

    def host(self, batch) -> None:
        batch.set_resize(self.size)

    def device(self, batch, value) -> None:
        batch.set_resize(self.size)


@register_op("pad")
@dataclass(frozen=True)
class Pad(Op):
    """``pixels`` of padding on every side, filled as tf.pad's ``mode`` fills it."""

    pixels: int
    mode: str = "REFLECT"

    def __post_init__(self):
        check_positive("pixels", self.pixels)
        if self.mode not in PAD_MODES:
            raise ValueError(f"mode must be one of {', '.join(PAD_MODES)}. Received: mode={self.mode!r}")

    def out_size(self, size: int) -> int:
        return size + 2 * self.pixels

    def caption(self) -> str:
        return f"pad {self.pixels}"

    def phrase(self) -> str:
        return f"pad {self.pixels} ({self.mode.lower()})"

    def host(self, batch) -> None:
        batch.set_pad(self.pixels, self.mode)

    def device(self, batch, value) -> None:
        batch.set_pad(self.pixels, self.mode)


@register_op("crop")
@dataclass(frozen=True)
class Crop(Op):
    """A ``size`` x ``size`` window: uniform at random in training, the centre in evaluation,
    the four corners and the centre and their mirrors for ten-crop testing."""

    size: int
    seed_path: ClassVar[tuple[int, ...]] = (0, 0)

    def __post_init__(self):
        check_positive("size", self.size)

    def out_size(self, size: int) -> int:
        return self.size

    def caption(self) -> str:
        return f"crop {self.size}"

    def phrase(self) -> str:
        return f"random {self.size}x{self.size} crop"

    def host(self, batch) -> None:
        from . import host as augment

        if batch.mode == "train":
            offsets = augment.random_offsets(batch.seed(self.seed_path), batch.count, batch.span, self.size)
            batch.set_window(self.size, offsets)
        elif batch.mode == "ten_crop":
            batch.set_ten_windows(self.size, *augment.ten_crop_windows(batch.span, self.size))
        else:
            batch.set_window(self.size, augment.centre_windows(batch.count, batch.span, self.size)[0])

    def draw(self, rng, count, size: int, mode: str):
        if mode != "train":
            return None
        return keras.random.randint((count, 2), 0, size - self.size + 1, dtype="int32", seed=rng)

    def device(self, batch, value) -> None:
        from . import device as device_augment

        if batch.mode == "ten_crop":
            batch.set_ten_windows(self.size, *device_augment.ten_crop_windows(batch.count, batch.span, self.size))
        elif value is None:
            batch.set_window(self.size, device_augment.centre_windows(batch.count, batch.span, self.size))
        else:
            batch.set_window(self.size, value)


@register_op("flip")
@dataclass(frozen=True)
class Flip(Op):
    """Mirror left-right with p = 0.5 in training (read as columns backwards, no copy)."""

    seed_path: ClassVar[tuple[int, ...]] = (0, 1)

    def caption(self) -> str:
        return "+ flip"

    def phrase(self) -> str:
        return "horizontal flip p=0.5"

    def host(self, batch) -> None:
        from . import host as augment

        if batch.mode == "train":
            batch.set_flips(augment.random_flips(batch.seed(self.seed_path), batch.count))

    def draw(self, rng, count, size: int, mode: str):
        return keras.random.uniform((count,), seed=rng) < 0.5 if mode == "train" else None

    def device(self, batch, value) -> None:
        if value is not None:
            batch.set_flips(value)


@register_op("pca_jitter")
@dataclass(frozen=True)
class PcaJitter(Op):
    """The paper's colour jitter: ``P @ (alpha * lambda)`` added to every pixel of an image,
    alpha ~ N(0, sigma) per image and eigenvector, in training only."""

    sigma: float = PCA_SIGMA
    seed_path: ClassVar[tuple[int, ...]] = (1,)

    def __post_init__(self):
        if not self.sigma > 0:
            raise ValueError(f"sigma must be positive. Received: sigma={self.sigma!r}")

    def caption(self) -> str:
        return "+ PCA colour"

    def phrase(self) -> str:
        return f"PCA colour jitter sigma={self.sigma}"

    def host(self, batch) -> None:
        from . import host as augment

        if batch.mode == "train":
            stats, seed = batch.stats, batch.seed(self.seed_path)
            batch.map_pixels(lambda x: augment.pca_jitter(x, seed, stats.eigenvalues, stats.eigenvectors, self.sigma))

    def draw(self, rng, count, size: int, mode: str):
        return keras.random.normal((count, 3), stddev=self.sigma, seed=rng) if mode == "train" else None

    def device(self, batch, value) -> None:
        from . import device as device_augment

        if value is not None:
            shift = device_augment.colour_offsets(value, batch.stats.eigenvalues, batch.stats.eigenvectors)
            batch.map_channels(lambda x: x + shift[:, None, None, :])


@register_op("normalize")
@dataclass(frozen=True)
class Normalize(Op):
    """Subtract the training mean (the paper) and, with ``standardize``, divide by the std."""

    standardize: bool = False
    visible: ClassVar[bool] = False

    def caption(self) -> str:
        return "normalize"

    def phrase(self) -> str:
        return "per-channel standardisation" if self.standardize else "subtract the training mean"

    def divisor(self, stats):
        """The per-channel std the pixels are divided by; None where only the mean is subtracted."""
        return stats.std if self.standardize else None

    def host(self, batch) -> None:
        from . import host as augment

        std = self.divisor(batch.stats)
        batch.map_pixels(lambda x: augment.normalize(x, batch.stats.mean, std))

    def device(self, batch, value) -> None:
        mean = ops.convert_to_tensor(batch.stats.mean, "float32")
        std = ops.convert_to_tensor(batch.stats.std, "float32")
        batch.map_channels(lambda x: (x - mean) / std if self.standardize else x - mean)


@register_op("alt_flip")
@dataclass(frozen=True)
class AlternatingFlip(Op):
    """airbench's alternating flip (Jordan 2024, section 3.6): each image is mirrored in every
    other epoch, exactly, instead of by a fresh coin at each presentation, so any two consecutive
    epochs show both sides of every image. Which epochs an image starts mirrored in is fixed per
    image by its pixels (the parity of their sum: a fair coin across images, no index needed), so
    the op needs only the epoch number, which the batch carries (0 outside training)."""

    uses_epoch: ClassVar[bool] = True

    def caption(self) -> str:
        return "+ alt flip"

    def phrase(self) -> str:
        return "horizontal flip in alternate epochs"

    def host(self, batch) -> None:
        if batch.mode == "train":
            odd = tf.cast(tf.math.floormod(batch.epoch, 2), tf.int32)
            batch.set_flips(tf.not_equal(tf.math.floormod(batch.image_bits + odd, 2), 0))

    def device(self, batch, value) -> None:
        if batch.mode == "train":
            odd = ops.cast(ops.mod(batch.epoch, 2), "int32")
            batch.set_flips(ops.not_equal(ops.mod(batch.image_bits + odd, 2), 0))


@register_op("cutout")
@dataclass(frozen=True)
class Cutout(Op):
    """Cutout (DeVries & Taylor 2017) as airbench96 applies it: in training, a ``size`` x ``size``
    square of each image, placed uniformly where it fits whole, set to zero. After ``normalize``
    zero is the training mean's colour; before it, black. Evaluation leaves images whole."""

    size: int
    # A child of pca_jitter's leaf: every leaf of the two-way tree is taken, and a split seed's
    # streams are independent of their parent's, so older recipes draw exactly what they drew.
    seed_path: ClassVar[tuple[int, ...]] = (1, 0)

    def __post_init__(self):
        check_positive("size", self.size)

    def out_size(self, size: int) -> int:
        if self.size > size:
            raise ValueError(f"the cutout square must fit in the {size}x{size} image. Received: size={self.size}")
        return size

    def caption(self) -> str:
        return f"+ cutout {self.size}"

    def phrase(self) -> str:
        return f"cutout {self.size}x{self.size}"

    def host(self, batch) -> None:
        from . import host as augment

        if batch.mode == "train":
            if batch.pending:
                batch.render()  # the square is placed in the view, whose side is now batch.span
            corners = augment.random_offsets(batch.seed(self.seed_path), batch.count, batch.span, self.size)
            batch.map_pixels(lambda x: augment.cutout(x, corners, self.size))

    def draw(self, rng, count, size: int, mode: str):
        if mode != "train":
            return None
        return keras.random.randint((count, 2), 0, size - self.size + 1, dtype="int32", seed=rng)

    def device(self, batch, value) -> None:
        from . import device as device_augment

        if value is not None:
            batch.map_pixels(lambda x: device_augment.cutout(x, value, self.size))


# torchvision's RandomResizedCrop draws up to 10 boxes before it falls back; evaluation takes the
# central 224/256 of the image, as the usual "resize 256, centre crop 224" does.
RRC_ATTEMPTS = 10
RRC_EVAL_FRACTION = 0.875


@register_op("random_resized_crop")
@dataclass(frozen=True)
class RandomResizedCrop(Op):
    """Inception's crop (Szegedy et al. 2015): a box of a uniform ``scale`` share of the image's
    area and a log-uniform aspect ``ratio``, resized to ``size`` x ``size`` (bilinear); in
    evaluation the central square of 0.875 of the side."""

    size: int
    scale_min: float = 0.08
    scale_max: float = 1.0
    ratio_min: float = 3 / 4
    ratio_max: float = 4 / 3
    seed_path: ClassVar[tuple[int, ...]] = (0, 0)

    def __post_init__(self):
        check_positive("size", self.size)
        if not 0 < self.scale_min <= self.scale_max <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1. Received: scale={self.scale}")
        if not 0 < self.ratio_min <= self.ratio_max:
            raise ValueError(f"ratio must satisfy 0 < min <= max. Received: ratio={self.ratio}")

    @property
    def scale(self) -> tuple[float, float]:
        return (self.scale_min, self.scale_max)

    @property
    def ratio(self) -> tuple[float, float]:
        return (self.ratio_min, self.ratio_max)

    def out_size(self, size: int) -> int:
        return self.size

    def caption(self) -> str:
        return f"rr crop {self.size}"

    def phrase(self) -> str:
        return (
            f"random-resized {self.size}x{self.size} crop (area {self.scale_min:g}-{self.scale_max:g}, "
            f"aspect {self.ratio_min:.3g}-{self.ratio_max:.3g})"
        )

    def host(self, batch) -> None:
        from . import host as augment

        if batch.mode == "train":
            seed = batch.seed(self.seed_path)
            boxes = augment.random_boxes(seed, batch.count, batch.span, self.scale, self.ratio, RRC_ATTEMPTS)
        else:
            boxes = augment.centre_boxes(batch.count, batch.span, RRC_EVAL_FRACTION)
        batch.resample(lambda x: augment.box_windows(x, boxes, self.size), self.size)

    def draw(self, rng, count, size: int, mode: str):
        return keras.random.uniform((count, RRC_ATTEMPTS, 4), seed=rng) if mode == "train" else None

    def device(self, batch, value) -> None:
        from . import device as device_augment

        if value is None:
            boxes = device_augment.centre_boxes(batch.count, batch.span, RRC_EVAL_FRACTION)
        else:
            boxes = device_augment.boxes_from_draws(value, batch.span, self.scale, self.ratio)
        batch.resample(lambda x: device_augment.box_windows(x, boxes, self.size), self.size)
