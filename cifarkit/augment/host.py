"""Augmentations as pure tensor functions on batches of images (N, H, W, 3).

Every random step takes an explicit ``seed`` (an int tensor of shape [2]) and uses TensorFlow's
stateless random ops, so one seed gives one result whether the function runs eagerly, inside
``Dataset.map`` on the host, or inside a training step on the accelerator.

The central op is :func:`crop_windows`: "resize to R x R, then cut a c x c window (mirrored or
not)" computed straight from the small image for a whole batch. Resizing 32x32 CIFAR images to
256x256 first would make 65,536 pixels per image only to throw a fifth of them away and copy the
rest twice (crop, flip); sampling the window directly gives the same bilinear values (see
:func:`reference_resize_crop` and its test), and a mirror is just the columns read backwards.
"""

from __future__ import annotations

import tensorflow as tf

from .geometry import PendingGeometry


def to_unit(images: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; the scale every step after this one works in."""
    return tf.cast(images, tf.float32) / 255.0


def split_seed(seed: tf.Tensor, n: int) -> list[tf.Tensor]:
    """``n`` independent seeds from one, so each random step draws from its own stream."""
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=n)
    return [seeds[i] for i in range(n)]


def _taps(offsets: tf.Tensor, flips: tf.Tensor | None, size, crop: int, resize: int | None, length):
    """Source index and weight of the two bilinear taps for every output pixel along one axis.

    Output pixel i of a window at offset o sits at o + i in the (virtually) resized image, whose
    pixel centres map back to source position (o + i + 0.5) * size / resize - 0.5, clamped to
    the image (half-pixel centres and edge clamping, exactly as ``tf.image.resize``). Without a
    resize the position is o + i itself, in the padded image. A mirrored window reads its
    positions in reverse order.
    """
    steps = tf.range(crop, dtype=tf.float32)
    start = tf.cast(offsets, tf.float32)[:, None]
    position = start + steps[None, :]
    if flips is not None:
        position = tf.where(flips[:, None], start + (crop - 1 - steps)[None, :], position)
    if resize is not None:
        size = tf.cast(size, tf.float32)
        position = tf.clip_by_value((position + 0.5) * size / resize - 0.5, 0.0, size - 1.0)
    last = tf.cast(length, tf.float32) - 2.0  # the lower tap of the last pair
    low = tf.clip_by_value(tf.floor(position), 0.0, tf.maximum(last, 0.0))
    return tf.cast(low, tf.int32), position - low


def crop_windows(
    images: tf.Tensor,
    offsets: tf.Tensor,
    flips: tf.Tensor,
    *,
    resize: int | None,
    crop: int,
    box_indices: tf.Tensor | None = None,
    pad: int = 0,
    pad_mode: str = "REFLECT",
) -> tf.Tensor:
    """Windows of ``crop`` x ``crop`` from each image virtually resized to ``resize`` x ``resize``.

    ``offsets`` (M, 2) are the windows' top-left corners in resized pixels, ``flips`` (M,) bool
    mirrors a window, ``box_indices`` (M,) picks the image of each window (default: one window
    per image). With ``resize=None`` windows are cut from the image as it is, with ``pad``
    pixels of ``pad_mode`` padding around it (the CIFAR recipe's reflect padding).

    Bilinear resizing is separable: rows first (a small (M, crop, W, 3) tensor), then columns,
    each a pair of gathers and a weighted sum. Under XLA the whole thing, and any per-pixel
    arithmetic that follows, fuses into one loop that writes each output value once; that is
    what makes a batched 227x227 float crop cheaper than the per-image resize-crop-flip chain.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.float32:
        images = tf.cast(images, tf.float32)
    if box_indices is not None:
        images = tf.gather(images, box_indices)
    if resize is None and pad:
        images = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode=pad_mode)
    shape = tf.shape(images)
    offsets = tf.convert_to_tensor(offsets)
    rows, row_w = _taps(offsets[:, 0], None, shape[1], crop, resize, shape[1])
    cols, col_w = _taps(offsets[:, 1], tf.convert_to_tensor(flips), shape[2], crop, resize, shape[2])
    row_w = row_w[:, :, None, None]
    # (1 - w) * a + w * b (rather than a + w * (b - a)) is exact at w = 0 and w = 1, so plain
    # crops copy pixels bit for bit.
    upper = tf.gather(images, rows, axis=1, batch_dims=1)
    lower = tf.gather(images, rows + 1, axis=1, batch_dims=1)
    band = upper * (1.0 - row_w) + lower * row_w  # (M, crop, W, 3)
    col_w = col_w[:, None, :, None]
    left = tf.gather(band, cols, axis=2, batch_dims=1)
    right = tf.gather(band, cols + 1, axis=2, batch_dims=1)
    return left * (1.0 - col_w) + right * col_w


def _box_taps(start, extent, flips, size: int):
    """Lower source index, upper index and upper weight along one axis of boxes (start, extent)
    resized to ``size``: half-pixel centres clamped to the box, as tf.image.resize of the box."""
    steps = tf.range(size, dtype=tf.float32)[None, :]
    if flips is not None:
        steps = tf.where(flips[:, None], size - 1 - steps, steps)
    extent = tf.cast(extent, tf.float32)[:, None]
    position = tf.clip_by_value((steps + 0.5) * extent / size - 0.5, 0.0, extent - 1.0)
    weight = position - tf.floor(position)
    start = tf.cast(start, tf.int32)[:, None]
    low = tf.cast(tf.floor(position), tf.int32) + start
    return low, tf.minimum(low + 1, start + tf.cast(extent, tf.int32) - 1), weight


def box_windows(images: tf.Tensor, boxes: tf.Tensor, size: int, flips: tf.Tensor | None = None) -> tf.Tensor:
    """Each image's box (top, left, height, width) resized to ``size`` x ``size`` (bilinear, no
    antialiasing), mirrored where ``flips``: a random-resized crop sampled in one pass."""
    images = tf.cast(images, tf.float32)
    row_low, row_high, row_w = _box_taps(boxes[:, 0], boxes[:, 2], None, size)
    col_low, col_high, col_w = _box_taps(boxes[:, 1], boxes[:, 3], flips, size)
    row_w, col_w = row_w[:, :, None, None], col_w[:, None, :, None]
    band = tf.gather(images, row_low, axis=1, batch_dims=1) * (1.0 - row_w)
    band += tf.gather(images, row_high, axis=1, batch_dims=1) * row_w
    left = tf.gather(band, col_low, axis=2, batch_dims=1)
    return left * (1.0 - col_w) + tf.gather(band, col_high, axis=2, batch_dims=1) * col_w


def random_boxes(seed: tf.Tensor, batch, span, scale, ratio, attempts: int) -> tf.Tensor:
    """Boxes (batch, 4) int32 of a random-resized crop in a ``span`` x ``span`` image: area a
    uniform ``scale`` share of the image, aspect log-uniform in ``ratio``, the first of
    ``attempts`` draws that fits, else the whole image; the corner uniform where it fits."""
    draws = tf.random.stateless_uniform([batch, attempts, 4], seed)
    return boxes_from_draws(draws, span, scale, ratio)


def boxes_from_draws(draws: tf.Tensor, span, scale, ratio) -> tf.Tensor:
    span = tf.cast(span, tf.float32)
    area = span * span * (scale[0] + draws[..., 0] * (scale[1] - scale[0]))
    log_low, log_high = tf.math.log(float(ratio[0])), tf.math.log(float(ratio[1]))
    aspect = tf.exp(log_low + draws[..., 1] * (log_high - log_low))
    height, width = tf.round(tf.sqrt(area / aspect)), tf.round(tf.sqrt(area * aspect))
    fits = (height >= 1) & (width >= 1) & (height <= span) & (width <= span)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1, output_type=tf.int32)[:, None]
    found = tf.reduce_any(fits, axis=1)
    height = tf.where(found, tf.gather(height, first, batch_dims=1)[:, 0], span)
    width = tf.where(found, tf.gather(width, first, batch_dims=1)[:, 0], span)
    corner = tf.gather(draws[..., 2:], first, batch_dims=1)[:, 0]  # (batch, 2)
    top = tf.minimum(tf.floor(corner[:, 0] * (span - height + 1)), span - height)
    left = tf.minimum(tf.floor(corner[:, 1] * (span - width + 1)), span - width)
    return tf.cast(tf.stack([top, left, height, width], axis=1), tf.int32)


