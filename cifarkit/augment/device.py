"""The recipes' transforms in ``keras.ops``: the augmentation a model runs on its accelerator,
on any Keras backend (TensorFlow, JAX, PyTorch).

The arithmetic is that of :mod:`cifarkit.augment.host`, the TensorFlow host path: a window of a
virtually resized (or padded) image sampled straight from the small image with two-tap separable
bilinear weights, a mirror read as columns backwards, the PCA colour jitter as one RGB offset per
image, then the mean (and std) taken off. Seed-independent views (the centre window, the ten
crops) agree with the host path to float rounding; random views have the same distribution but
not the same draws (TensorFlow's stateless random streams exist on no other backend).

The recipe's ops (:mod:`cifarkit.augment.ops`) run on a :class:`DeviceBatch`. Random draws are
separate from the arithmetic: :func:`draw_ops` takes a Keras ``SeedGenerator`` and returns each
op's random choice for a batch (window corners, mirror flags, jitter weights), and
:func:`run_ops` turns those into images. Tests check each half on its own.
"""

from __future__ import annotations

from keras import ops

from .geometry import PendingGeometry

TEN_CROPS = 10  # four corners and the centre, and their mirrors


def to_unit(images):
    """uint8 [0, 255] -> float32 [0, 1]; the scale every step after this one works in."""
    return ops.cast(images, "float32") / 255.0


