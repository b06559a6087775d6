"""Squaring images of mixed sizes: one definition (the central square in the image's own pixels,
then resized) shared by the fused JPEG read, the decode-everything path (PNG and others) and the
keras.ops mirror; the readers of trees and of TFRecord exports use the fused read for JPEGs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cifarkit import data
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.readers.image_decode import decode_squared
from cifarkit.readers.squaring import resize_shorter_centre
from cifarkit.sources import open_source

# (height, width): landscape and portrait, even and odd, and smaller than the square asked for.
SIZES = [(200, 300), (300, 200), (199, 301), (301, 199), (97, 131), (131, 97), (17, 40)]


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients with noise, so JPEG keeps detail to compare near the square's edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 7.0 + y / 11.0)], axis=-1)
    return np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)


def _jpegs(image: np.ndarray) -> dict[str, bytes]:
    """The same pixels as libjpeg writes them: 4:2:0 (the usual), 4:4:4 and progressive."""
    pillow = io.BytesIO()
    Image.fromarray(image).save(pillow, "JPEG", quality=90, progressive=True)
    return {
        "420": tf.io.encode_jpeg(image, quality=90).numpy(),
        "444": tf.io.encode_jpeg(image, quality=90, chroma_downsampling=False).numpy(),
        "progressive": pillow.getvalue(),
    }


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("size", [32, 64])
def test_the_fused_jpeg_read_equals_a_full_decode_squared(height, width, size):
    from cifarkit.readers.squaring import resize_shorter_centre_ops

    for kind, contents in _jpegs(_photo(height, width)).items():
        pixels = tf.io.decode_jpeg(contents, channels=3)
        expected = resize_shorter_centre(pixels, size).numpy()
        fused = decode_squared(tf.constant(contents), size, scaled=False).numpy()
        assert fused.shape == (size, size, 3) and fused.dtype == np.uint8
        np.testing.assert_array_equal(fused, expected, err_msg=kind)
        # The same pixels as a PNG take the decode-everything path to the same square.
        png = tf.io.encode_png(pixels)
        np.testing.assert_array_equal(decode_squared(png, size, scaled=False).numpy(), expected, err_msg=kind)
        # So does the keras.ops mirror that exported models and predict use without TensorFlow.
        np.testing.assert_array_equal(resize_shorter_centre_ops(pixels.numpy(), size), expected, err_msg=kind)


def _scale(height: int, width: int, size: int) -> int:
    return next((r for r in (8, 4, 2) if min(height, width) >= r * size), 1)


@pytest.mark.parametrize("height, width", SIZES)
@pytest.mark.parametrize("size", [16, 32, 64])
def test_a_large_jpeg_is_squared_from_its_dct_scaled_decode(height, width, size):
    """At least r = 2, 4, 8 times the square on its shorter side, a JPEG is decoded at 1/r scale:
    exactly the square of libjpeg's own scaled decode, cropped or not."""
    ratio = _scale(height, width, size)
    for kind, contents in _jpegs(_photo(height, width)).items():
        scaled = tf.io.decode_jpeg(contents, channels=3, ratio=ratio)
        expected = resize_shorter_centre(scaled, size).numpy()
        np.testing.assert_array_equal(decode_squared(tf.constant(contents), size).numpy(), expected, err_msg=kind)
    # The scale asked for is what the decode runs at: 1/r of each side, rounded up.
    assert scaled.shape[:2] == (-(-height // ratio), -(-width // ratio))


def test_the_dct_scaled_square_is_within_a_few_levels_of_the_full_decode():
    """On a smooth photo (no high frequencies for the two filters to treat differently) the DCT
    scale's square stays within 3 levels on average (0.5 at 1/2, 1.0 at 1/4, 2.7 at 1/8, where the
    scaled grid's rounded-up side shifts it by a fraction of a pixel) of the full-size one's."""
    height, width = 530, 790
    y, x = np.mgrid[0:height, 0:width]
    smooth = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 40.0 + y / 60.0)], -1)
    contents = tf.io.encode_jpeg(smooth.astype(np.uint8), quality=95).numpy()
    for size in (64, 128, 256):  # 1/8, 1/4, 1/2
        full = decode_squared(tf.constant(contents), size, scaled=False).numpy().astype(int)
        scaled = decode_squared(tf.constant(contents), size).numpy().astype(int)
        assert np.abs(full - scaled).mean() <= 3 and np.abs(full - scaled).max() <= 32, size
        assert not np.array_equal(full, scaled)  # the scaled decode did run


def test_squaring_crops_the_centre_in_source_pixels_then_resizes():
    image = np.zeros((40, 81, 3), np.uint8)
    image[:, 20:60] = 200  # the central 40 x 40 (left 20: the odd column goes to the right)
    out = resize_shorter_centre(tf.constant(image), 20).numpy()
    assert (out == 200).all()  # nothing from outside the square blends into its edges
    np.testing.assert_array_equal(resize_shorter_centre(tf.constant(image[:, 20:60]), 20), out)


