"""Image files decoded inside tf.data, each checked before it is decoded, and a failure named.

PNG and JPEG (nearly every tree) are decoded by TensorFlow after their headers' size is checked
against :func:`~cifarkit.sources.image_file.pixel_budget`; any other file (GIF, BMP, TIFF, PPM,
WebP, a misnamed or broken one) by Pillow, exactly as the exporter reads it. TensorFlow's own
decoders say only "Invalid PNG data"; the first file that fails is named instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..runtime.lazy import tf
from ..sources.image_file import FLOOR_PIXELS, MAX_PIXELS, PIXELS_PER_BYTE, read_image

AUTOTUNE = -1  # tf.data.AUTOTUNE, without importing TensorFlow at module import


@dataclass(frozen=True)
class RandomCrop:
    """A random-resized crop to ``size`` taken as each file is decoded (:func:`decode_random_crop`),
    its boxes drawn from ``seed``, anew at every pass over the files."""

    size: int
    seed: int = 0
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)


def decode_files(
    paths: list[str],
    labels,
    shape,
    size: int | None = None,
    crop: RandomCrop | None = None,
    *,
    shuffle: bool = False,
    seed: int | None = None,
):
    """(uint8 image, int32 label) for each file, in order; ``shape`` is every image's, if known.
    ``size`` squares each image as it is decoded (:func:`decode_squared`), to (size, size, 3);
    ``crop`` instead cuts a random-resized crop of each, a JPEG decoded only within it.

    ``shuffle``: the files in an order shuffled anew at every pass (``seed`` repeats the sequence
    of orders), drawn before anything is read, so no decoded image waits in a shuffle buffer."""
    count = len(paths)
    if not count:  # an empty list becomes a float32 tensor, which read_file refuses
        paths = tf.zeros([0], tf.string)
    if not shuffle:
        return _decoded_in_order(paths, labels, shape, size, crop, tf.range(count, dtype=tf.int64))
    # One element a pass, the whole order (an int64 a file); drawn outside the flat_map, where a
    # seeded stream is drawn anew each pass (inside it would repeat every pass).
    orders = tf.data.Dataset.range(count).shuffle(max(count, 1), seed=seed, reshuffle_each_iteration=True)
    orders = orders.batch(max(count, 1))
    if crop is None:
        return orders.flat_map(lambda order: _decoded_in_order(paths, labels, shape, size, None, order))
    # File i takes the pass's i-th draw of crop_seeds, as it does read in order.
    passes = tf.data.Dataset.zip(orders, crop_seeds(crop).batch(max(count, 1)).take(1))

    def one_pass(order, seeds):
        return _decoded_in_order(paths, labels, shape, size, crop, order, seeds)

    return passes.flat_map(one_pass)


def _decoded_in_order(paths, labels, shape, size, crop, order, seeds=None):
    """The files ``order`` lists (int64 indices), decoded; each crop's seed from the
    :func:`crop_seeds` stream in that order, or ``seeds[i]`` for file i where they are given."""
    columns = (tf.range(tf.size(order, tf.int64), dtype=tf.int64), tf.gather(paths, order), tf.gather(labels, order))
    files = tf.data.Dataset.from_tensor_slices(columns if seeds is None else (*columns, tf.gather(seeds, order)))
    if crop is not None and seeds is None:
        files = tf.data.Dataset.zip(files, crop_seeds(crop)).map(lambda file, seed: (*file, seed))
    # deterministic=True wins over a pipeline's Options(deterministic=False): the failure check
    # relies on the order.
    decoded = files.map(_tree_decoder(shape, size, crop), num_parallel_calls=AUTOTUNE, deterministic=True)
    side = crop.size if crop is not None else size
    return _naming_failures(decoded, paths, order, (side, side, 3) if side else shape)


# Pixels decoded beyond each side of a JPEG's square: libjpeg's chroma upsampling treats the edge
# of a cropped decode as the image's edge, changing the outermost 1-2 columns; decoded past them
# and cut off, the square is exactly the pixels of a full decode.
JPEG_CROP_MARGIN = 8


# DCT scales libjpeg decodes at (1/2, 1/4, 1/8 of each side); 1 is the full size.
JPEG_SCALES = (1, 2, 4, 8)


def jpeg_scale_index(shorter, size: int):
    """Index in :data:`JPEG_SCALES` of the largest scale r at which a JPEG whose shorter side is
    ``shorter`` still decodes to at least ``size`` pixels on that side (r * size <= shorter)."""
    shorter = tf.cast(shorter, tf.int64)
    return tf.add_n([tf.cast(shorter >= ratio * size, tf.int32) for ratio in JPEG_SCALES[1:]])


def decode_squared(contents, size: int, channels: int = 3, scaled: bool = True):
    """Encoded image bytes -> its central square resized to ``size`` x ``size``
    (:func:`cifarkit.readers.squaring.resize_shorter_centre`). A JPEG is decoded only around that square
    (``tf.io.decode_and_crop_jpeg``), so a large photo is never fully decoded just to be cropped;
    other formats are decoded whole.

    ``scaled``: a JPEG at least 2, 4 or 8 times ``size`` on its shorter side is decoded at that
    DCT scale (libjpeg's ``ratio``), the largest that still covers ``size``: the square is then
    exactly that of ``tf.io.decode_jpeg(contents, ratio=r)``, not of the full-size decode (the
    DCT's scaling is its own, box-like, filter: a few levels apart, docs/GUIDE.md)."""

    from .squaring import resize_shorter_centre

    def jpeg():
        height, width = tf.unstack(tf.image.extract_jpeg_shape(contents)[:2])
        return jpeg_square(contents, height, width, size if scaled else None, channels)

    def other():
        return tf.io.decode_image(contents, channels=channels, expand_animations=False)

    # Only the decodes branch; the (one) resize is outside, since tf.data walks every op of an
    # untaken branch too.
    return resize_shorter_centre(tf.cond(is_jpeg(contents), jpeg, other), size)


def jpeg_square(contents, height, width, size: int | None, channels: int = 3):
    """The central square of a JPEG of ``height`` x ``width``, unresized, decoding only a window
    around it; at the DCT scale :func:`jpeg_scale_index` picks for ``size`` (None: full size)."""
    from .squaring import centre_square

    if size is None:
        top, left, side = centre_square(height, width)
        return decode_window(contents, top, left, side, side, height, width, channels)
    index = jpeg_scale_index(tf.minimum(height, width), size)
    ratio = tf.gather(tf.constant(JPEG_SCALES, height.dtype), index)
    height, width = -(-height // ratio), -(-width // ratio)  # libjpeg rounds scaled sides up
    top, left, side = centre_square(height, width)
    return decode_window(contents, top, left, side, side, height, width, channels, index=index)


def _by_scale(index, decode, at: int = 0):
    """``decode(JPEG_SCALES[index])``, the scale an attribute of the op: a chain of conds, each
    branch one op (a ``tf.switch_case`` cost 0.2 ms a photo, run as a function call)."""
    if at == len(JPEG_SCALES) - 1:
        return decode(JPEG_SCALES[at])
    return tf.cond(index <= at, lambda: decode(JPEG_SCALES[at]), lambda: _by_scale(index, decode, at + 1))


def decode_window(contents, top, left, rows, cols, height, width, channels: int = 3, ratio: int = 1, index=None):
    """Pixels ``[top:top+rows, left:left+cols]`` of a JPEG of ``height`` x ``width`` (at 1/``ratio``
    scale, or ``JPEG_SCALES[index]`` for a tensor ``index``), decoding only around them, equal to
    the same box of the whole decode."""
    y0, x0 = tf.maximum(top - JPEG_CROP_MARGIN, 0), tf.maximum(left - JPEG_CROP_MARGIN, 0)
    y1 = tf.minimum(top + rows + JPEG_CROP_MARGIN, height)
    x1 = tf.minimum(left + cols + JPEG_CROP_MARGIN, width)
    box = tf.stack([y0, x0, y1 - y0, x1 - x0])
    if index is None:
        window = tf.io.decode_and_crop_jpeg(contents, box, channels=channels, ratio=ratio)
    else:
        window = _by_scale(index, lambda r: tf.io.decode_and_crop_jpeg(contents, box, channels=channels, ratio=r))
    return window[top - y0 : top - y0 + rows, left - x0 : left - x0 + cols]


def random_crop_box(shape, seed, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """(top, left, height, width) of a random-resized crop of an image of ``shape`` (its height and
    width first): ``tf.image.stateless_sample_distorted_bounding_box``, the whole image if none of
    its 10 draws fits."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.cast(shape[:3], tf.int32),
        tf.zeros([1, 0, 4]),
        seed=seed,
        min_object_covered=0.0,
        aspect_ratio_range=ratio,
        area_range=scale,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return begin[0], begin[1], extent[0], extent[1]


def decode_random_crop(contents, seed, size: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), channels: int = 3):
    """Encoded image bytes -> a random-resized crop (``seed``: int [2]) resized to ``size`` x
    ``size`` uint8. A JPEG is decoded only around its box (equal to the same box of the whole
    decode, :func:`decode_window`); other formats are decoded whole, then cut."""

    from .squaring import resize_square

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        top, left, rows, cols = random_crop_box(tf.concat([shape[:2], [channels]], 0), seed, scale, ratio)
        return decode_window(contents, top, left, rows, cols, shape[0], shape[1], channels)

    def other():
        image = tf.io.decode_image(contents, channels=channels, expand_animations=False)
        top, left, rows, cols = random_crop_box(tf.shape(image), seed, scale, ratio)
        return image[top : top + rows, left : left + cols]

    return resize_square(tf.cond(is_jpeg(contents), jpeg, other), size)


def crop_seeds(crop: RandomCrop):
    """One int64 [2] seed per element, from ``crop.seed`` and drawn anew at every pass: zipped
    with a split's elements in dataset order, before any shuffle, so each keeps its own draw."""
    return tf.data.Dataset.random(seed=crop.seed, rerandomize_each_iteration=True).batch(2)


def cut_random_crop(image, seed, crop: RandomCrop):
    """A decoded uint8 image -> its random-resized crop at the box :func:`decode_random_crop`
    draws for the same seed (pixels stored raw, or read by Pillow, are cut after the whole decode)."""
    from .squaring import resize_square

    top, left, rows, cols = random_crop_box(tf.shape(image), seed, crop.scale, crop.ratio)
    return resize_square(image[top : top + rows, left : left + cols], crop.size)


def is_jpeg(contents):
    return tf.equal(tf.strings.substr(contents, 0, 3), _JPEG_SIGNATURE)


# PNG and JPEG are known by their first bytes, and their headers give their size cheaply.
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_SIZE_AT = 16  # after the signature (8 bytes), IHDR's length and type (4 + 4): width, height
_JPEG_SIGNATURE = b"\xff\xd8\xff"  # start of image, then the first marker


def header_size(contents):
    """(height, width) from a PNG or JPEG header, int64 (a tensor); (0, 0) for any other bytes.
    Reads the header only: nothing is allocated for the pixels. No branches: the JPEG parser is
    handed a 1x1 JPEG in place of other bytes, and PNG's fields are read from zero-padded bytes."""
    head = tf.strings.substr(contents, 0, _PNG_SIZE_AT + 8)
    png = tf.equal(tf.strings.substr(head, 0, 8), _PNG_SIGNATURE) & tf.equal(tf.strings.length(head), _PNG_SIZE_AT + 8)
    fields = tf.strings.substr(tf.strings.join([head, bytes(_PNG_SIZE_AT + 8)]), _PNG_SIZE_AT, 8)
    png_size = tf.reverse(tf.cast(tf.io.decode_raw(fields, tf.int32, little_endian=False), tf.int64) & 0xFFFFFFFF, [0])
    jpeg = is_jpeg(contents)
    jpeg_size = tf.cast(tf.image.extract_jpeg_shape(tf.where(jpeg, contents, _tiny_jpeg()))[:2], tf.int64)
    return tf.where(jpeg, jpeg_size, tf.where(png, png_size, tf.zeros([2], tf.int64)))


def _tiny_jpeg() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (1, 1)).save(out, "JPEG")
    return out.getvalue()


def within_budget(contents, size=None):
    """Whether ``contents`` is a PNG or JPEG whose header claims at least one pixel and no more
    than :func:`~cifarkit.sources.image_file.pixel_budget` allows for its size in bytes (``size``:
    its :func:`header_size`, where already read)."""
    size = header_size(contents) if size is None else size
    encoded = tf.cast(tf.strings.length(contents), tf.int64)
    budget = tf.clip_by_value(PIXELS_PER_BYTE * encoded, FLOOR_PIXELS, MAX_PIXELS)
    # Sides of at most MAX_PIXELS (1e8) multiply within int64; a bigger side fails on its own.
    sides_fit = tf.logical_and(tf.reduce_all(size > 0), tf.reduce_all(size <= MAX_PIXELS))
    return tf.logical_and(sides_fit, size[0] * size[1] <= budget)


def _tree_decoder(shape, size: int | None = None, crop: RandomCrop | None = None):
    """(index, path, label[, seed]) -> (index, uint8 image, label); a file that fails raises inside
    tf.data. ``size``: each image squared to it as it is decoded; ``crop``: cut from it.

    The branches hold only the decodes (a JPEG's window, a PNG, Pillow's read) and the resize is
    outside them: tf.data walks every op of an untaken branch too."""
    from .squaring import resize_shorter_centre, resize_square

    channels = shape[-1] if shape else 3
    side = crop.size if crop is not None else size

    def pillow(path):
        return read_image(Path(path.decode()))

    def whole(image, seed):
        if crop is None:
            return image
        top, left, rows, cols = random_crop_box(tf.shape(image), seed, crop.scale, crop.ratio)
        return image[top : top + rows, left : left + cols]

    def jpeg(contents, height, width, seed):
        if crop is not None:
            hwc = tf.stack([height, width, tf.constant(channels, height.dtype)])
            top, left, rows, cols = random_crop_box(hwc, seed, crop.scale, crop.ratio)
            return decode_window(contents, top, left, rows, cols, height, width, channels)
        if size:
            return jpeg_square(contents, height, width, size, channels)
        return tf.io.decode_jpeg(contents, channels=channels)

    def by_pillow(path, seed):
        image = tf.numpy_function(pillow, [path], tf.uint8, stateful=False)
        return whole(tf.ensure_shape(image, (None, None, channels)), seed)

    def decode(index, path, label, seed=None):
        contents = tf.io.read_file(path)
        header = header_size(contents)
        height, width = tf.unstack(tf.cast(header, tf.int32))
        ok = within_budget(contents, header)
        # Any other file, or a header over the budget: Pillow reads it, or refuses it by name.
        image = tf.cond(
            ok & is_jpeg(contents),
            lambda: jpeg(contents, height, width, seed),
            lambda: tf.cond(
                ok, lambda: whole(tf.io.decode_png(contents, channels=channels), seed), lambda: by_pillow(path, seed)
            ),
        )
        if crop is not None:
            image = resize_square(image, crop.size)
        elif size:
            image = resize_shorter_centre(image, size)
        return index, tf.ensure_shape(image, (side, side, 3) if side else shape or (None, None, 3)), label

    return decode


def _naming_failures(decoded, paths: list[str], order, shape):
    """``decoded`` (position in ``order``, image, label) without its positions, failing with the
    name of the first file that failed.

    TensorFlow's decoders say only "Invalid PNG data". Failed elements are dropped instead, so the
    first one whose position differs from its place in the stream follows the first failure, the
    file ``order`` lists there; a sentinel after the last element catches failures at the end.
    :func:`read_image` explains the failed file with a :class:`SourceError` that names it.
    """
    count = len(paths)

    def explain(index):
        path = Path(paths[int(index)])
        read_image(path)  # raises with the reason; if Pillow reads it, TensorFlow's decoder did not:
        raise SourceError(f"{path}: cannot decode image (TensorFlow's decoder refuses it)")

    def check(place, element):
        position, image, label = element
        ok = tf.cond(
            tf.equal(position, place),
            lambda: tf.constant(True),
            lambda: tf.numpy_function(explain, [tf.gather(order, place)], tf.bool),
        )
        with tf.control_dependencies([ok]):
            return tf.identity(image), tf.identity(label)

    sentinel = (tf.constant(count, tf.int64), tf.zeros(shape or (1, 1, 3), tf.uint8), tf.constant(0, tf.int32))
    stream = decoded.ignore_errors().concatenate(tf.data.Dataset.from_tensors(sentinel)).enumerate()
    # take(count): without failures the sentinel is never reached; after one it is checked.
    return stream.map(check, num_parallel_calls=AUTOTUNE, deterministic=True).take(count)


def source_error_in(exc: Exception) -> SourceError | None:
    """The :class:`SourceError` an image-tree reader raised inside tf.data, which TensorFlow passes
    on wrapped in its own error (with a traceback); None if ``exc`` carries none."""
    import re

    match = re.search(r"\bSourceError: ([^\n]+)", getattr(exc, "message", None) or "")
    return SourceError(match.group(1).strip()) if match else None
