"""A saved model opens with ``import cifarkit`` and plain Keras, in a fresh interpreter, for every
model family; ``import cifarkit`` itself stays free of TensorFlow and Keras; a saved model gives
probabilities; a file saved when models ended in logits still reads right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import synth

FIXTURES = Path(__file__).parent / "fixtures"
# Saved by cifarkit 0.1.0 before the softmax moved into the model (it ends in logits):
#   cifarkit train alexnet-cifar -m width=0.04 --epochs 1 --batch-size 16 on
#   synth.make_learnable_cifar10(per_batch=40, test=60, noise=0.85, seed=3)
OLD_LOGITS_MODEL = FIXTURES / "alexnet-cifar-logits-0.1.0.keras"
REPO = Path(__file__).resolve().parents[1]


def run_python(code: str, cwd: Path) -> str:
    """``code`` in a fresh interpreter of this environment; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_import_cifarkit_imports_neither_tensorflow_nor_keras(tmp_path):
    out = run_python(
        "import sys, cifarkit, json; print(json.dumps(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)))",
        tmp_path,
    )
    assert json.loads(out) == []


# One tiny model per registered family, built as the trainer builds its saved model.
FAMILIES = {
    "alexnet": dict(recipe="paper", crop=67, options={"groups": 2}),  # LRN, grouped convolutions, at its minimum size
    "alexnet-cifar": dict(recipe="cifar", crop=None, options={"width": 0.05}),
    "lenet5": dict(recipe="cifar", crop=None, options={}),
    "vgg11": dict(recipe="cifar", crop=None, options={}),
    "whitenet": dict(recipe="airbench", crop=None, options={"widths": "8,16,16"}),  # ScaledBias, PartialIdentity
}
CLASSES = ["cat", "dog", "ship"]


def build_saved_model(model: str, recipe: str, crop, options: dict):
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.readers.stats import bundled_stats
    from cifarkit.training.compile import build_models

    config = SimpleNamespace(
        model=model, recipe=get_recipe(recipe, crop), model_options=options, optimizer="sgd", weight_decay=0.0, seed=0
    )
    export_model, _ = build_models(config, SimpleNamespace(input_shape=(32, 32, 3)), CLASSES, bundled_stats("cifar10"))
    return export_model


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_saved_model_of_every_family_loads_after_import_cifarkit_alone(family, tmp_path):
    from cifarkit.models import list_models

    families = {m.name for m in list_models()}
    assert family in families and families - set(FAMILIES) <= {"vgg13", "vgg16", "vgg19"}  # vgg11's table
    model = build_saved_model(family, **FAMILIES[family])
    path = tmp_path / f"{family}.keras"
    model.save(path)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    expected = model.predict(images, verbose=0)
    np.testing.assert_allclose(expected.sum(axis=1), 1, atol=1e-5)  # probabilities, not logits
    assert (expected >= 0).all()

    # cifarkit before keras, and keras before cifarkit (registered at once then).
    for imports in ("import cifarkit, keras", "import keras, cifarkit"):
        out = run_python(
            f"{imports}, json, sys, numpy as np\n"
            f"model = keras.models.load_model({str(path)!r})\n"
            "names = model.get_layer('class_names').names\n"
            "assert 'cifarkit.augment.layer' in sys.modules  # registered, not imported by hand\n"
            f"p = model.predict(np.load({str(tmp_path / 'images.npy')!r}), verbose=0)\n"
            "print(json.dumps({'names': names, 'p': p.tolist()}))",
            tmp_path,
        )
        loaded = json.loads(out.strip().splitlines()[-1])
        assert loaded["names"] == CLASSES
        np.testing.assert_allclose(np.array(loaded["p"]), expected, atol=1e-5)


def test_training_keeps_logits_and_the_saved_model_adds_the_softmax():
    from cifarkit.modelio.keras_file import ClassNames, outputs_probabilities

    model = build_saved_model("lenet5", "cifar", None, {})
    last = model.layers[-1]
    assert isinstance(last, ClassNames) and last.activation == "softmax" and outputs_probabilities(model)
    assert ClassNames.from_config(last.get_config()).get_config() == last.get_config()  # the whole config
    logits = model.get_layer("class_names").input  # what the device-augmentation training model ends in
    import keras

    train_view = keras.Model(model.inputs, logits)
    images = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        model.predict(images, verbose=0),
        keras.ops.convert_to_numpy(keras.ops.softmax(train_view.predict(images, verbose=0))),
        atol=1e-6,
    )


def test_an_old_file_ending_in_logits_still_loads_and_predicts_probabilities(tmp_path):
    """The same probabilities from the old file and from the same network saved the new way, in
    evaluate, ten-crop and predict."""
    import keras

    from cifarkit.data import open_data
    from cifarkit.evaluation.evaluate import evaluate_model
    from cifarkit.evaluation.predict import predict_files
    from cifarkit.modelio.keras_file import ClassNames, load_model, model_parts, outputs_probabilities

    old = load_model(OLD_LOGITS_MODEL)
    assert not outputs_probabilities(old)
    _, network, names = model_parts(old)
    assert names == synth.CIFAR10_CLASSES
    # The new form of the same weights: the old graph with a softmax ClassNames at the end.
    views = old.get_layer("preprocess").output
    new = keras.Model(old.inputs, ClassNames(names, activation="softmax", name="class_names")(network(views)))
    assert outputs_probabilities(new)

    data = synth.make_learnable_cifar10(tmp_path, per_batch=40, test=60, noise=0.85, seed=3)
    source = open_data(data.path)
    for ten_crop in (False, True):
        before = evaluate_model(old, source, "test", ten_crop=ten_crop)
        after = evaluate_model(new, source, "test", ten_crop=ten_crop)
        np.testing.assert_allclose(before.probabilities.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(before.probabilities, after.probabilities, atol=1e-6)
        assert before.accuracy == after.accuracy

    import imageio.v3 as iio

    files = []
    for i in range(3):
        files.append(tmp_path / f"{i}.png")
        iio.imwrite(files[-1], data.test_images[i])
    logits = old.predict(data.test_images[:3], verbose=0)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    for model in (old, new):
        got = np.stack([p.probabilities for p in predict_files(model, files)])
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_layers_register_when_a_cifarkit_module_is_what_imports_keras():
    """Keras loaded from inside a cifarkit import (saved_model imports it at its top): every layer
    is registered all the same, with no warning (the trainer package loads its names lazily, so
    registering its schedule does not import modules that are half-way through importing)."""
    code = (
        "import warnings; warnings.simplefilter('error')\n"
        "import cifarkit.modelio.keras_file, keras\n"
        "from cifarkit.modelio.layer_registry import LAYER_MODULES\n"
        "names = ['Augmentation', 'LocalResponseNormalization', 'ClassNames']\n"
        "missing = [n for n in names if keras.saving.get_registered_object('cifarkit>' + n) is None]\n"
        "assert not missing, missing\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "not registered" not in proc.stderr
