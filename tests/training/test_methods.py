"""The trainer's methods (cifarkit.training.methods, cifarkit.evaluation.tta, the alt_flip op) on tiny data:
whitening gives whitened outputs, the weight average is the running average computed by hand,
the per-step schedule takes the values it should at given steps, test-time augmentation averages
its views, and the alternating flip mirrors every image in every other epoch exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifarkit.evaluation.tta import parse_views, tta_scorer, tta_views
from cifarkit.training.methods import (
    WarmupDecay,
    WeightAverage,
    learning_rate,
    patches,
    whiten_first_conv,
    whitening_filters,
)


def correlated_images(n=64, size=8, seed=0) -> np.ndarray:
    """Images whose neighbouring pixels and channels are strongly correlated, mean zero."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, size, size, 1))
    smooth = base + np.roll(base, 1, axis=1) + np.roll(base, 1, axis=2)
    images = np.concatenate(
        [smooth, 0.5 * smooth + 0.2 * rng.normal(size=smooth.shape), rng.normal(size=smooth.shape)], -1
    )
    return (images - images.mean(axis=(0, 1, 2))).astype(np.float32)


def test_patches_follow_the_kernel_layout():
    images = np.arange(2 * 3 * 3 * 2, dtype=np.float32).reshape(2, 3, 3, 2)
    flat = patches(images, 2, 2)
    assert flat.shape == (2 * 2 * 2, 8)
    # The first patch of the first image: rows 0-1, columns 0-1, channels inner.
    np.testing.assert_array_equal(flat[0], images[0, :2, :2, :].reshape(-1))
    # A conv with kernel k computes sum(patch * k.reshape(-1)): the same number as the layer.
    kernel = np.random.default_rng(0).normal(size=(2, 2, 2, 1)).astype(np.float32)
    conv = keras.layers.Conv2D(1, 2, padding="valid", use_bias=False)
    conv.build((None, 3, 3, 2))
    conv.kernel.assign(kernel)
    out = np.asarray(conv(images)).reshape(-1)
    np.testing.assert_allclose(out, flat @ kernel.reshape(-1), rtol=1e-5, atol=1e-4)


def test_whitening_init_gives_first_layer_outputs_with_identity_covariance():
    images = correlated_images()
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Conv2D(24, 2, padding="valid", use_bias=False, name="whiten")(inputs)
    network = keras.Model(inputs, keras.layers.Conv2D(4, 3)(outputs))
    assert whiten_first_conv(network, images, eps=1e-9) == 24
    first = np.asarray(network.get_layer("whiten")(images), np.float64).reshape(-1, 24)
    covariance = first.T @ first / len(first)
    # The 12 whitening directions: covariance the identity; their negatives: -1 against them.
    np.testing.assert_allclose(covariance[:12, :12], np.eye(12), atol=1e-3)
    np.testing.assert_allclose(covariance[:12, 12:], -np.eye(12), atol=1e-3)
    # Before whitening the patches were far from white.
    raw = patches(images, 2, 2)
    assert np.abs(raw.T @ raw / len(raw) - np.eye(12)).max() > 0.5


def test_whitening_with_fewer_filters_keeps_the_directions_of_largest_variance():
    images = correlated_images(seed=1)
    filters = whitening_filters(images, 2, 2, eps=1e-9)
    inputs = keras.Input((8, 8, 3))
    network = keras.Model(inputs, keras.layers.Conv2D(5, 2, use_bias=False, name="c")(inputs))
    assert whiten_first_conv(network, images, eps=1e-9) == 5
    np.testing.assert_allclose(np.asarray(network.get_layer("c").kernel), filters[..., :5], rtol=1e-5)
    flat = patches(images, 2, 2)
    variances = np.var(flat @ np.linalg.eigh(flat.T @ flat)[1], axis=0)
    assert np.all(np.diff(np.sort(variances)) >= 0)  # sanity: eigen-directions ordered by variance


def tiny_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="d1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="d2")(x))
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", steps_per_execution=1)
    return model


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.after_step = []

    def on_train_batch_end(self, batch, logs=None):
        self.after_step.append(
            [np.array(v.numpy(), np.float64) for v in self.model.variables if "float" in str(v.dtype)]
        )