def _reflect(index, size: int, pad_mode: str):
    """Indices into a padded axis mapped back to the image's own pixels (REFLECT repeats no
    edge pixel, SYMMETRIC repeats it), as tf.pad would have filled the padding."""
    if pad_mode == "REFLECT":
        index = ops.abs(index)
        index = (size - 1) - ops.abs((size - 1) - index)
    elif pad_mode != "SYMMETRIC":
        raise ValueError(f"pad_mode must be REFLECT, SYMMETRIC or CONSTANT. Received: pad_mode={pad_mode!r}")
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
    (and the same float expression as cifarkit.augment.host, so results agree to the last bits)."""
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


def crop_windows(
    images, offsets, flips, *, resize: int | None, crop: int, box_indices=None, pad: int = 0, pad_mode: str = "REFLECT"
):
    """Windows of ``crop`` x ``crop`` from float images virtually resized to ``resize`` x ``resize``
    (or, with ``resize=None``, padded by ``pad`` pixels of ``pad_mode``), as
    :func:`cifarkit.augment.host.crop_windows`. ``box_indices`` (M,) picks the image of each window."""
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


def _box_taps(start, extent, flips, size: int):
    """As :func:`cifarkit.augment.host._box_taps`: the taps of boxes resized to ``size``."""
    steps = ops.arange(size, dtype="float32")[None, :]
    if flips is not None:
        steps = ops.where(flips[:, None], size - 1 - steps, steps)
    extent = ops.cast(extent, "float32")[:, None]
    position = ops.clip((steps + 0.5) * extent / size - 0.5, 0.0, extent - 1.0)
    weight = position - ops.floor(position)
    start = ops.cast(start, "int32")[:, None]
    low = ops.cast(ops.floor(position), "int32") + start
    return low, ops.minimum(low + 1, start + ops.cast(extent, "int32") - 1), weight


def box_windows(images, boxes, size: int, flips=None):
    """Each image's box (top, left, height, width) resized to ``size`` x ``size``, mirrored where
    ``flips``, as :func:`cifarkit.augment.host.box_windows`."""
    images = ops.convert_to_tensor(images)
    row_low, row_high, row_w = _box_taps(boxes[:, 0], boxes[:, 2], None, size)
    col_low, col_high, col_w = _box_taps(boxes[:, 1], boxes[:, 3], flips, size)
    row_w, col_w = row_w[:, :, None, None], col_w[:, :, None, None]
    swapped = _swap_axes(images)
    band = _take_rows(swapped, col_low) * (1.0 - col_w) + _take_rows(swapped, col_high) * col_w  # (M, size, H, C)
    band = _swap_axes(band)
    return _take_rows(band, row_low) * (1.0 - row_w) + _take_rows(band, row_high) * row_w


def boxes_from_draws(draws, span: int, scale, ratio):
    """As :func:`cifarkit.augment.host.boxes_from_draws`: boxes from uniform draws (N, attempts, 4)."""
    import math

    area = span * span * (scale[0] + draws[..., 0] * (scale[1] - scale[0]))
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = ops.exp(log_low + draws[..., 1] * (log_high - log_low))
    height, width = ops.round(ops.sqrt(area / aspect)), ops.round(ops.sqrt(area * aspect))
    fits = (height >= 1) & (width >= 1) & (height <= span) & (width <= span)
    first = ops.argmax(ops.cast(fits, "int32"), axis=1)[:, None]
    found = ops.any(fits, axis=1)
    height = ops.where(found, ops.take_along_axis(height, first, axis=1)[:, 0], float(span))
    width = ops.where(found, ops.take_along_axis(width, first, axis=1)[:, 0], float(span))
    top = ops.minimum(
        ops.floor(ops.take_along_axis(draws[..., 2], first, axis=1)[:, 0] * (span - height + 1)), span - height
    )
    left = ops.minimum(
        ops.floor(ops.take_along_axis(draws[..., 3], first, axis=1)[:, 0] * (span - width + 1)), span - width
    )
    return ops.cast(ops.stack([top, left, height, width], axis=1), "int32")


def centre_boxes(count, span: int, fraction: float):
    side = max(round(span * fraction), 1)
    corner = (span - side) // 2
    return ops.tile(ops.convert_to_tensor([[corner, corner, side, side]], "int32"), (count, 1))


def centre_windows(count, span: int, crop: int):
    """The centre window's corner for each of ``count`` images: (count, 2) int32."""
    return ops.full((count, 2), (span - crop) // 2, "int32")


def ten_crop_windows(count, span: int, crop: int):
    """The paper's test-time windows for every image (image-major: image 0's ten, then image
    1's): corners (10 count, 2), mirror flags, and the index of each window's image."""
    far, mid = span - crop, (span - crop) // 2
    corners = [(0, 0), (0, far), (far, 0), (far, far), (mid, mid)] * 2
    offsets = ops.tile(ops.convert_to_tensor(corners, "int32"), (count, 1))
    flips = ops.tile(ops.convert_to_tensor([False] * 5 + [True] * 5), (count,))
    return offsets, flips, ops.repeat(ops.arange(count, dtype="int32"), TEN_CROPS)


def colour_offsets(alpha, eigenvalues, eigenvectors):
    """``P @ (alpha * lambda)`` per image: (N, 3), to add to every pixel (Krizhevsky et al. 2012,
    section 4.1), with eigenvectors as columns of P, for pixel values on the [0, 1] scale."""
    values = ops.convert_to_tensor(eigenvalues, "float32")
    vectors = ops.convert_to_tensor(eigenvectors, "float32")
    return ops.matmul(alpha * values, ops.transpose(vectors))


def cutout(images, corners, size: int):
    """As :func:`cifarkit.augment.host.cutout`: the ``size`` x ``size`` square at each image's
    corner (N, 2) set to 0."""
    rows = ops.arange(int(images.shape[1]), dtype="int32")[None, :]
    cols = ops.arange(int(images.shape[2]), dtype="int32")[None, :]
    corners = ops.cast(corners, "int32")
    top, left = corners[:, :1], corners[:, 1:]
    in_rows = ops.logical_and(rows >= top, rows < top + size)
    in_cols = ops.logical_and(cols >= left, cols < left + size)
    hole = ops.logical_and(in_rows[:, :, None], in_cols[:, None, :])
    return ops.where(hole[..., None], ops.zeros_like(images), images)


class DeviceBatch(PendingGeometry):
    """A batch on its way through a recipe's ops (:mod:`cifarkit.augment.ops`) in ``keras.ops``.

    As on the host, geometry is recorded and sampled once
    (:class:`~cifarkit.augment.geometry.PendingGeometry`). Colour ops (:meth:`map_channels`) act
    per image and channel, and bilinear weights sum to one, so they are applied to the small
    source images (N, 32, 32, 3) before the window is sampled: the (N, 227, 227, 3) output is then
    written once, by the last gather, instead of being read and rewritten by every step (2-3x
    faster off XLA). The result differs from the host path's order of steps by float rounding only.
    """

    def __init__(self, images, stats, mode: str, epoch=None):
        self.stats, self.mode = stats, mode
        self.epoch = ops.convert_to_tensor(0 if epoch is None else epoch, "int32")
        self._source = to_unit(images)
        super().__init__(self._source, ops.shape(images)[0], int(images.shape[1]))

    @property
    def image_bits(self):
        """One fixed bit per source image (int32 0/1): the parity of the sum of its uint8 pixels."""
        pixels = ops.cast(ops.round(self._source * 255.0), "int32")
        return ops.mod(ops.sum(pixels, axis=(1, 2, 3)), 2)

    def set_pad(self, pixels: int, mode: str) -> None:
        if mode != "CONSTANT":  # read through by index arithmetic when the window is sampled
            super().set_pad(pixels, mode)
            return
        if self.pending:
            self.render()
        # Zeros are padded now, before any colour op shifts the pixels, as the host pads them.
        self._pixels = ops.pad(self._pixels, [(0, 0), (pixels, pixels), (pixels, pixels), (0, 0)])
        self.span = self.span + 2 * pixels

    def set_ten_windows(self, crop: int, offsets, flips, box_indices) -> None:
        self.set_window(crop, offsets)
        self._pixels = ops.take(self._pixels, box_indices, axis=0)  # small images, before the window
        self.flips, self.count = flips, self.count * TEN_CROPS

    def map_channels(self, fn) -> None:
        """``fn`` changes each image by one value per channel, so it commutes with the window."""
        self._pixels = fn(self._pixels)

    def _sample(self, crop: int, offsets, flips):
        return crop_windows(
            self._pixels, offsets, flips, resize=self.resize, crop=crop, pad=self.pad, pad_mode=self.pad_mode
        )

    def _zeros(self, shape, dtype: str):
        return ops.zeros(shape, dtype)

    def _not_equal(self, a, b):
        return ops.not_equal(a, b)


def draw_ops(steps, rng, count, image_size: int, mode: str = "train") -> list:
    """Each op's random choice for a batch (None where it has none), from a SeedGenerator."""
    draws, size = [], image_size
    for op in steps:
        draws.append(op.draw(rng, count, size, mode))
        size = op.out_size(size)
    return draws


def run_ops(steps, stats, images, mode: str, draws=None, epoch=None):
    """uint8 images -> float32 through ``steps`` with the random choices ``draws`` (from
    :func:`draw_ops`; None outside training) in epoch ``epoch`` (0 if None; alt_flip reads it)."""
    batch = DeviceBatch(images, stats, mode, epoch)
    for op, value in zip(steps, draws or [None] * len(steps)):
        op.device(batch, value)
    out = batch.pixels()
    return ops.reshape(out, (-1, TEN_CROPS) + tuple(out.shape[1:])) if mode == "ten_crop" else out
