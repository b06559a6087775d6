"""``cifarkit export-model --format onnx``: every registered model family, run by ONNX Runtime,
gives ``cifarkit predict``'s top-1 and probabilities (within 1e-4) on the same images; another
input size is refused by ONNX Runtime; a model holding an op the converter cannot express is
refused in one line naming it, and nothing is written.

The models are untrained (fixed seeds) and, where a family is large, narrowed through its module's
width constants: the conversion sees the family's layers and ops, not its parameter count."""

from __future__ import annotations

import csv
import json

import imageio.v3 as iio
import numpy as np
import pytest
from typer.testing import CliRunner

from cifarkit.cli import app

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the test extra: pip install -e '.[test]'")
pytest.importorskip("tf2onnx", reason="tf2onnx is in the onnx extra: pip install -e '.[onnx]'")

runner = CliRunner()
NAMES = [f"class_{i}" for i in range(10)]
# Each registered family, small: (model options, the module constants narrowed for the test).
TINY = {
    "alexnet": ({}, {"cifarkit.models.alexnet.FC_WIDTH": 32}),
    "alexnet-cifar": ({"width": 0.1}, {}),
    "lenet5": ({}, {}),
    "vgg11": ({}, {"cifarkit.models.vgg.HEAD_WIDTH": 16}),
    "vgg13": ({}, {"cifarkit.models.vgg.HEAD_WIDTH": 16}),
    "vgg16": ({}, {"cifarkit.models.vgg.HEAD_WIDTH": 16}),
    "vgg19": ({}, {"cifarkit.models.vgg.HEAD_WIDTH": 16}),
    "whitenet": ({"widths": "8,16,16"}, {}),
}
# Each family at its defaults, and the variants whose graphs hold other ops: whitenet's exact GELU
# (TensorFlow's Erfc, which tf2onnx is taught in cifarkit.modelio.onnx_export).
VARIANTS = [(family, {}) for family in sorted(TINY)] + [("whitenet", {"activation": "gelu"})]
VARIANT_IDS = [family + "".join(f"-{value}" for value in options.values()) for family, options in VARIANTS]
SIDE = 32  # every family takes 32x32 uint8 images (alexnet: the paper's recipe resizes them to 256)


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def narrow_vgg(monkeypatch):
    """VGG's table of conv widths divided by 16: the same layers, a few thousand weights."""
    from cifarkit.models import vgg

    narrow = {k: tuple(c if c == vgg.POOL_MARK else max(4, c // 16) for c in v) for k, v in vgg.VGG_CONFIGS.items()}
    monkeypatch.setattr(vgg, "VGG_CONFIGS", narrow)


def save_model(folder, family: str, channels=3, recipe_name=None, side=SIDE, options=None):
    """An untrained model as ``cifarkit train`` saves it (uint8 -> recipe view -> network -> softmax)."""
    import keras

    from cifarkit.augment.layer import Augmentation
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.modelio.keras_file import ClassNames
    from cifarkit.models import create_model
    from cifarkit.models.registry import model_info
    from cifarkit.readers.stats import Stats

    keras.utils.set_random_seed(7)
    recipe = get_recipe(recipe_name or model_info(family).recipe)
    stats = Stats(
        mean=(0.45,) * channels,
        std=(0.25,) * channels,
        covariance=tuple(map(tuple, np.eye(channels))),
        eigenvalues=(1.0,) * channels,
        eigenvectors=tuple(map(tuple, np.eye(channels))),
        pixels=1,
        images=1,
    )
    options = {**TINY[family][0], **(options or {})}
    network = create_model(family, num_classes=len(NAMES), input_shape=(recipe.crop, recipe.crop, channels), **options)
    inputs = keras.Input(shape=(side, side, channels), dtype="uint8", name="uint8_image")
    views = Augmentation(recipe=recipe, stats=stats, seed=0, name="preprocess")(inputs)
    outputs = ClassNames(NAMES, activation="softmax", name="class_names")(network(views))
    model = keras.Model(inputs, outputs, name=family.replace("-", "_"))
    path = folder / f"{family}.keras"
    model.save(path)
    return path


def image_files(folder, count: int, side: int, channels: int):
    rng = np.random.default_rng(11)
    images = rng.integers(0, 256, (count, side, side, channels), dtype=np.uint8)
    images[0] = 0  # and a black image: nothing but the biases
    folder.mkdir()
    for i, image in enumerate(images):
        iio.imwrite(folder / f"img_{i}.png", image if channels == 3 else image[..., 0])
    return images


def predicted(model_path, folder, out) -> np.ndarray:
    """``cifarkit predict``'s probabilities, in class order, one row per image file in order."""
    invoke("predict", model_path, folder, "--top-k", str(len(NAMES)), "--csv", out)
    with open(out, newline="") as handle:
        rows = {row[0].rsplit("/", 1)[-1]: row for row in list(csv.reader(handle))[1:]}
    table = []
    for i in range(len(rows)):
        row = rows[f"img_{i}.png"]
        by_class = dict(zip(row[3::2], map(float, row[4::2])))
        table.append([by_class[name] for name in NAMES])
    return np.array(table)


def exported_path(result) -> str:
    return result.stdout.split("wrote ", 1)[1].split(" (", 1)[0]


@pytest.mark.parametrize(("family", "options"), VARIANTS, ids=VARIANT_IDS)
def test_every_family_runs_in_onnx_runtime_as_cifarkit_predicts(family, options, tmp_path, monkeypatch):
    for target, value in TINY[family][1].items():
        monkeypatch.setattr(target, value)
    if family.startswith("vgg"):
        narrow_vgg(monkeypatch)
    model_path = save_model(tmp_path, family, options=options)
    images = image_files(tmp_path / "images", 6, SIDE, 3)
    onnx_file = exported_path(invoke("export-model", model_path, "--format", "onnx", "--quiet"))
    assert onnx_file.endswith(f"exported/{family.replace('-', '_')}.onnx")

    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    assert [(i.name, i.type, i.shape[1:]) for i in session.get_inputs()] == [("images", "tensor(uint8)", [32, 32, 3])]
    probabilities, names = session.run(["probabilities", "class_names"], {"images": images})
    expected = predicted(model_path, tmp_path / "images", tmp_path / "p.csv")
    assert probabilities.dtype == np.float32 and probabilities.shape == (6, 10)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)
    assert [list(row) for row in names] == [NAMES] * 6
    metadata = session.get_modelmeta().custom_metadata_map
    assert json.loads(metadata["class_names"]) == NAMES and metadata["image_size"] == "32"

    # Another size is refused by ONNX Runtime itself: the graph declares 32x32 and never resizes.
    with pytest.raises(Exception, match="invalid dimensions"):
        session.run(None, {"images": np.zeros((1, 64, 64, 3), np.uint8)})

    # cifarkit does not run the file itself: predict and evaluate say what does.
    result = runner.invoke(app, ["predict", onnx_file, str(tmp_path / "images")])
    assert result.exit_code == 2 and "cifarkit does not run ONNX files; run it with onnxruntime" in result.output


def test_a_model_of_grey_images_exports_to_onnx(tmp_path):
    """LeNet-5 on MNIST: 28x28x1 uint8 in, padded to 32x32 in the graph (the mnist recipe); the
    Keras model's own probabilities (predict reads image files as RGB)."""
    from cifarkit.modelio.keras_file import load_model

    model_path = save_model(tmp_path, "lenet5", channels=1, recipe_name="mnist", side=28)
    images = image_files(tmp_path / "images", 4, 28, 1)
    onnx_file = exported_path(invoke("export-model", model_path, "--format", "onnx", "--quiet"))
    session = ort.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[1:] == [28, 28, 1]
    (probabilities,) = session.run(["probabilities"], {"images": images})
    expected = load_model(model_path).predict(images, verbose=0)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), expected.argmax(axis=1))
    np.testing.assert_allclose(probabilities, expected, atol=1e-4)