@pytest.mark.parametrize("mode", ["ema", "lookahead"])
def test_weight_average_is_the_running_average_computed_by_hand(mode):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 4)).astype("float32"), rng.normal(size=(64, 2)).astype("float32")
    model = tiny_model()
    start = [np.array(v.numpy(), np.float64) for v in model.variables if "float" in str(v.dtype)]
    total, every = 16, 2
    average = WeightAverage(total, mode, every=every, decay=0.9, power=1)
    recorder = Recorder()  # first in the list: it sees the weights the update reads, before any pull-back
    model.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0, callbacks=[recorder, average])
    assert len(recorder.after_step) == total

    expected = [w.copy() for w in start]
    for step in range(every, total + 1, every):
        decay = 0.9**every * (step / total)
        expected = [decay * e + (1 - decay) * c for e, c in zip(expected, recorder.after_step[step - 1])]
    for got, want in zip(average.average, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # In both modes the model ends as the average.
    final = [np.array(v.numpy(), np.float64) for v in model.variables if "float" in str(v.dtype)]
    for got, want in zip(final, expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_lookahead_pulls_the_weights_onto_the_average_at_each_update():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 2)).astype("float32")
    model = tiny_model(1)
    average = WeightAverage(4, "lookahead", every=1, decay=0.5, power=0)

    class Check(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            now = [np.array(v.numpy(), np.float64) for v in self.model.variables if "float" in str(v.dtype)]
            for got, want in zip(now, average.average):
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)

    before = [np.array(v.numpy(), np.float64) for v in model.variables if "float" in str(v.dtype)]
    model.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0, callbacks=[average, Check()])
    # One step of SGD then halfway back: the average is (start + fast) / 2.
    fast = tiny_model(1)
    fast.fit(x[:8], y[:8], batch_size=8, epochs=1, verbose=0)
    after = [np.array(v.numpy(), np.float64) for v in fast.variables if "float" in str(v.dtype)]
    for got, b, a in zip(average.average, before, after):
        np.testing.assert_allclose(got, (b + a) / 2, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "step, factor", [(0, 0.2), (23, 1.0), (10, 0.2 + 0.8 * 10 / 23), (100, 0.07), (23 + 77 / 2, (1 + 0.07) / 2)]
)
def test_warmup_linear_schedule_values_at_given_steps(step, factor):
    schedule = WarmupDecay(1.5, 100, warmup=0.23, start=0.2, end=0.07, shape="linear")
    assert float(schedule(step)) == pytest.approx(1.5 * factor, rel=1e-5)


@pytest.mark.parametrize("step, factor", [(0, 0.0), (5, 0.5), (10, 1.0), (55, 0.5), (100, 0.0)])
def test_warmup_cosine_schedule_values_at_given_steps(step, factor):
    schedule = WarmupDecay(2.0, 100, warmup=0.1, start=0.0, end=0.0, shape="cosine")
    assert float(schedule(step)) == pytest.approx(2.0 * factor, abs=1e-6)


def test_the_schedule_runs_per_step_inside_the_optimizer_and_saves():
    schedule = learning_rate("warmup-linear", 1.0, 10)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    variable = keras.Variable(np.zeros(2, "float32"))
    rates = []
    for _ in range(10):
        rates.append(float(optimizer.learning_rate))
        optimizer.apply_gradients([(np.ones(2, "float32"), variable)])
    assert rates[0] == pytest.approx(0.2) and rates[2] == pytest.approx(1.0)
    assert rates == sorted(rates[:3]) + sorted(rates[2:], reverse=True)[1:]  # up, then down
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert float(again(7)) == pytest.approx(float(schedule(7)))
    assert learning_rate("cosine", 0.05, 10) == 0.05  # the per-epoch schedules keep a number


def test_tta_views_weights_and_the_translations():
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    views = tta_views(images, ("flip", "translate"))
    assert len(views) == 6 and sum(w for w, _ in views) == pytest.approx(1.0)
    assert dict((id(v), w) for w, v in views)  # six arrays
    shifted = views[2][1]  # moved one pixel down-right: the reflection of row/column 1 on the edge
    np.testing.assert_array_equal(shifted[:, 1:, 1:], images[:, :-1, :-1])
    np.testing.assert_array_equal(shifted[:, 0, 1:], images[:, 1, :-1])
    np.testing.assert_array_equal(views[1][1], images[:, :, ::-1])
    assert parse_views("translate, flip") == ("flip", "translate") and parse_views("none") == ()


def test_tta_flip_is_the_mean_of_the_image_and_its_mirrors_softmax():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 6, 6, 3), dtype=np.uint8)
    weights = rng.normal(size=(6 * 6 * 3, 4))

    def infer(batch):  # a model that is not mirror-symmetric
        logits = batch.reshape(len(batch), -1).astype(np.float64) / 255 @ weights
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    averaged = tta_scorer(infer, ("flip",))(images)
    np.testing.assert_allclose(averaged, (infer(images) + infer(images[:, :, ::-1])) / 2, rtol=1e-6)
    assert tta_scorer(infer, ()) is infer


def alt_flip_views(epoch: int, images: np.ndarray, device: bool) -> np.ndarray:
    from cifarkit.augment.ops import make_op
    from cifarkit.readers.stats import Stats

    eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    stats = Stats((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), eye, (1.0, 1.0, 1.0), eye, pixels=1, images=1)
    if device:
        from cifarkit.augment.device import run_ops

        return np.asarray(run_ops([make_op("alt_flip")], stats, images, "train", [None], epoch=epoch))
    from cifarkit.augment.host import run_ops

    return run_ops([make_op("alt_flip")], stats, images, "train", seed=np.array([1, 2]), epoch=epoch).numpy()


