"""Named augmentation recipes as data; the transforms are assembled from :mod:`cifarkit.augment`.

A :class:`Recipe` says *what* happens (resize to 256, crop 227, flip, PCA jitter, subtract the
mean); :func:`train_transform`, :func:`eval_transform` and :func:`ten_crop_transform` turn it and
the dataset statistics into batch functions. The same functions run in the host pipeline and
inside the training step on the accelerator, so both places give the same distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from .errors import UsageError
from .stats import Stats

# The paper resizes every image to 256x256 and trains on 224x224 crops; 227 is the size at which
# the 11x11 stride-4 first layer tiles exactly ((227 - 11) / 4 + 1 = 55), so it is the default.
PAPER_RESIZE = 256
PAPER_CROPS = (227, 224)
# The usual CIFAR recipe: pad 4 pixels (reflect) and take a random 32x32 crop.
CIFAR_PAD = 4
CIFAR_SIZE = 32


@dataclass(frozen=True)
class Recipe:
    name: str
    crop: int  # size of the model input
    resize: int | None = None  # virtual resize to resize x resize before cropping
    pad: int = 0  # padding around the image before cropping (no resize)
    pad_mode: str = "REFLECT"
    flip: bool = True
    pca_sigma: float = 0.0  # 0 disables the colour jitter
    standardize: bool = False  # False: subtract the mean only (paper); True: (x - mean) / std

    @property
    def source_size(self) -> int:
        """Square size that images of other sizes (folder trees) are brought to before batching."""
        return self.resize or self.crop

    def describe(self) -> str:
        steps = []
        if self.resize:
            steps.append(f"resize to {self.resize}x{self.resize}")
        if self.pad:
            steps.append(f"pad {self.pad} ({self.pad_mode.lower()})")
        steps.append(f"random {self.crop}x{self.crop} crop")
        if self.flip:
            steps.append("horizontal flip p=0.5")
        if self.pca_sigma:
            steps.append(f"PCA colour jitter sigma={self.pca_sigma}")
        steps.append("per-channel standardisation" if self.standardize else "subtract the training mean")
        return ", ".join(steps)


RECIPES: dict[str, Recipe] = {
    "paper": Recipe("paper", crop=PAPER_CROPS[0], resize=PAPER_RESIZE, flip=True, pca_sigma=0.1),
    "cifar": Recipe("cifar", crop=CIFAR_SIZE, pad=CIFAR_PAD, pad_mode="REFLECT", flip=True, standardize=True),
}


def get_recipe(name: str, crop: int | None = None) -> Recipe:
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise UsageError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
    if crop is not None and crop != recipe.crop:
        if recipe.resize is None:
            raise UsageError(f"recipe {name!r} has no --crop option. Received: crop={crop}")
        if not 1 <= crop <= recipe.resize:
            raise UsageError(f"--crop must be between 1 and {recipe.resize}. Received: crop={crop}")
        recipe = replace(recipe, crop=crop)
    return recipe


def _span(recipe: Recipe, images):
    if recipe.resize:
        return recipe.resize
    height = images.shape[1]
    if height is None:
        import tensorflow as tf

        height = tf.shape(images)[1]
    return height + 2 * recipe.pad


def _finish(recipe: Recipe, stats: Stats):
    from . import augment

    std = stats.std if recipe.standardize else None
    return lambda x: augment.normalize(x, stats.mean, std)


def _windows(recipe: Recipe, images, offsets, flips, box_indices=None):
    from . import augment

    unit = augment.to_unit(images)
    return augment.crop_windows(unit, offsets, flips, resize=recipe.resize, crop=recipe.crop,
                                box_indices=box_indices, pad=recipe.pad, pad_mode=recipe.pad_mode)  # fmt: skip


def _compiled(transform: Callable) -> Callable:
    """XLA-compile a transform: the window sampling, colour jitter and normalisation then run as
    one fused loop per batch instead of a chain of full-size intermediate tensors. Compiled
    functions also run inside ``Dataset.map`` and inside a Keras training step."""
    import tensorflow as tf

    return tf.function(transform, jit_compile=True)


def train_transform(recipe: Recipe, stats: Stats) -> Callable:
    """``fn(uint8 images (N, H, W, 3), seed [2]) -> float32 (N, crop, crop, 3)``."""
    import tensorflow as tf

    from . import augment

    finish = _finish(recipe, stats)

    def transform(images, seed):
        batch = tf.shape(images)[0]
        window_seed, colour_seed = augment.split_seed(seed, 2)
        offsets, flips = augment.random_windows(window_seed, batch, _span(recipe, images), recipe.crop, recipe.flip)
        out = _windows(recipe, images, offsets, flips)
        if recipe.pca_sigma:
            out = augment.pca_jitter(out, colour_seed, stats.eigenvalues, stats.eigenvectors, recipe.pca_sigma)
        return finish(out)

    return _compiled(transform)


def eval_transform(recipe: Recipe, stats: Stats) -> Callable:
    """``fn(uint8 images) -> float32``: the centre window, no randomness (for the cifar recipe,
    the centre of the padded image is the image itself)."""
    import tensorflow as tf

    from . import augment

    finish = _finish(recipe, stats)

    def transform(images):
        offsets, flips = augment.centre_windows(tf.shape(images)[0], _span(recipe, images), recipe.crop)
        return finish(_windows(recipe, images, offsets, flips))

    return _compiled(transform)


def ten_crop_transform(recipe: Recipe, stats: Stats) -> Callable:
    """``fn(uint8 images (N, ...)) -> float32 (N, 10, crop, crop, 3)``: corners, centre, mirrors."""
    import tensorflow as tf

    from . import augment

    finish = _finish(recipe, stats)

    def transform(images):
        batch = tf.shape(images)[0]
        corners, flips = augment.ten_crop_windows(_span(recipe, images), recipe.crop)
        offsets = tf.tile(corners, [batch, 1])  # image-major: image 0's ten windows, then image 1's
        box_flips = tf.tile(flips, [batch])
        indices = tf.repeat(tf.range(batch), 10)
        views = _windows(recipe, images, offsets, box_flips, indices)
        views = finish(views)
        return tf.reshape(views, [batch, 10, recipe.crop, recipe.crop, 3])

    return _compiled(transform)


def preview_stages(recipe: Recipe, stats: Stats) -> list[tuple[str, Callable]]:
    """Cumulative stages for ``augment-preview``: ``fn(uint8 images, seed) -> [0, 1] float images``.

    Each stage adds one step to the previous, with the same seed, so a row shows one step's effect.
    """
    import tensorflow as tf

    from . import augment

    def stage(crop: bool, flip: bool, colour: bool):
        def fn(images, seed):
            batch = tf.shape(images)[0]
            window_seed, colour_seed = augment.split_seed(seed, 2)
            span = _span(recipe, images)
            if crop:
                offsets, flips = augment.random_windows(window_seed, batch, span, recipe.crop, recipe.flip)
                flips = flips & flip
                size = recipe.crop
            else:  # the whole (resized, padded) image
                offsets, flips = tf.zeros([batch, 2], tf.int32), tf.zeros([batch], tf.bool)
                size = span
            unit = augment.to_unit(images)
            out = augment.crop_windows(unit, offsets, flips, resize=recipe.resize, crop=size,
                                       pad=recipe.pad, pad_mode=recipe.pad_mode)  # fmt: skip
            if colour and recipe.pca_sigma:
                out = augment.pca_jitter(out, colour_seed, stats.eigenvalues, stats.eigenvectors, recipe.pca_sigma)
            return tf.clip_by_value(out, 0.0, 1.0)

        return fn

    first = f"resize {recipe.resize}" if recipe.resize else f"pad {recipe.pad}" if recipe.pad else "input"
    stages = [(first, stage(False, False, False)), (f"crop {recipe.crop}", stage(True, False, False))]
    if recipe.flip:
        stages.append(("+ flip", stage(True, True, False)))
    if recipe.pca_sigma:
        stages.append(("+ PCA colour", stage(True, True, True)))
    return stages
