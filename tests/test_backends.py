"""Every model and the device augmentation on each Keras backend: TensorFlow, JAX and PyTorch.

Keras picks its backend when it is imported, so each backend runs in a subprocess: this file run
as a script (``python tests/test_backends.py BACKEND OUT``), with TensorFlow blocked on the JAX
and PyTorch backends so that nothing on those paths can lean on it. The subprocess records what
it measured (numbers and arrays) and the tests below check it here, against the TensorFlow host
path of cifarkit.augment.recipes where there is one. A backend whose package is not installed is skipped
(``pip install -e '.[backends]'`` installs JAX; PyTorch is a separate wheel).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np

BACKENDS = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}  # backend -> the package it needs
FIXTURE = Path(__file__).parent / "fixtures" / "augmentation-tf-0.1.0.keras"
# Position-coded test image: red = 8 x row, green = 8 x column, so a window's corner and mirror
# can be read back from the pixels it shows.
CODE_STEP = 8
CIFAR_CENTRE = 16  # an output pixel whose source lies inside the image for every offset
DRAW_BATCHES, DRAW_BATCH = 40, 64  # 2,560 random views per check
WORKER_TIMEOUT = 900
# Windows reaching into every side of a 5-pixel padding, mirrored and not.
PAD_WINDOWS = (np.array([[0, 0], [10, 10], [0, 10], [10, 3]], np.int32), np.array([False, True, True, False]))


def _images(count: int = 4, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def _coded_images(count: int) -> np.ndarray:
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    image = np.stack([rows * CODE_STEP, cols * CODE_STEP, np.full_like(rows, 128)], axis=-1).astype(np.uint8)
    return np.repeat(image[None], count, axis=0)


# --------------------------------------------------------------------------------------------
# The worker: runs in a subprocess under one backend


def _check_models(out: Path) -> dict:
    """Build every registered model, train one step, save, load, and compare predictions."""
    import keras
    from keras import ops

    from cifarkit.models import create_model, list_models

    small = {"alexnet": {"groups": 2, "input_shape": (67, 67, 3)}, "alexnet-cifar": {"width": 0.25}}
    results = {}
    for info in list_models():
        keras.utils.set_random_seed(0)
        model = create_model(info.name, num_classes=5, **small.get(info.name, {}))
        size = model.input_shape[1]
        x = np.random.default_rng(1).normal(size=(4, size, size, 3)).astype("float32")
        y = np.array([0, 1, 2, 3])
        model.compile(
            optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        before = [ops.convert_to_numpy(w) for w in model.trainable_weights]
        loss = float(model.train_on_batch(x, y))
        moved = sum(not np.array_equal(a, ops.convert_to_numpy(b)) for a, b in zip(before, model.trainable_weights))
        path = out / f"{info.name}.keras"
        model.save(path)
        loaded = keras.models.load_model(path)
        # Eager calls: a compiled predict function would cost each model another compilation.
        predicted = ops.convert_to_numpy(model(x, training=False))
        reloaded = ops.convert_to_numpy(loaded(x, training=False))
        path.unlink()
        results[info.name] = {
            "loss": loss,
            "moved": moved,
            "weights": len(before),
            "reload_error": float(np.abs(predicted - reloaded).max()),
            "finite": bool(np.isfinite(predicted).all()),
            "dtype": str(predicted.dtype),
        }
    return results


def _check_lrn() -> dict:
    """LRN on this backend, in float32 and under mixed precision, for the parent to compare."""
    from keras import ops

    from cifarkit.models.layers import LocalResponseNormalization

    a = np.random.default_rng(1).normal(scale=50, size=(2, 3, 4, 11)).astype("float32")
    half = LocalResponseNormalization(dtype="mixed_bfloat16")(a)
    return {
        "lrn_input": a,
        "lrn": ops.convert_to_numpy(LocalResponseNormalization()(a)),
        "lrn_bfloat16": ops.convert_to_numpy(ops.cast(half, "float32")),
        "lrn_bfloat16_dtype": str(half.dtype),
    }


def _check_fixed_views() -> dict:
    """Centre windows and ten crops of each recipe, through the functions and through the layer."""
    from keras import ops

    from cifarkit.augment import device as device_augment
    from cifarkit.augment.layer import Augmentation
    from cifarkit.augment.ops import PAD_MODES
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.readers.stats import bundled_stats

    stats = bundled_stats("cifar10")
    arrays = {}
    for name, crop in [("paper", 227), ("paper", 224), ("cifar", None)]:
        recipe = get_recipe(name, crop)
        key = f"{name}{recipe.crop}"
        arrays[f"eval_{key}"] = ops.convert_to_numpy(device_augment.run_ops(recipe.steps, stats, _images(), "eval"))
        arrays[f"ten_{key}"] = ops.convert_to_numpy(device_augment.run_ops(recipe.steps, stats, _images(), "ten_crop"))
        arrays[f"layer_{key}"] = ops.convert_to_numpy(Augmentation(recipe, stats)(_images(), training=False))
    offsets, flips = PAD_WINDOWS
    for mode in PAD_MODES:
        windows = device_augment.crop_windows(
            _images() / 255.0, offsets, flips, resize=None, crop=32, pad=5, pad_mode=mode
        )
        arrays[f"pad_{mode}"] = ops.convert_to_numpy(windows)
    return arrays


def _check_legacy_file() -> dict:
    """A .keras file saved by the TensorFlow-only Augmentation layer of cifarkit 0.1.0."""
    import keras
    from keras import ops

    import cifarkit.augment.layer  # noqa: F401  (registers cifarkit>Augmentation)

    model = keras.models.load_model(FIXTURE)
    views = keras.Model(model.inputs, [model.get_layer("cifar_views").output, model.get_layer("paper_views").output])
    cifar, paper = views.predict(_images(), verbose=0)
    return {"legacy_cifar": cifar, "legacy_paper": paper, "legacy_head": ops.convert_to_numpy(model(_images()))}


def _by_op(layer, draws) -> dict:
    """A layer's draws (one per op) keyed by the op's name, as numpy arrays."""
    from keras import ops

    return {op.name: ops.convert_to_numpy(value) for op, value in zip(layer.steps, draws) if value is not None}


def _layer_draws(layer, images, batches: int) -> dict:
    draws = [_by_op(layer, layer.draw(images.shape[0], images.shape[1])) for _ in range(batches)]
    names = {"crop": "offsets", "flip": "flips", "pca_jitter": "alpha"}
    return {names[op]: np.concatenate([d[op] for d in draws]) for op in draws[0]}


def _check_random_views() -> dict:
    """What the layer does in training: pixels of random views, draws, reproducibility."""
    from keras import ops

    from cifarkit.augment.layer import Augmentation
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.readers.stats import bundled_stats

    stats, coded = bundled_stats("cifar10"), _coded_images(DRAW_BATCH)
    cifar = Augmentation(get_recipe("cifar"), stats, seed=1)
    trained = np.concatenate([ops.convert_to_numpy(cifar(coded, training=True)) for _ in range(DRAW_BATCHES)])
    paper = Augmentation(get_recipe("paper"), stats, seed=2)
    arrays = {f"paper_{k}": v for k, v in _layer_draws(paper, coded, DRAW_BATCHES).items()}
    # The training output is the views of the layer's own draw: replay the seed and compare.
    state = ops.convert_to_numpy(paper.seed_generator.state)
    draw = paper.draw(4, 32)
    paper.seed_generator.state.assign(state)
    arrays["paper_trained"] = ops.convert_to_numpy(paper(_images(), training=True))
    arrays["paper_replayed"] = ops.convert_to_numpy(paper.views(_images(), draw))
    arrays["paper_draw_alpha"] = _by_op(paper, draw)["pca_jitter"]
    again = [Augmentation(get_recipe("cifar"), stats, seed=seed)(_images(), training=True) for seed in (7, 7, 8)]
    arrays["seeded"] = np.stack([ops.convert_to_numpy(x) for x in again])
    arrays["cifar_centre"] = trained[:, CIFAR_CENTRE - 1 : CIFAR_CENTRE + 2, CIFAR_CENTRE - 1 : CIFAR_CENTRE + 2]
    return arrays


def _check_training_model(out: Path) -> dict:
    """uint8 -> Augmentation -> a small network: one training step, then a .keras round trip."""
    import keras

    from cifarkit.augment.layer import Augmentation
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.readers.stats import bundled_stats

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = Augmentation(get_recipe("cifar"), bundled_stats("cifar10"), seed=3, name="preprocess")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    loss = float(model.train_on_batch(_images(8), np.arange(8) % 3))
    model.save(out / "augmented.keras")
    loaded = keras.models.load_model(out / "augmented.keras")
    error = np.abs(loaded.predict(_images(), verbose=0) - model.predict(_images(), verbose=0)).max()
    return {"loss": loss, "reload_error": float(error), "layer": type(loaded.get_layer("preprocess")).__name__}


def worker(backend: str, out: Path) -> None:
    if backend != "tensorflow":
        sys.modules["tensorflow"] = None  # any import of TensorFlow on this path now fails
    os.environ["KERAS_BACKEND"] = backend
    import keras

    report = {"backend": keras.backend.backend(), "errors": {}}
    arrays = {}
    for name, check in [
        ("models", lambda: _check_models(out)),
        ("lrn", _check_lrn),
        ("fixed", _check_fixed_views),
        ("legacy", _check_legacy_file),
        ("random", _check_random_views),
        ("training", lambda: _check_training_model(out)),
    ]:
        try:
            result = check()
        except Exception:  # noqa: BLE001  (recorded, so one failure does not hide the other checks)
            report["errors"][name] = traceback.format_exc()
            continue
        if any(isinstance(v, np.ndarray) for v in result.values()):
            arrays.update({k: v for k, v in result.items() if isinstance(v, np.ndarray)})
            result = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
        report[name] = result
    report["tensorflow_loaded"] = sys.modules.get("tensorflow") is not None
    np.savez(out / "arrays.npz", **arrays)
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    worker(sys.argv[1], Path(sys.argv[2]))
    sys.exit(0)


# --------------------------------------------------------------------------------------------
# The tests

import pytest  # noqa: E402

LEVELS = 255.0  # intensity levels per unit of the [0, 1] scale


@pytest.fixture(scope="module", params=list(BACKENDS))
def run(request, tmp_path_factory):
    backend = request.param
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"the {backend} backend needs the {BACKENDS[backend]} package, which is not installed")
    out = tmp_path_factory.mktemp(f"backend-{backend}")
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [sys.executable, __file__, backend, str(out)], env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    with np.load(out / "arrays.npz") as arrays:
        report["arrays"] = dict(arrays)
    return report


def _ok(run, check: str) -> dict:
    assert check not in run["errors"], f"{run['backend']}: {run['errors'].get(check)}"
    return run[check]


@pytest.fixture(scope="module")
def stats():
    from cifarkit.readers.stats import bundled_stats

    return bundled_stats("cifar10")


def test_the_worker_ran_on_its_backend_and_only_tensorflow_loads_tensorflow(run):
    assert run["tensorflow_loaded"] == (run["backend"] == "tensorflow")


def test_every_model_trains_a_step_and_survives_a_keras_file(run):
    from cifarkit.models import list_models

    models = _ok(run, "models")
    assert set(models) == {m.name for m in list_models()}
    for name, result in models.items():
        assert np.isfinite(result["loss"]) and result["finite"] and result["dtype"] == "float32", (name, result)
        assert result["moved"] == result["weights"], f"{name}: only {result['moved']} of {result['weights']} moved"
        assert result["reload_error"] < 1e-5, (name, result)


def test_lrn_matches_the_paper_formula_on_every_backend(run):
    from test_models import _paper_lrn

    _ok(run, "lrn")
    a = run["arrays"]
    np.testing.assert_allclose(a["lrn"], _paper_lrn(a["lrn_input"]), rtol=1e-5)
    np.testing.assert_allclose(a["lrn_bfloat16"], _paper_lrn(a["lrn_input"]), rtol=2e-2, atol=1e-2)


@pytest.mark.parametrize("name, crop", [("paper", 227), ("paper", 224), ("cifar", None)])
def test_centre_and_ten_crops_match_the_host_path_within_1e_3_levels(run, stats, name, crop):
    from cifarkit.augment.recipes import eval_transform, get_recipe, ten_crop_transform

    _ok(run, "fixed")
    recipe = get_recipe(name, crop)
    scale = LEVELS * (np.asarray(stats.std) if recipe.arg("normalize") else 1.0)  # output units -> levels
    key = f"{name}{recipe.crop}"
    host_eval = eval_transform(recipe, stats)(_images()).numpy()
    host_ten = ten_crop_transform(recipe, stats)(_images()).numpy()
    for device, host in [(f"eval_{key}", host_eval), (f"layer_{key}", host_eval), (f"ten_{key}", host_ten)]:
        levels = np.abs(run["arrays"][device] - host) * scale
        assert run["arrays"][device].shape == host.shape
        assert levels.max() < 1e-3, f"{device}: {levels.max():.2e} levels from the host path"


@pytest.mark.parametrize("mode", ["REFLECT", "SYMMETRIC", "CONSTANT"])
def test_padded_windows_read_the_padding_as_tf_pad_fills_it(run, mode):
    from cifarkit.augment import host as augment

    _ok(run, "fixed")
    offsets, flips = PAD_WINDOWS
    host = augment.crop_windows(_images() / 255.0, offsets, flips, resize=None, crop=32, pad=5, pad_mode=mode)
    np.testing.assert_allclose(run["arrays"][f"pad_{mode}"], host.numpy(), atol=1e-6)


def test_a_model_saved_by_the_tensorflow_only_layer_loads_and_gives_the_same_views(run, stats):
    from cifarkit.augment.recipes import eval_transform, get_recipe

    _ok(run, "legacy")
    cifar, paper = get_recipe("cifar"), get_recipe("paper", 224)
    np.testing.assert_allclose(
        run["arrays"]["legacy_cifar"], eval_transform(cifar, stats)(_images()).numpy(), atol=1e-5
    )
    np.testing.assert_allclose(
        run["arrays"]["legacy_paper"], eval_transform(paper, stats)(_images()).numpy(), atol=1e-5
    )
    assert run["arrays"]["legacy_head"].shape == (4, 4)


def _windows_from_coded_centre(centre: np.ndarray, stats) -> tuple[np.ndarray, np.ndarray]:
    """(row offset, column offset) and mirror flag of cifar-recipe views of the coded image,
    from the 3x3 output pixels around CIFAR_CENTRE (standardised values back to 0-255)."""
    values = np.rint((centre * np.asarray(stats.std) + np.asarray(stats.mean)) * 255).astype(int)
    rows, cols = values[..., 0] // CODE_STEP, values[..., 1] // CODE_STEP
    flips = cols[:, 1, 2] < cols[:, 1, 1]
    pad = 4
    # Output pixel i of a window at offset o shows padded pixel o + i, or o + 31 - i mirrored.
    row_offsets = rows[:, 1, 1] + pad - CIFAR_CENTRE
    col_offsets = np.where(flips, cols[:, 1, 1] + pad - (31 - CIFAR_CENTRE), cols[:, 1, 1] + pad - CIFAR_CENTRE)
    return np.stack([row_offsets, col_offsets], axis=1), flips


def _chi_square_critical(dof: int, z: float = 3.09) -> float:
    """The chi-square value exceeded with probability 0.001 (z = 3.09), by the Wilson-Hilferty
    approximation (within 1% for these degrees of freedom; no scipy needed)."""
    return dof * (1 - 2 / (9 * dof) + z * np.sqrt(2 / (9 * dof))) ** 3


def _assert_uniform(values: np.ndarray, low: int, high: int, what: str) -> None:
    """Chi-square test against the uniform distribution on [low, high], at p = 0.001."""
    assert values.min() >= low and values.max() <= high, f"{what}: outside [{low}, {high}]"
    counts = np.bincount(values - low, minlength=high - low + 1)
    expected = len(values) / len(counts)
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < _chi_square_critical(len(counts) - 1), (
        f"{what}: counts {counts.tolist()} are not uniform (chi2 {chi2:.1f})"
    )


def test_random_cifar_views_shift_and_mirror_as_the_host_path_does(run, stats):
    import tensorflow as tf

    from cifarkit.augment.recipes import get_recipe, train_transform

    _ok(run, "random")
    device_offsets, device_flips = _windows_from_coded_centre(run["arrays"]["cifar_centre"], stats)
    transform = train_transform(get_recipe("cifar"), stats)
    host = np.concatenate(
        [transform(_coded_images(DRAW_BATCH), tf.constant([9, i], tf.int64)).numpy() for i in range(DRAW_BATCHES)]
    )
    c = CIFAR_CENTRE
    host_offsets, host_flips = _windows_from_coded_centre(host[:, c - 1 : c + 2, c - 1 : c + 2], stats)
    for where, offsets, flips in [("device", device_offsets, device_flips), ("host", host_offsets, host_flips)]:
        assert abs(flips.mean() - 0.5) < 0.04, f"{where}: flip rate {flips.mean():.3f}"
        _assert_uniform(offsets[:, 0], 0, 8, f"{where} row offsets")
        _assert_uniform(offsets[:, 1], 0, 8, f"{where} column offsets")


def test_random_paper_draws_have_the_recipes_distribution(run, stats):
    _ok(run, "random")
    a = run["arrays"]
    _assert_uniform(a["paper_offsets"][:, 0], 0, 256 - 227, "row offsets")
    _assert_uniform(a["paper_offsets"][:, 1], 0, 256 - 227, "column offsets")
    assert abs(a["paper_flips"].mean() - 0.5) < 0.04
    alpha = a["paper_alpha"]  # N(0, 0.1) per image and eigenvector, independent
    np.testing.assert_allclose(alpha.std(axis=0), 0.1, atol=0.006)
    np.testing.assert_allclose(alpha.mean(axis=0), 0.0, atol=0.008)
    assert np.abs(np.corrcoef(alpha.T) - np.eye(3)).max() < 0.08


def test_a_training_view_is_the_view_of_the_layers_own_draw(run, stats):
    _ok(run, "random")
    a = run["arrays"]
    np.testing.assert_allclose(a["paper_trained"], a["paper_replayed"], atol=1e-6)
    # The jitter moves each image by P @ (alpha * lambda), the same offset at every pixel.
    shift = np.asarray(stats.eigenvectors) @ (a["paper_draw_alpha"] * np.asarray(stats.eigenvalues)).T
    assert np.abs(shift).max() > 1e-3  # a real colour change, not zero


def test_the_same_seed_gives_the_same_views_and_another_seed_others(run):
    _ok(run, "random")
    same, again, other = run["arrays"]["seeded"]
    np.testing.assert_array_equal(same, again)
    assert not np.allclose(same, other)


def test_an_augmented_model_trains_a_step_and_round_trips(run):
    result = _ok(run, "training")
    assert np.isfinite(result["loss"]) and result["layer"] == "Augmentation"
    assert result["reload_error"] < 1e-6