@pytest.mark.parametrize("device", [False, True], ids=["host", "device"])
def test_alternating_flip_flips_every_other_epoch_exactly(device):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 5, 5, 3), dtype=np.uint8)
    unit = images.astype(np.float32) / 255
    flipped = []
    for epoch in range(5):
        views = alt_flip_views(epoch, images, device)
        mirrored = np.all(np.isclose(views, unit[:, :, ::-1]), axis=(1, 2, 3))
        assert np.all(mirrored | np.all(np.isclose(views, unit), axis=(1, 2, 3)))  # each view one or the other
        flipped.append(mirrored)
    flipped = np.array(flipped)
    assert np.all(flipped[1:] != flipped[:-1])  # every image changes side at every epoch
    assert 5 <= flipped[0].sum() <= 35  # some start mirrored, some not
    assert np.array_equal(flipped[0], flipped[2]) and np.array_equal(flipped[1], flipped[3])


def test_whitenet_trains_with_every_method_on_and_reports_them(tmp_path):
    """The whole command with the model's defaults (whitening, Lookahead, the per-step schedule,
    alt_flip on the device, test-time views in the report), at tiny widths on tiny data and a
    rate for its tiny batch."""
    import json

    from synth import make_learnable_cifar10
    from typer.testing import CliRunner

    from cifarkit.cli import app
    from cifarkit.data import open_data
    from cifarkit.evaluation.evaluate import evaluate_model
    from cifarkit.modelio.keras_file import load_model
    from cifarkit.training.rundir import read_history

    data = make_learnable_cifar10(tmp_path / "data", per_batch=32, test=40)
    workdir = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train",
            "whitenet",
            "--data",
            str(data.path),
            "--workdir",
            str(workdir),
            "--epochs",
            "3",
            "--batch-size",
            "32",
            "-m",
            "widths=8,16,16",
            "--lr",
            "0.2",  # airbench's 1.5 is for batches of 1024: at 32 it makes these three epochs chaotic
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "with test-time flip,translate" in result.stdout
    report = json.loads((workdir / "report.json").read_text())
    config = report["config"]
    assert (config["averaging"], config["whiten"], config["schedule"], config["recipe"], config["augment_on"]) == (
        "lookahead",
        True,
        "warmup-linear",
        "airbench",
        "device",
    )
    tta = report["test"]["tta"]
    assert tta["model"] == "last.keras" and tta["views"] == "flip,translate" and 0 <= tta["tta_accuracy"] <= 1
    # The centre view is scored once, inside the test-time pass, and reported from it.
    centre = evaluate_model(load_model(workdir / "last.keras"), open_data(data.path), "test")
    assert tta["accuracy"] == report["test"]["accuracy"] == centre.accuracy
    rows = read_history(workdir / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    walls = [r["wall_seconds"] for r in rows]
    assert walls == sorted(walls) and all(r["epoch_seconds"] >= r["train_seconds"] for r in rows)
    assert rows[-1]["lr"] == pytest.approx(config["lr"] * 0.07, rel=1e-4)  # the schedule's end, per step
    assert rows[-1]["loss"] < rows[0]["loss"]
    # The saved model's augmentation counted the epochs it trained (alt_flip reads it).
    import keras

    model = keras.models.load_model(workdir / "last.keras")
    assert int(np.asarray(model.get_layer("preprocess").epoch)) == 2


def test_the_host_pipeline_flips_by_the_epoch_the_trainer_sets():
    import tensorflow as tf

    from cifarkit.augment.recipes import epoch_variable, get_recipe, train_transform

    eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    from cifarkit.readers.stats import Stats

    stats = Stats((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), eye, (1.0, 1.0, 1.0), eye, pixels=1, images=1)
    recipe = get_recipe("airbench")
    assert epoch_variable(get_recipe("cifar")) is None
    epoch = epoch_variable(recipe)
    transform = train_transform(recipe, stats, epoch)
    images = np.random.default_rng(0).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    seed = tf.constant([3, 4], tf.int64)
    dataset = tf.data.Dataset.from_tensors(images).map(lambda batch: transform(batch, seed))
    first = next(iter(dataset)).numpy()
    epoch.assign(1)  # what EpochCounter does as the next epoch begins; the same crops (same seed)
    second = next(iter(dataset)).numpy()
    np.testing.assert_allclose(second, first[:, :, ::-1], atol=1e-6)


def test_whitenet_trains_with_host_augmentation_too(tmp_path):
    from synth import make_learnable_cifar10
    from typer.testing import CliRunner

    from cifarkit.cli import app

    data = make_learnable_cifar10(tmp_path / "data", per_batch=16, test=20)
    result = CliRunner().invoke(
        app,
        [
            "train",
            "whitenet",
            "--data",
            str(data.path),
            "--workdir",
            str(tmp_path / "run"),
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "-m",
            "widths=8,8,8",
            "--augment-on",
            "host",
            "--tta",
            "flip",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "with test-time flip" in result.stdout
