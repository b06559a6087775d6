"""The inception recipe: a random-resized crop (8-100% of the area, aspect 3/4-4/3) to 224, then a
flip. On batches it samples each box straight from the squared image (host and keras.ops alike);
a JPEG file can be read only within its box, with the pixels of the whole decode."""

from __future__ import annotations

import io
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from typer.testing import CliRunner

from cifarkit.augment import device, host
from cifarkit.augment.recipes import eval_transform, get_recipe, train_transform
from cifarkit.readers.image_decode import decode_random_crop, decode_window, random_crop_box
from cifarkit.readers.squaring import resize_square
from cifarkit.readers.stats import RunningMoments
from cifarkit.sources.image_file import read_image

# (height, width): odd, even, portrait, landscape, one MCU wide, narrower than one.
SIZES = [(37, 53), (53, 37), (64, 48), (17, 31), (9, 7)]


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([255 * x / width, 255 * y / height, 128 + 100 * np.sin(x / 3.0 + y / 5.0)], axis=-1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)


def _jpegs(image: np.ndarray) -> dict[str, bytes]:
    """Baseline 4:2:0 and 4:4:4, progressive 4:2:0 and 4:2:2, all written by Pillow's libjpeg."""
    out = {}
    for name, options in {
        "420": {"subsampling": 2},
        "444": {"subsampling": 0},
        "progressive420": {"subsampling": 2, "progressive": True},
        "progressive422": {"subsampling": 1, "progressive": True},
    }.items():
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=90, **options)
        out[name] = buffer.getvalue()
    return out


