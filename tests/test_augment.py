"""Augmentations and recipes: exact windows, real mirrors, jitter statistics, determinism."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cifarkit.augment import host as augment
from cifarkit.augment.layer import Augmentation
from cifarkit.augment.recipes import eval_transform, get_recipe, preview_stages, ten_crop_transform, train_transform
from cifarkit.errors import UsageError
from cifarkit.readers import squaring
from cifarkit.readers.stats import RunningMoments

RNG = np.random.default_rng(7)
IMAGES = RNG.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def stats():
    moments = RunningMoments()
    moments.update(IMAGES)
    return moments.finish("synthetic")


def _seed(a: int, b: int = 0) -> tf.Tensor:
    return tf.constant([a, b], tf.int64)


# --- the fused window op ---------------------------------------------------------------------


@pytest.mark.parametrize("crop", [227, 224])
def test_fused_resize_crop_equals_resize_then_crop(crop):
    span = 256 - crop
    offsets = np.array([[0, 0], [span, span], [0, span], [span, 0], [13, 7], [span // 2, 1]], np.int32)
    flips = np.array([False, True, False, True, True, False])
    fused = augment.crop_windows(IMAGES, offsets, flips, resize=256, crop=crop).numpy()
    reference = augment.reference_resize_crop(IMAGES, offsets, flips, resize=256, crop=crop).numpy()
    # Stated tolerance: 1e-3 intensity levels on the 0-255 scale (float rounding only).
    assert fused.shape == (6, crop, crop, 3)
    assert np.abs(fused - reference).max() < 1e-3


def test_plain_crop_of_reflect_padded_image_is_exact():
    offsets = np.array([[0, 0], [8, 8], [3, 5], [8, 0], [4, 4], [1, 7]], np.int32)
    flips = np.array([False, False, True, True, False, False])
    out = augment.crop_windows(IMAGES, offsets, flips, resize=None, crop=32, pad=4, pad_mode="REFLECT").numpy()
    padded = np.pad(IMAGES, [(0, 0), (4, 4), (4, 4), (0, 0)], mode="reflect").astype(np.float32)
    for i, (y, x) in enumerate(offsets):
        window = padded[i, y : y + 32, x : x + 32]
        np.testing.assert_array_equal(out[i], window[:, ::-1] if flips[i] else window)
    # The centre window of the padded image is the image itself.
    np.testing.assert_array_equal(out[4], IMAGES[4].astype(np.float32))


def test_flip_really_mirrors():
    offsets = np.tile([[10, 20]], (6, 1)).astype(np.int32)
    plain = augment.crop_windows(IMAGES, offsets, np.zeros(6, bool), resize=256, crop=227).numpy()
    mirrored = augment.crop_windows(IMAGES, offsets, np.ones(6, bool), resize=256, crop=227).numpy()
    np.testing.assert_allclose(mirrored, plain[:, :, ::-1, :], atol=1e-3)
    assert not np.allclose(mirrored, plain, atol=1.0)


def test_random_windows_stay_inside_and_reach_both_edges():
    offsets = augment.random_offsets(_seed(3), 4000, 256, 227).numpy()
    flips = augment.random_flips(_seed(4), 4000).numpy()
    assert offsets.min() == 0 and offsets.max() == 256 - 227
    assert 0.45 < flips.mean() < 0.55


def test_ten_crop_returns_the_ten_expected_windows(stats):
    recipe = get_recipe("paper")
    views = ten_crop_transform(recipe, stats)(IMAGES[:2]).numpy()
    assert views.shape == (2, 10, 227, 227, 3)
    big = tf.image.resize(IMAGES[:2].astype(np.float32) / 255.0, [256, 256]).numpy() - np.array(stats.mean, np.float32)
    corners = [(0, 0), (0, 29), (29, 0), (29, 29), (14, 14)]
    for image in range(2):
        for k, (y, x) in enumerate(corners):
            window = big[image, y : y + 227, x : x + 227]
            np.testing.assert_allclose(views[image, k], window, atol=1e-5)
            np.testing.assert_allclose(views[image, 5 + k], window[:, ::-1], atol=1e-5)


# --- colour jitter and normalisation -----------------------------------------------------------


def test_pca_jitter_adds_one_constant_offset_per_image(stats):
    base = augment.to_unit(IMAGES)
    out = augment.pca_jitter(base, _seed(1), stats.eigenvalues, stats.eigenvectors, 0.1).numpy()
    offsets = (out - base.numpy()).reshape(6, -1, 3)
    np.testing.assert_allclose(offsets, np.repeat(offsets[:, :1, :], offsets.shape[1], axis=1), atol=1e-6)
    assert len({tuple(np.round(o[0], 6)) for o in offsets}) == 6  # a different offset per image


def test_pca_jitter_statistics_match_sigma(stats):
    n = 20000
    zeros = tf.zeros([n, 1, 1, 3])
    offsets = augment.pca_jitter(zeros, _seed(5), stats.eigenvalues, stats.eigenvectors, sigma=0.1).numpy()
    offsets = offsets.reshape(n, 3)
    vectors = np.array(stats.eigenvectors)
    alpha_lambda = offsets @ vectors  # coordinates along p_i: alpha_i * lambda_i
    alpha = alpha_lambda / np.array(stats.eigenvalues)
    np.testing.assert_allclose(alpha.std(axis=0), 0.1, rtol=0.03)
    np.testing.assert_allclose(alpha.mean(axis=0), 0.0, atol=0.003)
    assert abs(np.corrcoef(alpha.T)[0, 1]) < 0.03  # independent draws per eigenvector


def test_paper_eval_subtracts_the_training_mean_from_the_stats(stats):
    mean_image = np.tile(np.round(np.array(stats.mean) * 255).astype(np.uint8), (1, 32, 32, 1))
    out = eval_transform(get_recipe("paper"), stats)(mean_image).numpy()
    assert np.abs(out).max() < 0.5 / 255 + 1e-6  # only the uint8 rounding of the mean is left
    cifar = eval_transform(get_recipe("cifar"), stats)(IMAGES).numpy()
    expected = (IMAGES / 255.0 - np.array(stats.mean)) / np.array(stats.std)
    np.testing.assert_allclose(cifar, expected, atol=1e-5)


# --- recipes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,crop", [("paper", None), ("paper", 224), ("cifar", None)])
def test_recipe_shapes_dtypes_and_ranges(stats, name, crop):
    recipe = get_recipe(name, crop)
    size = crop or (227 if name == "paper" else 32)
    train = train_transform(recipe, stats)(IMAGES, _seed(0)).numpy()
    evaluated = eval_transform(recipe, stats)(IMAGES).numpy()
    assert train.shape == evaluated.shape == (6, size, size, 3)
    assert train.dtype == evaluated.dtype == np.float32
    if name == "paper":  # [0, 1] minus a mean near 0.5, plus a jitter of a few levels
        assert -0.7 < train.min() < 0 < train.max() < 0.7
    else:  # standardised
        assert abs(train.mean()) < 0.3 and 0.6 < train.std() < 1.4
    again = eval_transform(recipe, stats)(IMAGES).numpy()
    np.testing.assert_array_equal(evaluated, again)


def test_train_transform_is_deterministic_under_a_seed_eagerly_and_in_dataset_map(stats):
    transform = train_transform(get_recipe("paper"), stats)
    eager = transform(IMAGES, _seed(11, 2)).numpy()
    np.testing.assert_array_equal(eager, transform(IMAGES, _seed(11, 2)).numpy())
    assert not np.allclose(eager, transform(IMAGES, _seed(12, 2)).numpy())
    ds = tf.data.Dataset.from_tensors(IMAGES).map(lambda x: transform(x, _seed(11, 2)))
    np.testing.assert_allclose(next(iter(ds)).numpy(), eager, atol=1e-6)


def test_device_layer_runs_the_host_transform(stats):
    recipe = get_recipe("cifar")
    layer = Augmentation(recipe, stats, seed=4)
    state = np.array(layer.seed_generator.state.value)  # a copy, not the variable
    draws = layer.draw(len(IMAGES), 32)  # the layer draws with keras.random, so replay its draw
    drawn = {op.name: value for op, value in zip(layer.steps, draws)}
    layer.seed_generator.state.assign(state)
    trained = layer(IMAGES, training=True).numpy()
    windows = augment.crop_windows(augment.to_unit(IMAGES), drawn["crop"], drawn["flip"], resize=None, crop=32, pad=4)
    np.testing.assert_allclose(trained, augment.normalize(windows, stats.mean, stats.std).numpy(), atol=1e-5)
    second = layer(IMAGES, training=True).numpy()
    assert not np.array_equal(trained, second)  # the seed moves on every step
    np.testing.assert_allclose(
        layer(IMAGES, training=False).numpy(), eval_transform(recipe, stats)(IMAGES).numpy(), atol=1e-6
    )


def test_device_layer_saves_and_loads_with_a_model(stats, tmp_path):
    import keras

    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = Augmentation(get_recipe("cifar"), stats, seed=1)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0), atol=1e-6)
    assert loaded.layers[1].stats == stats


def test_recipe_choice_errors_name_the_value():
    with pytest.raises(UsageError, match="nope"):
        get_recipe("nope")
    with pytest.raises(UsageError, match="crop=300"):
        get_recipe("paper", 300)
    with pytest.raises(UsageError, match="crop=28"):
        get_recipe("cifar", 28)


def test_preview_stages_add_one_step_each(stats):
    stages = dict(preview_stages(get_recipe("paper"), stats))
    assert list(stages) == ["resize 256", "crop 227", "+ flip", "+ PCA colour"]
    seed = _seed(9)
    resized = stages["resize 256"](IMAGES, seed).numpy()
    assert resized.shape == (6, 256, 256, 3)
    cropped, flipped, coloured = (stages[k](IMAGES, seed).numpy() for k in ["crop 227", "+ flip", "+ PCA colour"])
    for i in range(6):  # a flipped view is the mirrored crop or the crop itself
        same = np.allclose(flipped[i], cropped[i], atol=1e-5)
        mirrored = np.allclose(flipped[i], cropped[i][:, ::-1], atol=1e-5)
        assert same or mirrored
    delta = (coloured - flipped).reshape(6, -1, 3)
    inside = (flipped > 0.05).all(axis=-1).reshape(6, -1) & (flipped < 0.95).all(axis=-1).reshape(6, -1)
    for i in range(6):  # colour adds one offset (away from clipping)
        d = delta[i][inside[i]]
        np.testing.assert_allclose(d, np.repeat(d[:1], len(d), axis=0), atol=1e-5)


def test_resize_shorter_centre_keeps_the_middle():
    wide = np.zeros((40, 80, 3), np.uint8)
    wide[:, 20:60] = 200  # the central square is bright, the sides dark
    out = squaring.resize_shorter_centre(tf.constant(wide), 32).numpy()
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert out[:, 2:30].min() > 190


@pytest.mark.parametrize("step", ["windows", "random_windows", "pca_jitter", "normalize", "resize_shorter_centre"])
def test_each_step_gives_the_same_result_eagerly_and_inside_dataset_map(stats, step):
    offsets = np.array([[3, 5]] * 6, np.int32)
    flips = np.array([True, False] * 3)
    steps = {
        "windows": lambda x: augment.crop_windows(x, offsets, flips, resize=256, crop=224),
        "random_windows": lambda x: augment.crop_windows(
            x, augment.random_offsets(_seed(2), 6, 256, 227), augment.random_flips(_seed(3), 6), resize=256, crop=227
        ),
        "pca_jitter": lambda x: augment.pca_jitter(
            augment.to_unit(x), _seed(4), stats.eigenvalues, stats.eigenvectors, 0.1
        ),
        "normalize": lambda x: augment.normalize(augment.to_unit(x), stats.mean, stats.std),
        "resize_shorter_centre": lambda x: squaring.resize_shorter_centre(x[0], 20),
    }
    fn = steps[step]
    eager = fn(tf.constant(IMAGES)).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(IMAGES).map(fn))).numpy()
    np.testing.assert_allclose(mapped, eager, atol=1e-5)


# --- ops and recipes as data -----------------------------------------------------------------

# Values of the host path before recipes became op lists (commit 6e35bf2), bundled CIFAR-10
# statistics, seed [11, 2]: the paper and cifar recipes must keep giving exactly these.
PINNED = {
    ("paper", None): {
        (0, 0, 0): (-0.17785275, -0.17417529, 0.04976091),
        (3, 100, 57): (0.01818085, 0.02473363, 0.06366700),
        (5, 226, 226): (0.06397063, -0.41212091, 0.01192451),
    },
    ("paper", 224): {(2, 17, 200): (0.24129438, 0.08822623, 0.44723082)},
    ("cifar", None): {
        (1, 0, 0): (-1.15567172, 1.81018043, -1.68315196),
        (4, 31, 5): (-0.30813357, 1.22868454, 0.58888012),
        (5, 16, 16): (-0.59597683, -1.87262690, -1.69819844),
    },
}


@pytest.mark.parametrize("name, crop", list(PINNED))
def test_recipes_give_the_same_training_views_as_before_they_were_op_lists(name, crop):
    from cifarkit.readers.stats import bundled_stats

    out = train_transform(get_recipe(name, crop), bundled_stats("cifar10"))(IMAGES, _seed(11, 2)).numpy()
    for index, values in PINNED[(name, crop)].items():
        np.testing.assert_allclose(out[index], values, atol=1e-6)


def test_recipes_are_op_lists_and_everything_else_derives_from_them():
    paper, cifar = get_recipe("paper"), get_recipe("cifar")
    assert [name for name, _ in paper.ops] == ["resize", "crop", "flip", "pca_jitter", "normalize"]
    assert (paper.crop, paper.source_size, get_recipe("paper", 224).crop) == (227, 256, 224)
    assert (cifar.crop, cifar.source_size) == (32, 32)
    assert paper.describe() == (
        "resize to 256x256, random 227x227 crop, horizontal flip p=0.5, "
        "PCA colour jitter sigma=0.1, subtract the training mean"
    )
    assert cifar.describe() == "pad 4 (reflect), random 32x32 crop, horizontal flip p=0.5, per-channel standardisation"
    assert [caption for caption, _ in preview_stages(cifar, None)] == ["pad 4", "crop 32", "+ flip"]


def test_the_model_registry_knows_exactly_the_recipe_table():
    from cifarkit.augment.recipes import RECIPES
    from cifarkit.models.registry import KNOWN_RECIPES

    assert tuple(KNOWN_RECIPES) == tuple(RECIPES)


def test_unknown_ops_and_bad_arguments_fail_when_the_recipe_is_written():
    from cifarkit.augment.ops import make_op
    from cifarkit.augment.recipes import Recipe

    with pytest.raises(ValueError, match="name='blur'"):
        Recipe("x", (("blur", (3,)),), 32)
    with pytest.raises(ValueError, match="mode='WRAP'"):
        make_op("pad", 4, "WRAP")
    with pytest.raises(ValueError, match="size=0"):
        make_op("crop", 0)
    with pytest.raises(ValueError, match="sigma=-0.1"):
        make_op("pca_jitter", -0.1)


def test_a_new_op_is_one_registration_and_runs_on_both_paths(stats):
    """What adding an op takes: a registered dataclass; the recipe, the compiled host transform,
    the preview and the Keras layer pick it up from the op list."""
    from dataclasses import dataclass

    from cifarkit.augment import ops as augment_ops
    from cifarkit.augment.recipes import Recipe

    @augment_ops.register_op("test_invert")
    @dataclass(frozen=True)
    class Invert(augment_ops.Op):
        def caption(self):
            return "+ invert"

        def phrase(self):
            return "invert"

        def host(self, batch):
            batch.map_pixels(lambda x: 1.0 - x)

        def device(self, batch, value):
            batch.map_pixels(lambda x: 1.0 - x)

    try:
        recipe = Recipe("inverted", (("pad", (2, "CONSTANT")), ("test_invert", ()), ("normalize", (False,))), 28)
        assert recipe.crop == 32 and recipe.describe() == "pad 2 (constant), invert, subtract the training mean"
        small = IMAGES[:, 2:30, 2:30]
        host = eval_transform(recipe, stats)(small).numpy()
        expected = 1.0 - np.pad(small / 255.0, [(0, 0), (2, 2), (2, 2), (0, 0)]) - np.array(stats.mean)
        np.testing.assert_allclose(host, expected, atol=1e-6)
        np.testing.assert_allclose(Augmentation(recipe, stats)(small, training=False).numpy(), host, atol=1e-6)
        assert [caption for caption, _ in preview_stages(recipe, stats)] == ["pad 2", "+ invert"]
    finally:
        del augment_ops.OPS["test_invert"]


@pytest.mark.parametrize(
    "op",
    [
        ("resize", (48,)),
        ("pad", (3, "SYMMETRIC")),
        ("crop", (20,)),
        ("flip", ()),
        ("pca_jitter", (0.1,)),
        ("normalize", (True,)),
        ("cutout", (8,)),
    ],
)
def test_each_op_gives_the_same_result_eagerly_and_inside_dataset_map(stats, op):
    from cifarkit.augment.ops import make_op

    steps = [make_op(op[0], *op[1])]
    fn = lambda x: augment.run_ops(steps, stats, x, "train", _seed(6))  # noqa: E731
    eager = fn(tf.constant(IMAGES)).numpy()
    mapped = next(iter(tf.data.Dataset.from_tensors(IMAGES).map(fn))).numpy()
    np.testing.assert_allclose(mapped, eager, atol=1e-5)


LEGACY_CONFIGS = {  # the recipe part of Augmentation configs written by cifarkit 0.1.0
    "cifar": {
        "name": "cifar",
        "crop": 32,
        "resize": None,
        "pad": 4,
        "pad_mode": "REFLECT",
        "flip": True,
        "pca_sigma": 0.0,
        "standardize": True,
    },
    "paper": {
        "name": "paper",
        "crop": 224,
        "resize": 256,
        "pad": 0,
        "pad_mode": "REFLECT",
        "flip": True,
        "pca_sigma": 0.1,
        "standardize": False,
    },
}


@pytest.mark.parametrize("name, crop", [("cifar", None), ("paper", 224)])
def test_a_version_1_layer_config_loads_as_the_same_recipe(stats, name, crop):
    config = {"name": "views", "recipe": LEGACY_CONFIGS[name], "stats": stats.to_json(), "seed": 3}
    layer = Augmentation.from_config(config)
    assert layer.recipe == get_recipe(name, crop)
    np.testing.assert_allclose(
        layer(IMAGES, training=False).numpy(), eval_transform(get_recipe(name, crop), stats)(IMAGES).numpy(), atol=1e-5
    )
    saved = layer.get_config()
    assert saved["recipe_format"] == 2 and saved["recipe"]["ops"][0][0] == ("pad" if name == "cifar" else "resize")
    assert Augmentation.from_config(saved).recipe == layer.recipe


def test_a_layer_config_from_a_newer_cifarkit_is_refused(stats):
    config = {"recipe": get_recipe("cifar").to_config(), "recipe_format": 99, "stats": stats.to_json()}
    with pytest.raises((TypeError, ValueError), match="recipe_format=99"):  # Keras wraps it in a TypeError
        Augmentation.from_config(config)


@pytest.mark.parametrize("fixture", ["augmentation-tf-0.1.0.keras", "alexnet-cifar-logits-0.1.0.keras"])
def test_models_saved_by_cifarkit_0_1_0_load_with_their_recipes(fixture):
    import keras

    model = keras.models.load_model(Path(__file__).parent / "fixtures" / fixture)
    layers = [layer for layer in model.layers if isinstance(layer, Augmentation)]
    assert layers
    for layer in layers:
        recipe = get_recipe(layer.recipe.name, layer.recipe.crop)
        assert layer.recipe == recipe
        host = eval_transform(recipe, layer.stats)(IMAGES).numpy()
        np.testing.assert_allclose(layer(IMAGES, training=False).numpy(), host, atol=1e-5)


@pytest.mark.parametrize(("name", "reach"), [("airbench", 2), ("airbench-wide", 4)])
def test_airbench_recipes_translate_by_their_reach_and_no_further(stats, name, reach):
    # Rows numbered in channel 1, zero in channel 2: a view's centre row tells how far it moved
    # (a horizontal flip leaves rows alone), the zero channel the standardisation's offset.
    from cifarkit.readers.stats import Stats

    eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    identity = Stats((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), eye, (1.0, 1.0, 1.0), eye, pixels=1, images=1)
    images = np.zeros((256, 32, 32, 3), np.uint8)
    images[..., 1] = np.arange(32, dtype=np.uint8)[None, :, None] * 4
    views = train_transform(get_recipe(name), identity)(images, _seed(5)).numpy()
    step = views[0, 17, 16, 1] - views[0, 16, 16, 1]
    rows = (views[:, 16, 16, 1] - views[:, 16, 16, 2]) / step
    shifts = np.round(rows).astype(int) - 16
    np.testing.assert_allclose(rows, np.round(rows), atol=1e-4)
    assert sorted(set(shifts.tolist())) == list(range(-reach, reach + 1))


def _holes(views: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Each view's zeroed pixels (all channels 0) as (count, top, left, side of their bounding box)."""
    out = []
    for view in views:
        rows, cols = np.nonzero((view == 0).all(-1))
        if not rows.size:
            out.append((0, -1, -1, 0))
            continue
        side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
        out.append((rows.size, int(rows.min()), int(cols.min()), int(side)))
    return out