def test_an_op_the_converter_cannot_express_is_refused_in_one_line_naming_it(tmp_path):
    """An antialiased resize in the network is TensorFlow's ScaleAndTranslate, which ONNX has no
    form of (the op that made tf2onnx's conversion of the any-size SavedModel unusable)."""
    import keras
    import tensorflow as tf

    from cifarkit.augment.layer import Augmentation
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.modelio.keras_file import ClassNames
    from cifarkit.readers.stats import Stats

    @keras.saving.register_keras_serializable(package="cifarkit_test")
    class AntialiasedResize(keras.layers.Layer):
        def call(self, x):
            return tf.image.resize(x, (20, 20), antialias=True)

    recipe = get_recipe("cifar")
    stats = Stats((0.5,) * 3, (0.25,) * 3, tuple(map(tuple, np.eye(3))), (1.0,) * 3, tuple(map(tuple, np.eye(3))), 1, 1)
    network = keras.Sequential(
        [keras.Input((32, 32, 3)), AntialiasedResize(), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10)]
    )
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    outputs = ClassNames(NAMES, activation="softmax")(network(Augmentation(recipe=recipe, stats=stats)(inputs)))
    keras.Model(inputs, outputs, name="resizer").save(tmp_path / "resizer.keras")

    result = runner.invoke(app, ["export-model", str(tmp_path / "resizer.keras"), "--format", "onnx", "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: cannot export resizer as ONNX")
    assert "ScaleAndTranslate (in antialiased_resize)" in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "exported").exists()


