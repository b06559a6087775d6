"""The recipes' transforms in ``keras.ops``: the augmentation a model runs on its accelerator,
on any Keras backend (TensorFlow, JAX, PyTorch).

The arithmetic is that of :mod:`cifarkit.augment`, the TensorFlow host path: a window of a
virtually resized (or padded) image sampled straight from the small image with two-tap separable
bilinear weights, a mirror read as columns backwards, the PCA colour jitter as one RGB offset per
image, then the mean (and std) taken off. Seed-independent views (the centre window, the ten
crops) agree with the host path to float rounding; random views have the same distribution but
not the same draws (TensorFlow's stateless random streams exist on no other backend).

Random draws are separate from the arithmetic: :func:`draw_views` takes a Keras ``SeedGenerator``
and returns the window corners, mirror flags and jitter weights of a batch, and :func:`views`
turns those into images. Tests check each half on its own.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import keras
from keras import ops

# Pad modes a recipe may name (tf.pad's spelling, as in cifarkit.recipes.Recipe.pad_mode).
PAD_MODES = ("REFLECT", "SYMMETRIC", "CONSTANT")
TEN_CROPS = 10  # four corners and the centre, and their mirrors


class Draw(NamedTuple):
    """The random choices for one batch: window corners (N, 2) int32 in resized (or padded)
    pixels, mirror flags (N,) bool, and PCA weights alpha (N, 3) float32 (None without jitter)."""

    offsets: object
    flips: object
    alpha: object = None


def source_span(recipe, image_size: int) -> int:
    """Side of the (virtual) image windows are cut from: the resize, or the padded image."""
    return recipe.resize or image_size + 2 * recipe.pad


def to_unit(images):
    """uint8 [0, 255] -> float32 [0, 1]; the scale every step after this one works in."""
    return ops.cast(images, "float32") / 255.0


def _reflect(index, size: int, pad_mode: str):
    """Indices into a padded axis mapped back to the image's own pixels (REFLECT repeats no
    edge pixel, SYMMETRIC repeats it), as tf.pad would have filled the padding."""
    if pad_mode == "REFLECT":
        index = ops.abs(index)
        index = (size - 1) - ops.abs((size - 1) - index)
    else:
        index = ops.where(index < 0, -1 - index, index)
        index = ops.where(index > size - 1, 2 * size - 1 - index, index)
    return ops.clip(index, 0, size - 1)


def _axis_positions(offsets, flips, crop: int):
    """Position of every output pixel of each window along one axis: (M, crop) float32.

    Output pixel i of a window at offset o sits at o + i; a mirrored window reads them backwards."""
    steps = ops.arange(crop, dtype="float32")
    start = ops.cast(offsets, "float32")[:, None]
    position = start + steps[None, :]
    if flips is not None:
        position = ops.where(flips[:, None], start + (crop - 1 - steps)[None, :], position)
    return position


def _resize_taps(position, size: int, resize: int):
    """Lower source index, upper index and upper weight of the two bilinear taps.

    Pixel centres of the resized image map back to source position (p + 0.5) * size / resize -
    0.5, clamped to the image: half-pixel centres and edge clamping, exactly as tf.image.resize
    (and the same float expression as cifarkit.augment, so results agree to the last bits)."""
    position = ops.clip((position + 0.5) * size / resize - 0.5, 0.0, size - 1.0)
    low = ops.clip(ops.floor(position), 0.0, max(size - 2, 0))
    weight = position - low
    low = ops.cast(low, "int32")
    return low, ops.minimum(low + 1, size - 1), weight


def _take_rows(images, index):
    """images (M, H, W, C), index (M, K) into each image's rows -> (M, K, W, C).

    One gather of whole rows from the images stacked as (M * H, W * C): each index copies a
    contiguous row, which every backend does fast (an element-wise take_along_axis made JAX
    and PyTorch gather each value on its own, 7-15x slower at 227x227)."""
    height, width, channels = int(images.shape[1]), int(images.shape[2]), int(images.shape[3])
    count = int(index.shape[1])
    first = ops.arange(ops.shape(images)[0], dtype="int32") * height  # row 0 of every image
    rows = ops.reshape(ops.cast(index, "int32") + first[:, None], (-1,))
    out = ops.take(ops.reshape(images, (-1, width * channels)), rows, axis=0)
    return ops.reshape(out, (-1, count, width, channels))


def _swap_axes(images):
    """(M, A, B, C) -> (M, B, A, C): columns become rows, so one row gather serves both axes."""
    return ops.transpose(images, (0, 2, 1, 3))


def crop_windows(images, offsets, flips, *, resize: int | None, crop: int, box_indices=None, pad: int = 0,
                 pad_mode: str = "REFLECT"):  # fmt: skip
    """Windows of ``crop`` x ``crop`` from float images virtually resized to ``resize`` x ``resize``
    (or, with ``resize=None``, padded by ``pad`` pixels of ``pad_mode``), as
    :func:`cifarkit.augment.crop_windows`. ``box_indices`` (M,) picks the image of each window."""
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {', '.join(PAD_MODES)}. Received: pad_mode={pad_mode!r}")
    images = ops.convert_to_tensor(images)
    if box_indices is not None:
        images = ops.take(images, box_indices, axis=0)
    height, width = int(images.shape[1]), int(images.shape[2])
    rows = _axis_positions(offsets[:, 0], None, crop)
    cols = _axis_positions(offsets[:, 1], flips, crop)
    if resize is None:
        # Whole-pixel windows: one tap per axis. Reflections are read through by index
        # arithmetic, with no padded copy (and torch's "symmetric" pad would be "replicate").
        rows, cols = ops.cast(rows, "int32"), ops.cast(cols, "int32")
        if pad and pad_mode == "CONSTANT":
            images = ops.pad(images, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
        elif pad:
            rows, cols = _reflect(rows - pad, height, pad_mode), _reflect(cols - pad, width, pad_mode)
        return _take_rows(_swap_axes(_take_rows(_swap_axes(images), cols)), rows)
    # Columns first, from the small image: the swaps then move small tensors only, and the last
    # gathers write the (M, crop, crop, C) output directly. Bilinear weights are separable, so
    # the order changes nothing but float rounding.
    row_low, row_high, row_w = _resize_taps(rows, height, resize)
    col_low, col_high, col_w = _resize_taps(cols, width, resize)
    col_w, row_w = col_w[:, :, None, None], row_w[:, :, None, None]
    # (1 - w) * a + w * b (rather than a + w * (b - a)) is exact at w = 0 and w = 1.
    swapped = _swap_axes(images)
    band = _take_rows(swapped, col_low) * (1.0 - col_w) + _take_rows(swapped, col_high) * col_w  # (M, crop, H, C)
    band = _swap_axes(band)  # (M, H, crop, C)
    return _take_rows(band, row_low) * (1.0 - row_w) + _take_rows(band, row_high) * row_w


def draw_views(seed_generator, batch, span: int, crop: int, flip: bool, pca_sigma: float = 0.0) -> Draw:
    """Uniform window corners in [0, span - crop], mirrors with p = 0.5 (if ``flip``), and
    alpha ~ N(0, pca_sigma) per image and channel (if ``pca_sigma``), from a SeedGenerator."""
    offsets = keras.random.randint((batch, 2), 0, span - crop + 1, dtype="int32", seed=seed_generator)
    if flip:
        flips = keras.random.uniform((batch,), seed=seed_generator) < 0.5
    else:
        flips = ops.zeros((batch,), "bool")
    alpha = keras.random.normal((batch, 3), stddev=pca_sigma, seed=seed_generator) if pca_sigma else None
    return Draw(offsets, flips, alpha)


def centre_draw(batch, span: int, crop: int) -> Draw:
    corner = (span - crop) // 2
    return Draw(ops.full((batch, 2), corner, "int32"), ops.zeros((batch,), "bool"))


def ten_crop_draw(batch, span: int, crop: int) -> tuple[Draw, object]:
    """The paper's test-time windows for every image (image-major: image 0's ten, then image
    1's), and the index of each window's image."""
    far, mid = span - crop, (span - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)] * 2
    offsets = ops.tile(ops.convert_to_tensor(corners, "int32"), (batch, 1))
    flips = ops.tile(ops.convert_to_tensor([False] * 5 + [True] * 5), (batch,))
    return Draw(offsets, flips), ops.repeat(ops.arange(batch, dtype="int32"), TEN_CROPS)


def colour_offsets(alpha, eigenvalues, eigenvectors):
    """``P @ (alpha * lambda)`` per image: (N, 3), to add to every pixel (Krizhevsky et al. 2012,
    section 4.1), with eigenvectors as columns of P, for pixel values on the [0, 1] scale."""
    values = ops.convert_to_tensor(eigenvalues, "float32")
    vectors = ops.convert_to_tensor(eigenvectors, "float32")
    return ops.matmul(alpha * values, ops.transpose(vectors))


def views(recipe, stats, images, draw: Draw, box_indices=None):
    """uint8 images (N, H, W, 3) -> float32 (M, crop, crop, 3): windows, jitter, normalisation.

    The colour offset, the mean and the std act per image and channel, and bilinear weights sum
    to one, so they are applied to the small source images (N, 32, 32, 3) before the windows
    are sampled: the (N, 227, 227, 3) output is then written once, by the last gather, instead
    of being read and rewritten by every step (2-3x faster off XLA). The result differs from
    the host path's order of steps by float rounding only."""
    unit = to_unit(images)
    if box_indices is not None:
        unit = ops.take(unit, box_indices, axis=0)
    if recipe.pad and recipe.pad_mode == "CONSTANT":
        # Zeros are padded on the [0, 1] scale, before the shift, as the host path pads them.
        pad = recipe.pad
        unit = ops.pad(unit, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
        recipe = dataclasses.replace(recipe, pad=0)
    shift = -ops.convert_to_tensor(stats.mean, "float32")[None, :]
    if draw.alpha is not None:
        shift = shift + colour_offsets(draw.alpha, stats.eigenvalues, stats.eigenvectors)
    shifted = unit + shift[:, None, None, :]
    if recipe.standardize:
        shifted = shifted / ops.convert_to_tensor(stats.std, "float32")
    return crop_windows(shifted, draw.offsets, draw.flips, resize=recipe.resize, crop=recipe.crop, pad=recipe.pad,
                        pad_mode=recipe.pad_mode)  # fmt: skip


def eval_views(recipe, stats, images):
    """The centre window of every image, as :func:`cifarkit.recipes.eval_transform`."""
    draw = centre_draw(ops.shape(images)[0], source_span(recipe, images.shape[1]), recipe.crop)
    return views(recipe, stats, images, draw)


def ten_crop_views(recipe, stats, images):
    """(N, 10, crop, crop, 3): corners, centre and mirrors, as :func:`cifarkit.recipes.ten_crop_transform`."""
    batch = ops.shape(images)[0]
    draw, box_indices = ten_crop_draw(batch, source_span(recipe, images.shape[1]), recipe.crop)
    out = views(recipe, stats, images, draw, box_indices)
    return ops.reshape(out, (-1, TEN_CROPS, recipe.crop, recipe.crop, 3))
