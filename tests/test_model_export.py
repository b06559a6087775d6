"""``cifarkit export-model``: a SavedModel laid out for TensorFlow Serving and TFLite files (float32,
float16, int8) that run where cifarkit is not installed and agree with ``cifarkit predict``;
``evaluate`` and ``predict`` read them back."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import sysconfig

import imageio.v3 as iio
import numpy as np
import pytest
import synth
from synth import make_learnable_cifar10
from typer.testing import CliRunner

from cifarkit.cli import app

runner = CliRunner()
VARIANTS = {
    "savedmodel": ("savedmodel", "none"),
    "tflite": ("tflite", "none"),
    "float16": ("tflite", "float16"),
    "int8": ("tflite", "int8"),
}


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_learnable_cifar10(tmp_path_factory.mktemp("export-data"), per_batch=40, test=60, noise=0.85, seed=3)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("export-runs") / "run"
    invoke(
        "train", "lenet5", "--data", data.path, "--workdir", workdir, "--epochs", "2", "--batch-size", "16", "--quiet"
    )
    return workdir


@pytest.fixture(scope="module")
def exported(run):
    paths = {}
    for variant, (fmt, quantize) in VARIANTS.items():
        result = invoke(
            "export-model", run, "--format", fmt, "--quantize", quantize, "--calibration-images", "100", "--quiet"
        )
        paths[variant] = result.stdout.split("wrote ", 1)[1].split(" (", 1)[0]
    return paths


@pytest.fixture(scope="module")
def images(data, tmp_path_factory):
    """Eight test images as PNG files, and one 48x80 photo-sized image (the SavedModel resizes it)."""
    folder = tmp_path_factory.mktemp("export-images")
    for i in range(8):
        iio.imwrite(folder / f"test_{i}.png", data.test_images[i])
    wide = np.clip(np.repeat(np.repeat(data.test_images[8], 3, axis=0), 5, axis=1)[:48, :80], 0, 255).astype(np.uint8)
    iio.imwrite(folder / "wide.png", wide)
    return folder


def predicted(run_or_model, images, tmp_path, name="p.csv") -> dict[str, np.ndarray]:
    """``cifarkit predict``'s probabilities per file, in class order."""
    out = tmp_path / name
    invoke("predict", run_or_model, images, "--top-k", "10", "--csv", out)
    with open(out, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    vectors = {}
    for row in rows:
        by_class = dict(zip(row[3::2], map(float, row[4::2])))
        vectors[row[0].rsplit("/", 1)[-1]] = np.array([by_class[name] for name in synth.CIFAR10_CLASSES])
    return vectors


# Runs where cifarkit cannot be imported: site-packages on the path without its .pth files
# (the editable install of cifarkit is one), -I ignores PYTHONPATH, cwd is outside the repository.
OUTSIDE = """
import json, sys
sys.path.append({site!r})
try:
    import cifarkit
    importable = True
except ImportError:
    importable = False
import numpy as np, tensorflow as tf
images = np.load({images!r})
wide = np.load({wide!r})
out = {{"cifarkit_importable": importable}}
served = tf.saved_model.load({savedmodel!r}).signatures["serving_default"]
result = served(images=tf.constant(images))
out["savedmodel"] = {{"p": result["probabilities"].numpy().tolist(),
                      "names": [n.decode() for n in result["class_names"].numpy()[0]],
                      "wide": served(images=tf.constant(wide[None]))["probabilities"].numpy()[0].tolist()}}
for variant in ("tflite", "float16", "int8"):
    runner = tf.lite.Interpreter(model_path={tflite!r}[variant]).get_signature_runner("serving_default")
    result = runner(images=images)
    out[variant] = {{"p": result["probabilities"].tolist(), "names": [n.decode() for n in result["class_names"][0]]}}
print(json.dumps(out))
"""


def test_exported_models_run_without_cifarkit_and_agree_with_predict(run, exported, images, data, tmp_path):
    batch = np.stack([iio.imread(images / f"test_{i}.png") for i in range(8)])
    np.save(tmp_path / "images.npy", batch)
    np.save(tmp_path / "wide.npy", iio.imread(images / "wide.png"))
    code = OUTSIDE.format(
        site=sysconfig.get_paths()["purelib"],
        images=str(tmp_path / "images.npy"),
        wide=str(tmp_path / "wide.npy"),
        savedmodel=exported["savedmodel"],
        tflite={k: exported[k] for k in ("tflite", "float16", "int8")},
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outside = json.loads(done.stdout.strip().splitlines()[-1])
    assert outside["cifarkit_importable"] is False

    expected = predicted(run, images, tmp_path)
    want = np.stack([expected[f"test_{i}.png"] for i in range(8)])
    for variant in VARIANTS:
        assert outside[variant]["names"] == synth.CIFAR10_CLASSES
        got = np.array(outside[variant]["p"])
        # int8: the softmax itself is quantised, its outputs are multiples of 1/256
        np.testing.assert_allclose(got.sum(axis=1), 1, atol=2e-2 if variant == "int8" else 1e-4)
        if variant in ("savedmodel", "tflite"):  # float32 exports: the same numbers
            np.testing.assert_allclose(got, want, atol=1e-4)
        elif variant == "float16":  # float16 weights: close, the same classes
            np.testing.assert_allclose(got, want, atol=2e-2)
            assert (got.argmax(axis=1) == want.argmax(axis=1)).all()
        else:  # int8: the same class for most images
            assert np.mean(got.argmax(axis=1) == want.argmax(axis=1)) >= 0.75
    # Any size in the SavedModel: resized inside as predict resizes.
    np.testing.assert_allclose(outside["savedmodel"]["wide"], expected["wide.png"], atol=1e-4)


def test_the_savedmodel_is_laid_out_for_tensorflow_serving_and_versions_count_up(run, exported, tmp_path):
    from pathlib import Path

    first = Path(exported["savedmodel"])
    assert first == run / "exported" / "lenet5" / "1"
    assert (first / "saved_model.pb").is_file() and (first / "variables" / "variables.index").is_file()
    result = invoke("export-model", run, "--out", tmp_path / "serving", "--name", "cifar")
    assert "tensorflow serving" in result.stdout.lower()
    invoke("export-model", run, "--out", tmp_path / "serving", "--name", "cifar", "--quiet")
    assert sorted(p.name for p in (tmp_path / "serving" / "cifar").iterdir()) == ["1", "2"]  # no leftovers


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_evaluate_and_predict_read_exported_models(run, exported, images, data, tmp_path, variant):
    keras_metrics = json.loads((run / "report.json").read_text())["test"]
    out = tmp_path / "eval"
    invoke("evaluate", exported[variant], "--data", data.path, "--out", out, "--quiet")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 60
    if variant == "int8":
        assert abs(metrics["accuracy"] - keras_metrics["accuracy"]) <= 0.1
    else:
        assert metrics["accuracy"] == pytest.approx(
            keras_metrics["accuracy"], abs=1 / 60 if variant == "float16" else 0
        )
    by_keras, by_export = predicted(run, images, tmp_path, "k.csv"), predicted(exported[variant], images, tmp_path)
    tolerance = {"savedmodel": 1e-5, "tflite": 1e-4, "float16": 2e-2, "int8": 1.0}[variant]
    files = sorted(by_export) if variant == "savedmodel" else [f"test_{i}.png" for i in range(8)]
    if variant != "savedmodel":  # TFLite takes the training size only; predict resizes before
        assert sorted(by_export) == sorted(by_keras)
    for name in files:
        np.testing.assert_allclose(by_export[name], by_keras[name], atol=tolerance)


@pytest.mark.parametrize("variant", ["tflite", "float16", "int8"])
def test_tflite_refuses_images_of_another_size(exported, variant):
    """The interpreter resizes its input tensor to whatever it is given, so a 64x64 batch used to
    run through a 32x32 model and answer (top-1 as at 32x32 on 9 of 40 images); now the graph
    itself stops. The right size still runs."""
    import tensorflow as tf

    runner = tf.lite.Interpreter(model_path=exported[variant]).get_signature_runner("serving_default")
    for side in (64, 96, 16):
        with pytest.raises(RuntimeError, match="gather index out of bounds"):
            runner(images=np.zeros((2, side, side, 3), np.uint8))
    with pytest.raises(RuntimeError, match="gather index out of bounds"):
        runner(images=np.zeros((1, 32, 32, 1), np.uint8))  # grey into a colour model
    assert runner(images=np.zeros((3, 32, 32, 3), np.uint8))["probabilities"].shape == (3, 10)


def test_the_savedmodel_says_in_its_metadata_that_it_resizes(exported):
    """What TensorFlow Serving's users see (saved_model_cli, the model metadata API): the
    serving signature takes any size, and the metadata signature has a 'resize' output that says
    what happens to other sizes."""
    import shutil

    import tensorflow as tf

    loaded = tf.saved_model.load(exported["savedmodel"])
    note = loaded.signatures["metadata"]()["resize"].numpy().decode()
    assert "other sizes than 32x32 are cropped to their central square and resized to 32x32" in note
    images = loaded.signatures["serving_default"].structured_input_signature[1]["images"]
    assert images.shape.as_list() == [None, None, None, 3]
    cli = shutil.which("saved_model_cli") or os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    if os.path.exists(cli):
        shown = subprocess.run(
            [cli, "show", "--dir", exported["savedmodel"], "--tag_set", "serve", "--signature_def", "metadata"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert "outputs['resize']" in shown.stdout, shown.stderr[-2000:]


def test_export_refuses_what_it_cannot_do_with_one_line(run, exported, tmp_path):
    cases = [
        (["export-model", run, "--format", "savedmodel", "--quantize", "int8"], 2, "for --format tflite"),
        (["export-model", exported["tflite"]], 2, "exported already"),
        (["export-model", run, "--format", "pytorch"], 2, "--format"),
        (["export-model", run, "--name", "a/b"], 2, "plain file name"),
    ]
    for args, code, words in cases:
        result = runner.invoke(app, [str(a) for a in args])
        assert result.exit_code == code, result.output
        assert words in result.output and "Traceback" not in result.output
    damaged = tmp_path / "damaged.tflite"
    damaged.write_bytes(b"not a flatbuffer" * 10)
    result = runner.invoke(app, ["evaluate", str(damaged), "--quiet"])
    assert result.exit_code == 1 and "--trust-model" in result.output  # not cifarkit's: not run at all
    result = runner.invoke(app, ["evaluate", str(damaged), "--trust-model", "--quiet"])
    assert result.exit_code == 1 and "cannot load the TFLite model" in result.output
    result = runner.invoke(app, ["evaluate", exported["tflite"], "--ten-crop", "--quiet"])
    assert result.exit_code == 2 and "--ten-crop needs the .keras model" in result.output


def test_cli_choices_are_the_library_names():
    from cifarkit.cli import options
    from cifarkit.modelio import export as model_export

    assert sorted(e.value for e in options.ModelFormat) == sorted(model_export.FORMATS)
    assert sorted(e.value for e in options.Quantize) == sorted(model_export.QUANTIZATIONS)


def test_int8_calibration_images_are_spread_over_the_split(data):
    from cifarkit.data import open_data
    from cifarkit.modelio.export import calibration_images

    picked = calibration_images(open_data(data.path), 32, count=50)
    assert picked.shape == (50, 32, 32, 3) and picked.dtype == np.uint8
    train, _ = __import__("cifarkit.readers.reader", fromlist=["to_numpy"]).to_numpy(
        open_data(data.path).dataset("train")
    )
    np.testing.assert_array_equal(picked, train[::4][:50])  # every 4th of 200, not the first 50


@pytest.mark.parametrize(
    "recipe_name, crop, side", [("paper", 227, 32), ("paper", 224, 48), ("cifar", None, 32), ("mnist", None, 28)]
)
def test_the_tflite_view_is_the_saved_models_evaluation_view(recipe_name, crop, side):
    """TFLite gets the recipe's evaluation view through plain ops (resize, pad, slice, normalise),
    because int8 quantisation rounded the float gather indices of the fused window and shifted
    the pixels (65.7% instead of 80.8% top-1 on a real run; 80.7% with plain ops). Same view, to
    a thousandth of an intensity level."""
    from cifarkit.augment.layer import Augmentation
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.modelio.export import static_eval_view
    from cifarkit.readers.stats import Stats

    channels = 1 if recipe_name == "mnist" else 3
    recipe = get_recipe(recipe_name, crop)
    stats = Stats(
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        covariance=tuple(map(tuple, np.eye(channels))),
        eigenvalues=(1.0,) * channels,
        eigenvectors=tuple(map(tuple, np.eye(channels))),
        pixels=1,
        images=1,
    )
    images = np.random.default_rng(0).integers(0, 256, (4, side, side, channels), dtype=np.uint8)
    layer = Augmentation(recipe, stats)
    expected = np.asarray(layer(images, training=False))
    got = np.asarray(static_eval_view(recipe, stats)(images))
    assert got.shape == expected.shape == (4, recipe.crop, recipe.crop, channels)
    np.testing.assert_allclose(got, expected, atol=1e-3 / 255 / 0.25)


def test_a_model_of_grey_images_exports_and_its_exports_agree_with_it(tmp_path):
    """MNIST: the signatures take (N, 28, 28, 1) uint8, and every form gives the Keras model's
    probabilities on the same images."""
    import keras
    from synth import make_mnist_folder

    from cifarkit.data import load_numpy
    from cifarkit.modelio.exported import open_exported

    make_mnist_folder(tmp_path / "data", train=40, test=12)
    workdir = tmp_path / "run"
    invoke(
        "train",
        "lenet5",
        "--data",
        tmp_path / "data",
        "--workdir",
        workdir,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--quiet",
    )
    images, _ = load_numpy(tmp_path / "data", "test")
    assert images.shape[1:] == (28, 28, 1)
    expected = keras.models.load_model(workdir / "last.keras").predict(images, verbose=0)
    for fmt in ("savedmodel", "tflite"):
        result = invoke("export-model", workdir, "--format", fmt, "--quiet")
        model = open_exported(result.stdout.split("wrote ", 1)[1].split(" (", 1)[0])
        assert model.image_size == 28
        np.testing.assert_allclose(model.probabilities(images), expected, atol=1e-4)


def test_predict_on_a_tflite_model_keeps_the_interpreters_info_line_off_the_terminal(exported, images, tmp_path):
    # The interpreter logs its delegate once per process, so a fresh process is the only honest test;
    # its environment is a user's (the suite's TF_CPP_MIN_LOG_LEVEL would turn the CLI's filter off).
    out, image = tmp_path / "predictions.csv", images / "test_0.png"
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run(
        [sys.executable, "-m", "cifarkit", "predict", str(exported["tflite"]), str(image), "--csv", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"wrote {out}"]
    assert str(image) in done.stdout and out.is_file()