def test_cutout_zeroes_one_whole_square_of_every_training_view_anywhere_it_fits(stats):
    # Bright images whose standardised values are nowhere zero: every zero is the hole's.
    images = np.full((400, 32, 32, 3), 250, np.uint8)
    recipe = get_recipe("airbench-cutout")
    assert recipe.describe().endswith("per-channel standardisation, cutout 12x12") and recipe.crop == 32
    holes = _holes(train_transform(recipe, stats)(images, _seed(3)).numpy())
    assert {(count, side) for count, _, _, side in holes} == {(144, 12)}  # one 12x12 square, whole
    corners = {(top, left) for _, top, left, _ in holes}
    assert {top for top, _ in corners} == set(range(21)) == {left for _, left in corners}  # 0..32-12
    assert not (eval_transform(recipe, stats)(images).numpy() == 0).any()
    device_holes = _holes(Augmentation(recipe, stats)(images, training=True).numpy())
    assert {(count, side) for count, _, _, side in device_holes} == {(144, 12)}
    assert not (Augmentation(recipe, stats)(images, training=False).numpy() == 0).any()


def test_cutout_is_the_same_arithmetic_on_both_paths_and_replays_its_draws(stats):
    from cifarkit.augment import device
    from cifarkit.augment.ops import make_op
    from cifarkit.augment.recipes import Recipe

    pixels = RNG.random((3, 10, 10, 3)).astype(np.float32) + 0.5
    corners = np.array([[0, 0], [7, 2], [3, 7]], np.int32)
    host_out = augment.cutout(tf.constant(pixels), tf.constant(corners), 3).numpy()
    np.testing.assert_array_equal(np.asarray(device.cutout(pixels, corners, 3)), host_out)
    expected = pixels.copy()
    for image, (top, left) in enumerate(corners):
        expected[image, top : top + 3, left : left + 3] = 0.0
    np.testing.assert_array_equal(host_out, expected)
    replayed = device.run_ops([make_op("cutout", 3)], stats, IMAGES[:3, :10, :10] | 1, "train", draws=[corners])
    np.testing.assert_array_equal(np.asarray(replayed) == 0, np.broadcast_to(expected[..., :1] == 0, (3, 10, 10, 3)))
    with pytest.raises(ValueError, match="size=40"):  # refused when the recipe is written
        Recipe("big", (("cutout", (40,)),), 32)
