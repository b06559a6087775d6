"""Augmentations as pure tensor functions on batches of images (N, H, W, 3).

Every random step takes an explicit ``seed`` (an int tensor of shape [2]) and uses TensorFlow's
stateless random ops, so one seed gives one result whether the function runs eagerly, inside
``Dataset.map`` on the host, or inside a training step on the accelerator.

The central op is :func:`crop_windows`: "resize to R x R, then cut a c x c window (mirrored or
not)" done as a single ``tf.image.crop_and_resize`` per batch. Resizing 32x32 CIFAR images to
256x256 first would make 65,536 pixels per image only to throw four fifths away; sampling the
window straight from the small image computes exactly the same bilinear values (see
:func:`reference_resize_crop` and its test) at a fraction of the cost, and a mirror is just a box
with its x edges swapped.
"""

from __future__ import annotations

import tensorflow as tf

# The AlexNet paper's colour jitter draws alpha ~ N(0, 0.1) per image and per presentation.
PCA_SIGMA = 0.1


def to_unit(images: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; the scale every step after this one works in."""
    return tf.cast(images, tf.float32) / 255.0


def split_seed(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    """``n`` independent seeds from one, so each random step draws from its own stream."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n)
    return [seeds[i] for i in range(n)]


def _window_boxes(size_hw, resize: int, crop: int, offsets: tf.Tensor, flips: tf.Tensor, pad: int) -> tf.Tensor:
    """Normalised crop_and_resize boxes for windows of a virtual ``resize`` x ``resize`` image.

    Output pixel i of a window at offset o sits at o + i in the resized image, whose pixel
    centres map back to source row (o + i + 0.5) * H / R - 0.5 (half-pixel centres, as
    ``tf.image.resize`` uses). The source was padded by ``pad`` pixels on each side, so the
    padded row is that plus ``pad``, normalised by (H + 2 * pad - 1).
    """
    h = tf.cast(size_hw[0], tf.float32)
    w = tf.cast(size_hw[1], tf.float32)
    offsets = tf.cast(offsets, tf.float32)
    first, last = offsets + 0.5, offsets + crop - 0.5  # (N, 2): y, x of first and last pixel
    scale = tf.stack([h, w]) / resize
    y0 = (first[:, 0] * scale[0] - 0.5 + pad) / (h + 2 * pad - 1)
    y1 = (last[:, 0] * scale[0] - 0.5 + pad) / (h + 2 * pad - 1)
    x0 = (first[:, 1] * scale[1] - 0.5 + pad) / (w + 2 * pad - 1)
    x1 = (last[:, 1] * scale[1] - 0.5 + pad) / (w + 2 * pad - 1)
    # A box whose x edges are swapped samples right to left: the mirror image.
    left = tf.where(flips, x1, x0)
    right = tf.where(flips, x0, x1)
    return tf.stack([y0, left, y1, right], axis=1)


def crop_windows(images: tf.Tensor, offsets: tf.Tensor, flips: tf.Tensor, *, resize: int | None, crop: int,
                 box_indices: tf.Tensor | None = None, pad_mode: str = "SYMMETRIC", pad: int | None = None) -> tf.Tensor:
    """Windows of ``crop`` x ``crop`` from each image virtually resized to ``resize`` x ``resize``.

    ``offsets`` (M, 2) are the windows' top-left corners in resized pixels, ``flips`` (M,) bool
    mirrors a window, ``box_indices`` (M,) picks the image of each window (default: one window
    per image). With ``resize=None`` the windows are cut from the image as it is (and ``pad``
    pixels of ``pad_mode`` padding, as the CIFAR recipe's reflect padding, lie around it).

    Edge padding by one pixel makes the bilinear samples just outside the image equal the edge
    pixel, as ``tf.image.resize`` clamps, instead of crop_and_resize's zero extrapolation.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    shape = tf.shape(images)
    if resize is None:
        pad = pad or 0
        resize_h, resize_w = shape[1] + 2 * pad, shape[2] + 2 * pad
        padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode=pad_mode) if pad else images
        boxes = _identity_boxes(resize_h, resize_w, crop, offsets, flips)
    else:
        padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        boxes = _window_boxes(shape[1:3], resize, crop, offsets, flips, 1)
    if box_indices is None:
        box_indices = tf.range(tf.shape(offsets)[0])
    return tf.image.crop_and_resize(padded, boxes, tf.cast(box_indices, tf.int32), [crop, crop], method="bilinear")


def _identity_boxes(height, width, crop: int, offsets: tf.Tensor, flips: tf.Tensor) -> tf.Tensor:
    """Boxes that sample pixels o .. o + crop - 1 exactly (no resize)."""
    h = tf.cast(height, tf.float32) - 1.0
    w = tf.cast(width, tf.float32) - 1.0
    offsets = tf.cast(offsets, tf.float32)
    y0, x0 = offsets[:, 0] / h, offsets[:, 1] / w
    y1, x1 = (offsets[:, 0] + crop - 1) / h, (offsets[:, 1] + crop - 1) / w
    return tf.stack([y0, tf.where(flips, x1, x0), y1, tf.where(flips, x0, x1)], axis=1)


def random_windows(seed: tf.Tensor, batch: tf.Tensor, span: int, crop: int, flip: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """Uniform window corners in [0, span - crop] and, if ``flip``, mirror flags with p = 0.5."""
    crop_seed, flip_seed = split_seed(seed, 2)
    offsets = tf.random.stateless_uniform([batch, 2], crop_seed, minval=0, maxval=span - crop + 1, dtype=tf.int32)
    if flip:
        flips = tf.random.stateless_uniform([batch], flip_seed) < 0.5
    else:
        flips = tf.zeros([batch], tf.bool)
    return offsets, flips


def centre_windows(batch: tf.Tensor, span: int, crop: int) -> tuple[tf.Tensor, tf.Tensor]:
    corner = (span - crop) // 2
    return tf.fill([batch, 2], corner), tf.zeros([batch], tf.bool)


def ten_crop_windows(span: int, crop: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The paper's test-time windows: four corners and the centre, then the same five mirrored."""
    far, mid = span - crop, (span - crop) // 2
    corners = [[0, 0], [0, far], [far, 0], [far, far], [mid, mid]]
    offsets = tf.constant(corners + corners, tf.int32)
    flips = tf.constant([False] * 5 + [True] * 5)
    return offsets, flips


def pca_jitter(images: tf.Tensor, seed: tf.Tensor, eigenvalues, eigenvectors, sigma: float = PCA_SIGMA) -> tf.Tensor:
    """Adds ``P @ (alpha * lambda)`` to every pixel, one ``alpha ~ N(0, sigma)`` triple per image.

    ``eigenvectors`` holds the eigenvectors p_i of the RGB covariance as columns and
    ``eigenvalues`` their lambda_i, both for pixel values on the [0, 1] scale: at that scale the
    paper's formula moves an image by a few intensity levels, as intended.
    """
    batch = tf.shape(images)[0]
    alpha = tf.random.stateless_normal([batch, 3], seed, stddev=sigma)
    values = tf.constant(eigenvalues, tf.float32)
    vectors = tf.constant(eigenvectors, tf.float32)
    offsets = tf.matmul(alpha * values, vectors, transpose_b=True)  # (N, 3): sum_i alpha_i l_i p_i
    return images + offsets[:, None, None, :]


def normalize(images: tf.Tensor, mean, std=None) -> tf.Tensor:
    """Subtract the training mean (paper) and, if ``std`` is given, divide by it (CIFAR recipe)."""
    out = images - tf.constant(mean, tf.float32)
    if std is not None:
        out = out / tf.constant(std, tf.float32)
    return out


def resize_shorter_centre(image: tf.Tensor, size: int) -> tf.Tensor:
    """One image of any size: shorter side to ``size``, then the central ``size`` x ``size``.

    This is the paper's treatment of ImageNet's variable-resolution images; for folder trees it
    runs per image in the reader so that batches have one shape.
    """
    shape = tf.shape(image)
    h, w = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = size / tf.minimum(h, w)
    new_h = tf.maximum(size, tf.cast(tf.round(h * scale), tf.int32))
    new_w = tf.maximum(size, tf.cast(tf.round(w * scale), tf.int32))
    resized = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    out = resized[top : top + size, left : left + size, :]
    return tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8)


def reference_resize_crop(images: tf.Tensor, offsets, flips, *, resize: int, crop: int) -> tf.Tensor:
    """The textbook path, kept for tests and the benchmark: resize, crop, flip, one image at a time."""
    big = tf.image.resize(tf.cast(images, tf.float32), [resize, resize], method="bilinear")
    out = []
    for i in range(int(images.shape[0])):
        window = tf.image.crop_to_bounding_box(big[i], int(offsets[i][0]), int(offsets[i][1]), crop, crop)
        out.append(tf.image.flip_left_right(window) if bool(flips[i]) else window)
    return tf.stack(out)