def centre_boxes(batch, span, fraction: float) -> tf.Tensor:
    """The central square box of side ``fraction`` of ``span`` for every image (evaluation)."""
    side = tf.maximum(tf.round(tf.cast(span, tf.float32) * fraction), 1.0)
    corner = tf.floor((tf.cast(span, tf.float32) - side) / 2)
    return tf.cast(tf.tile(tf.stack([corner, corner, side, side])[None], [batch, 1]), tf.int32)


def random_offsets(seed: tf.Tensor, batch: tf.Tensor, span, crop: int) -> tf.Tensor:
    """Uniform window corners (batch, 2) in [0, span - crop]."""
    return tf.random.stateless_uniform([batch, 2], seed, minval=0, maxval=span - crop + 1, dtype=tf.int32)


def random_flips(seed: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
    """Mirror flags (batch,) with p = 0.5."""
    return tf.random.stateless_uniform([batch], seed) < 0.5


def centre_windows(batch: tf.Tensor, span: int, crop: int) -> tuple[tf.Tensor, tf.Tensor]:
    corner = (span - crop) // 2
    return tf.fill([batch, 2], corner), tf.zeros([batch], tf.bool)


def ten_crop_windows(span, crop: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The paper's test-time windows: four corners and the centre, then the same five mirrored."""
    far = tf.cast(span - crop, tf.int32)
    mid = far // 2
    zero = tf.zeros_like(far)
    corners = tf.stack([tf.stack(c) for c in [(zero, zero), (zero, far), (far, zero), (far, far), (mid, mid)]])
    return tf.concat([corners, corners], axis=0), tf.constant([False] * 5 + [True] * 5)


def pca_jitter(images: tf.Tensor, seed: tf.Tensor, eigenvalues, eigenvectors, sigma: float) -> tf.Tensor:
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


def cutout(images: tf.Tensor, corners: tf.Tensor, size: int) -> tf.Tensor:
    """Each image (N, H, W, C) with the ``size`` x ``size`` square at its corner (N, 2) set to 0."""
    rows = tf.range(tf.shape(images)[1])[None, :]
    cols = tf.range(tf.shape(images)[2])[None, :]
    top, left = corners[:, :1], corners[:, 1:]
    hole = ((rows >= top) & (rows < top + size))[:, :, None] & ((cols >= left) & (cols < left + size))[:, None, :]
    return tf.where(hole[..., None], tf.zeros_like(images), images)


def normalize(images: tf.Tensor, mean, std=None) -> tf.Tensor:
    """Subtract the training mean (paper) and, if ``std`` is given, divide by it (CIFAR recipe)."""
    out = images - tf.constant(mean, tf.float32)
    if std is not None:
        out = out / tf.constant(std, tf.float32)
    return out


def denormalize(images: tf.Tensor, mean, std=None) -> tf.Tensor:
    """:func:`normalize` undone: back to [0, 1] colours, for showing a view to a person."""
    out = images if std is None else images * tf.constant(std, tf.float32)
    return out + tf.constant(mean, tf.float32)


def reference_resize_crop(images: tf.Tensor, offsets, flips, *, resize: int, crop: int) -> tf.Tensor:
    """The textbook path, kept for tests and the benchmark: resize, crop, flip, one image at a time."""
    big = tf.image.resize(tf.cast(images, tf.float32), [resize, resize], method="bilinear")
    out = []
    for i in range(int(images.shape[0])):
        window = tf.image.crop_to_bounding_box(big[i], int(offsets[i][0]), int(offsets[i][1]), crop, crop)
        out.append(tf.image.flip_left_right(window) if bool(flips[i]) else window)
    return tf.stack(out)


class HostBatch(PendingGeometry):
    """A batch on its way through a recipe's ops (:mod:`cifarkit.augment.ops`) on the host; its
    geometry is recorded and sampled once (:class:`~cifarkit.augment.geometry.PendingGeometry`)."""

    def __init__(self, images, stats, mode: str, seed=None, epoch=None):
        self.stats, self.mode = stats, mode
        self._seed, self._splits = seed, {}
        self.epoch = tf.constant(0, tf.int64) if epoch is None else tf.cast(epoch, tf.int64)
        self._source = to_unit(images)
        height = images.shape[1]
        super().__init__(self._source, tf.shape(images)[0], height if height is not None else tf.shape(images)[1])

    @property
    def image_bits(self) -> tf.Tensor:
        """One fixed bit per source image (int32 0/1): the parity of the sum of its uint8 pixels."""
        pixels = tf.cast(tf.round(self._source * 255.0), tf.int32)
        return tf.math.floormod(tf.reduce_sum(pixels, axis=[1, 2, 3]), 2)

    def _reset(self, span) -> None:
        super()._reset(span)
        self.box_indices = None  # ten windows per image read image i from box i // 10

    def seed(self, path: tuple[int, ...]) -> tf.Tensor:
        """The seed at ``path`` of the tree in which every level splits a seed in two."""
        parent = path[:-1]
        if parent not in self._splits:
            self._splits[parent] = split_seed(self._seed if not parent else self.seed(parent), 2)
        return self._splits[parent][path[-1]]

    def set_ten_windows(self, crop: int, corners, flips) -> None:
        """Ten windows per image, image-major (image 0's ten, then image 1's)."""
        batch = self.count
        self.set_window(crop, tf.tile(corners, [batch, 1]))
        self.flips = tf.tile(flips, [batch])
        self.box_indices = tf.repeat(tf.range(batch), 10)
        self.count = batch * 10

    def _sample(self, crop: int, offsets, flips) -> tf.Tensor:
        return crop_windows(
            self._pixels,
            offsets,
            flips,
            resize=self.resize,
            crop=crop,
            box_indices=self.box_indices,
            pad=self.pad,
            pad_mode=self.pad_mode,
        )

    def _zeros(self, shape, dtype: str) -> tf.Tensor:
        return tf.zeros(shape, dtype)

    def _not_equal(self, a, b) -> tf.Tensor:
        return tf.not_equal(a, b)


def run_ops(steps, stats, images, mode: str, seed=None, epoch=None) -> tf.Tensor:
    """uint8 images -> float32 through ``steps`` (ops of cifarkit.augment.ops) in ``mode``
    ("train" needs ``seed``, an int tensor [2]; "eval"; "ten_crop"); ``epoch`` (0 if None) for
    the ops that depend on it (alt_flip)."""
    batch = HostBatch(images, stats, mode, seed, epoch)
    for op in steps:
        op.host(batch)
    return batch.pixels()