@pytest.mark.parametrize("side, smooth", [(20, False), (40, False), (64, False), (65, True), (150, True)])
def test_resizing_antialiases_only_a_shrink_by_more_than_two(side, smooth):
    """Enlarging, or shrinking by up to 2x, every source pixel falls under bilinear's taps: plain
    bilinear (at exactly 2x a 2x2 box). Shrinking by more would skip pixels: antialiased."""
    from cifarkit.readers.squaring import resize_shorter_centre_ops, resize_square

    image = _photo(side, side, seed=side)
    out = resize_square(tf.constant(image), 32).numpy()
    # Enlarging, the two filters agree; shrinking, only the one chosen gives these pixels.
    for antialias in (smooth, not smooth) if side > 32 else (smooth,):
        resized = tf.image.resize(image, [32, 32], method="bilinear", antialias=antialias).numpy()
        assert np.array_equal(out, np.round(resized).astype(np.uint8)) == (antialias == smooth)
    if side == 64:
        boxes = image.reshape(32, 2, 32, 2, 3).astype(np.float32).mean(axis=(1, 3))
        np.testing.assert_array_equal(out, np.round(boxes).astype(np.uint8))
    np.testing.assert_array_equal(resize_shorter_centre_ops(image, 32), out)
    # A crop's box: the longer side decides, as for a square.
    box = _photo(side, 20, seed=side)
    expected = tf.image.resize(box, [32, 32], method="bilinear", antialias=smooth).numpy()
    np.testing.assert_array_equal(resize_square(tf.constant(box), 32).numpy(), np.round(expected).astype(np.uint8))


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory):
    """The same pixels as JPEG files, as PNG files, and as a TFRecord export keeping the JPEGs."""
    root = tmp_path_factory.mktemp("photos")
    images = [_photo(h, w, seed=i) for i, (h, w) in enumerate(SIZES)]
    jpegs = [_jpegs(image)["420"] for image in images]
    decoded = [tf.io.decode_jpeg(contents, channels=3).numpy() for contents in jpegs]
    # The JPEGs squared to 32, decoded at their DCT scale as the readers decode them.
    scaled = [
        resize_shorter_centre(tf.io.decode_jpeg(c, channels=3, ratio=_scale(h, w, 32)), 32).numpy()
        for c, (h, w) in zip(jpegs, SIZES)
    ]
    for i, (contents, pixels) in enumerate(zip(jpegs, decoded)):
        for folder, name, payload in (
            ("jpg", f"{i}.jpg", contents),
            ("png", f"{i}.png", tf.io.encode_png(pixels).numpy()),
        ):
            path = root / folder / "train" / "photo" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(payload)
    export_dataset(
        open_source(root / "jpg"), root / "tfrecord", ExportOptions(format="tfrecord", encoding="auto", workers=1)
    )
    return root, decoded, np.stack(scaled)


def _read(path, size: int) -> np.ndarray:
    return data.to_numpy(data.open_data(path).dataset("train", image_size=size))[0]


def test_readers_of_trees_and_exports_square_jpegs_like_the_full_decode(photo_tree):
    root, decoded, expected = photo_tree
    whole = np.stack([resize_shorter_centre(tf.constant(pixels), 32).numpy() for pixels in decoded])
    np.testing.assert_array_equal(_read(root / "jpg", 32), expected)  # fused, at the DCT scale
    np.testing.assert_array_equal(_read(root / "png", 32), whole)  # decoded whole
    np.testing.assert_array_equal(_read(root / "tfrecord", 32), expected)  # fused, from the records
    import cifarkit  # file-level shuffling squares the records it reads the same way

    shuffled = [
        image
        for image, _ in cifarkit.load(root / "tfrecord", "train", shuffle_files=True, image_size=32).as_numpy_iterator()
    ]
    assert sorted(map(bytes, shuffled)) == sorted(map(bytes, expected))


def _op_types(ds) -> set[str]:
    """Every op in the dataset's graph and in the functions its transformations run."""
    from tensorflow.core.framework import graph_pb2

    graph = graph_pb2.GraphDef.FromString(ds._as_serialized_graph().numpy())
    ops = {node.op for node in graph.node}
    return ops | {node.op for function in graph.library.function for node in function.node_def}


def test_the_readers_decode_jpegs_with_decode_and_crop(photo_tree):
    root = photo_tree[0]
    for export in ("jpg", "tfrecord"):
        squared = _op_types(data.open_data(root / export).dataset("train", image_size=32))
        assert "DecodeAndCropJpeg" in squared and "ExtractJpegShape" in squared, export
        # Not asked to square: the image is decoded whole, as it is stored.
        assert "DecodeAndCropJpeg" not in _op_types(data.open_data(root / export).split_dataset("train")), export


def test_a_corrupt_jpeg_is_still_named_when_squaring(photo_tree, tmp_path):
    import shutil

    from cifarkit.errors import SourceError

    tree = tmp_path / "tree"
    shutil.copytree(photo_tree[0] / "jpg", tree)
    broken = tree / "train" / "photo" / "3.jpg"
    broken.write_bytes(broken.read_bytes()[:200])  # the header survives, the scan does not
    with pytest.raises(tf.errors.OpError) as caught:
        _read(tree, 32)
    error = data.source_error_in(caught.value)
    assert isinstance(error, SourceError) and str(error).startswith(str(broken))


_OPS_ON_JAX = """
import sys
import numpy as np
sys.modules["tensorflow"] = None  # the ops path must not lean on TensorFlow
from cifarkit.readers.squaring import resize_shorter_centre_ops
photos = np.load(sys.argv[1])
np.savez(sys.argv[2], **{key: resize_shorter_centre_ops(photos[key], 32) for key in photos})
"""


def test_the_keras_ops_mirror_squares_the_same_on_jax(tmp_path):
    import importlib.util
    import os
    import subprocess
    import sys

    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed")
    photos = {f"{h}x{w}": _photo(h, w) for h, w in SIZES}
    np.savez(tmp_path / "in.npz", **photos)
    env = {**os.environ, "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", _OPS_ON_JAX, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    squared = np.load(tmp_path / "out.npz")
    for key, photo in photos.items():
        np.testing.assert_array_equal(squared[key], resize_shorter_centre(tf.constant(photo), 32).numpy(), err_msg=key)