def test_onnx_takes_no_quantisation_and_a_missing_converter_names_the_extra(tmp_path, monkeypatch):
    result = runner.invoke(app, ["export-model", str(tmp_path / "m.keras"), "--format", "onnx", "--quantize", "int8"])
    assert result.exit_code == 2 and "an ONNX model keeps the float32 weights" in result.output

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    result = runner.invoke(app, ["export-model", str(tmp_path / "m.keras"), "--format", "onnx"])
    assert result.exit_code == 2, result.output
    assert "needs tf2onnx: pip install 'cifarkit[onnx]'" in result.output and "Traceback" not in result.output


def test_alexnet_with_two_towers_is_refused_naming_the_op_and_its_layers(tmp_path, monkeypatch):
    """groups=2: Keras's TensorFlow backend runs a grouped convolution as a function compiled with
    XLA, which tf2onnx leaves as a StatefulPartitionedCall that no ONNX runtime has."""
    monkeypatch.setattr("cifarkit.models.alexnet.FC_WIDTH", 32)
    model_path = save_model(tmp_path, "alexnet", options={"groups": 2})
    result = runner.invoke(app, ["export-model", str(model_path), "--format", "onnx", "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: cannot export alexnet as ONNX")
    assert "StatefulPartitionedCall (in conv2, conv4, conv5)" in lines[0] and "groups=2" in lines[0]
    assert not (tmp_path / "exported").exists()


def test_the_readme_block_runs_as_written(tmp_path):
    """README, "Use with ONNX Runtime": the block's own lines, on an export of a small model."""
    import textwrap
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    start = readme.index("    import json, onnxruntime\n")
    block = textwrap.dedent(readme[start : readme.index("\n\n", start)])
    model_path = save_model(tmp_path, "lenet5")
    images = image_files(tmp_path / "images", 3, SIDE, 3)
    onnx_file = exported_path(invoke("export-model", model_path, "--format", "onnx", "--quiet"))
    scope = {"uint8_images": images}
    exec(block.replace("runs/a1/exported/alexnet_cifar.onnx", onnx_file), scope)
    np.testing.assert_allclose(
        scope["probabilities"], predicted(model_path, tmp_path / "images", tmp_path / "p.csv"), atol=1e-4
    )
    assert scope["classes"] == NAMES and [list(row) for row in scope["names"]] == [NAMES] * 3