def _boxes(height: int, width: int):
    """Boxes at every edge and corner, odd offsets and sides, one pixel, the whole image."""
    return [
        (0, 0, height, width),
        (0, 0, 1, 1),
        (height - 1, width - 1, 1, 1),
        (1, 3, max(height - 4, 1), max(width - 5, 1)),
        (height // 3, width // 2, height - height // 3, width - width // 2),
        (height // 2, 1, 1, width - 1),
    ]


@pytest.mark.parametrize("height, width", SIZES)
def test_a_jpeg_window_is_the_same_box_of_the_whole_decode(height, width):
    for kind, contents in _jpegs(_photo(height, width)).items():
        whole = tf.io.decode_jpeg(contents, channels=3).numpy()
        for top, left, rows, cols in _boxes(height, width):
            window = decode_window(tf.constant(contents), top, left, rows, cols, height, width).numpy()
            np.testing.assert_array_equal(
                window, whole[top : top + rows, left : left + cols], err_msg=(kind, top, left)
            )


@pytest.mark.parametrize("height, width", SIZES)
def test_the_fused_random_crop_equals_decoding_whole_then_cropping_the_same_box(height, width):
    image = _photo(height, width, seed=height)
    for seed in ([0, 1], [5, 9], [123, 4]):
        top, left, rows, cols = (int(v) for v in random_crop_box(tf.constant([height, width, 3]), seed))
        assert 0 <= top and top + rows <= height and 0 <= left and left + cols <= width
        for kind, contents in _jpegs(image).items():
            whole = tf.io.decode_jpeg(contents, channels=3)
            expected = resize_square(whole[top : top + rows, left : left + cols], 24).numpy()
            np.testing.assert_array_equal(decode_random_crop(tf.constant(contents), seed, 24).numpy(), expected, kind)
        # A PNG is decoded whole and cut at the same box.
        png = tf.io.encode_png(image)
        expected = resize_square(image[top : top + rows, left : left + cols], 24).numpy()
        np.testing.assert_array_equal(decode_random_crop(png, seed, 24).numpy(), expected)


def test_the_random_crop_boxes_cover_the_area_and_aspect_asked_for():
    shares, aspects = [], []
    for seed in range(200):
        top, left, rows, cols = (int(v) for v in random_crop_box(tf.constant([300, 400, 3]), [seed, 0]))
        shares.append(rows * cols / (300 * 400))
        aspects.append(cols / rows)
    shares, aspects = np.array(shares), np.array(aspects)
    assert shares.min() >= 0.07 and shares.max() <= 1.0 and np.median(shares) < 0.7
    assert aspects.min() >= 0.7 and aspects.max() <= 1.4


def test_the_fused_random_crop_decodes_only_its_window():
    contents = tf.constant(_jpegs(_photo(64, 48))["420"])
    graph = tf.function(lambda c: decode_random_crop(c, [1, 2], 16)).get_concrete_function(contents).graph
    ops = {node.type for node in graph.get_operations()}
    ops |= {node.op for f in graph.as_graph_def().library.function for node in f.node_def}
    assert {"DecodeAndCropJpeg", "ExtractJpegShape", "StatelessSampleDistortedBoundingBox"} <= ops
    assert "DecodeJpeg" not in ops


IMAGES = np.random.default_rng(3).integers(0, 256, (5, 40, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def stats():
    moments = RunningMoments()
    moments.update(IMAGES)
    return moments.finish("synthetic")


def test_the_batch_crop_is_each_box_resized():
    images = IMAGES.astype(np.float32)
    boxes = host.random_boxes(tf.constant([4, 2], tf.int64), 5, 40, (0.08, 1.0), (3 / 4, 4 / 3), 10)
    out = host.box_windows(images, boxes, 24).numpy()
    for image, window, (top, left, rows, cols) in zip(images, out, boxes.numpy()):
        assert 1 <= rows <= 40 and 1 <= cols <= 40 and top + rows <= 40 and left + cols <= 40
        expected = tf.image.resize(image[top : top + rows, left : left + cols], [24, 24], antialias=False).numpy()
        np.testing.assert_allclose(window, expected, atol=1e-2)
    mirrored = host.box_windows(images, boxes, 24, tf.fill([5], True)).numpy()
    np.testing.assert_array_equal(mirrored, out[:, :, ::-1])
    # keras.ops reads the same boxes from the same draws, to float rounding.
    draws = tf.random.stateless_uniform([64, 10, 4], [3, 4])
    np.testing.assert_array_equal(
        host.boxes_from_draws(draws, 40, (0.08, 1.0), (3 / 4, 4 / 3)).numpy(),
        np.asarray(device.boxes_from_draws(draws.numpy(), 40, (0.08, 1.0), (3 / 4, 4 / 3))),
    )
    np.testing.assert_allclose(np.asarray(device.box_windows(images, boxes.numpy(), 24)), out, atol=1e-3)


def test_the_inception_recipe_trains_on_random_crops_and_evaluates_the_centre(stats):
    recipe = get_recipe("inception")
    assert recipe.crop == 224 and not recipe.ten_crop and "random-resized 224x224 crop" in recipe.describe()
    big = tf.image.resize(IMAGES, [256, 256]).numpy().round().astype(np.uint8)
    views = train_transform(recipe, stats)(big, tf.constant([1, 2], tf.int64)).numpy()
    assert views.shape == (5, 224, 224, 3)
    again = train_transform(recipe, stats)(big, tf.constant([1, 3], tf.int64)).numpy()
    assert not np.allclose(views, again)  # another seed, other boxes
    # Evaluation: the central 224 of 256, which resizing to 224 leaves as it is.
    centre = eval_transform(recipe, stats)(big).numpy()
    expected = (big[:, 16:240, 16:240] / 255.0 - np.array(stats.mean)) / np.array(stats.std)
    np.testing.assert_allclose(centre, expected, atol=1e-4)


def test_augment_preview_shows_the_inception_recipe(tmp_path):
    import synth

    from cifarkit.cli import app

    synth.make_image_folder(tmp_path / "photos", ext="jpg", sizes=((300, 260), (170, 230)))
    out = tmp_path / "p.png"
    args = ["augment-preview", "--data", str(tmp_path / "photos"), "--recipe", "inception", "-o", str(out)]
    result = CliRunner().invoke(app, [*args, "--images", "2", "--views", "3", "--stages"])
    assert result.exit_code == 0, result.output
    assert "recipe inception: random-resized 224x224 crop" in result.stdout
    assert iio.imread(out).ndim == 3


def test_the_augmentation_layer_runs_the_inception_recipe(stats):
    from cifarkit.augment.layer import Augmentation

    layer = Augmentation(get_recipe("inception"), stats, seed=3)
    views = np.asarray(layer(IMAGES, training=True))
    assert views.shape == (5, 224, 224, 3) and layer.compute_output_shape((None, 40, 40, 3))[1:] == (224, 224, 3)
    # Evaluation: the central 35 of 40 (0.875) resized to 224, as on the host.
    centre = np.asarray(layer(IMAGES, training=False))
    np.testing.assert_allclose(centre, eval_transform(get_recipe("inception"), stats)(IMAGES).numpy(), atol=1e-3)


def _tree(root, images: dict[str, np.ndarray]) -> list[str]:
    paths = []
    for name, image in images.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".jpg"):
            path.write_bytes(_jpegs(image)["progressive420"])
        else:
            Image.fromarray(image).save(path)
        paths.append(str(path))
    return paths


def test_a_tree_read_with_a_random_crop_cuts_each_file_at_its_own_box_every_pass(tmp_path):
    from cifarkit.readers.image_decode import RandomCrop, decode_files

    images = {"a.jpg": _photo(37, 53, 1), "b.jpg": _photo(61, 29, 2), "c.png": _photo(30, 30, 3)}
    images["d.gif"] = _photo(20, 26, 4)
    paths = _tree(tmp_path, images)
    crop = RandomCrop(16, seed=7)
    ds = decode_files(paths, np.arange(4, dtype=np.int32), None, crop=crop)
    first, second = (np.stack([image for image, _ in ds.as_numpy_iterator()]) for _ in range(2))
    assert first.shape == (4, 16, 16, 3) and not np.array_equal(first, second)  # new boxes each pass
    # The first pass's boxes are those of the first pass of the same seeds, drawn alone.
    seeds = list(tf.data.Dataset.random(seed=7, rerandomize_each_iteration=True).batch(2).take(4))
    for path, seed, got in zip(paths, seeds, first):
        if path.endswith(".jpg"):
            expected = decode_random_crop(tf.io.read_file(path), seed, 16).numpy()
        else:  # GIF through Pillow, as the tree reader reads it; PNG the same way by TensorFlow
            pixels = read_image(Path(path))
            top, left, rows, cols = random_crop_box(tf.shape(pixels), seed)
            expected = resize_square(pixels[top : top + rows, left : left + cols], 16).numpy()
        np.testing.assert_array_equal(got, expected, err_msg=path)


def test_a_broken_jpeg_is_named_when_read_with_a_random_crop(tmp_path):
    from cifarkit.errors import SourceError
    from cifarkit.readers.image_decode import RandomCrop, decode_files, source_error_in

    paths = _tree(tmp_path, {"a.jpg": _photo(37, 53, 1), "b.jpg": _photo(61, 29, 2)})
    broken = tmp_path / "b.jpg"
    broken.write_bytes(broken.read_bytes()[:300])  # the header survives, the scan does not
    with pytest.raises(tf.errors.OpError) as caught:
        list(decode_files(paths, np.arange(2, dtype=np.int32), None, crop=RandomCrop(16)).as_numpy_iterator())
    error = source_error_in(caught.value)
    assert isinstance(error, SourceError) and str(error).startswith(str(broken))
