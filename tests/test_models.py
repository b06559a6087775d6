"""The model zoo: every registered model builds and runs, AlexNet matches the paper's sizes and
init, LRN matches the paper's formula, models with LRN survive a .keras round trip, and the CLI
lists and summarises models."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from typer.testing import CliRunner

import cifarkit
from cifarkit.cli import app
from cifarkit.errors import UsageError
from cifarkit.models import create_model, list_models
from cifarkit.models.layers import LocalResponseNormalization

runner = CliRunner()
CLASSES = 7  # small and unlike any default, so a head that ignores num_classes shows

# Krizhevsky et al. 2012 with 1000 classes: 60,965,224 weights with the two-tower convolutions;
# one tower adds the cross-tower halves of conv2, conv4 and conv5 (1,413,120 weights).
ALEXNET_PARAMS = {2: 60_965_224, 1: 62_378_344}


@pytest.fixture(scope="module")
def alexnet_paper():
    keras.utils.set_random_seed(0)
    return create_model("alexnet", num_classes=CLASSES, groups=2)


def test_registry_lists_every_family_with_its_size_and_recipe():
    entries = {m.name: m for m in list_models()}
    assert set(entries) == {"alexnet", "alexnet-cifar", "lenet5", "vgg11", "vgg13", "vgg16", "vgg19", "whitenet"}
    assert (entries["alexnet"].input_size, entries["alexnet"].recipe) == (227, "paper")
    assert (entries["whitenet"].input_size, entries["whitenet"].recipe) == (32, "airbench")
    assert all(
        (m.input_size, m.recipe) == (32, "cifar") for n, m in entries.items() if n not in ("alexnet", "whitenet")
    )
    assert all(m.description and "\n" not in m.description for m in entries.values())


@pytest.mark.parametrize("info", list_models(), ids=lambda m: m.name)
def test_every_model_builds_and_gives_finite_logits(info, alexnet_paper):
    model = alexnet_paper if info.name == "alexnet" else create_model(info.name, num_classes=CLASSES)
    assert model.input_shape == (None, info.input_size, info.input_size, 3)
    images = np.random.default_rng(0).normal(size=(2, info.input_size, info.input_size, 3)).astype("float32")
    logits = np.asarray(model(images, training=False))
    assert logits.shape == (2, CLASSES) and logits.dtype == np.float32
    assert np.isfinite(logits).all()
    assert not np.allclose(logits[0], logits[1]), "different images should give different logits"


@pytest.mark.parametrize("groups", [2, 1])
def test_alexnet_parameter_count_matches_the_paper(groups):
    model = create_model("alexnet", num_classes=1000, groups=groups)
    assert model.count_params() == ALEXNET_PARAMS[groups]
    assert model.get_layer("flatten").output.shape[1:] == (6 * 6 * 256,)
    assert model.get_layer("conv1").output.shape[1:] == (55, 55, 96)


def test_two_towers_halve_the_inputs_of_conv2_conv4_conv5(alexnet_paper):
    kernels = {name: tuple(alexnet_paper.get_layer(name).kernel.shape) for name in ("conv2", "conv3", "conv4", "conv5")}
    assert kernels == {
        "conv2": (5, 5, 48, 256),
        "conv3": (3, 3, 256, 384),
        "conv4": (3, 3, 192, 384),
        "conv5": (3, 3, 192, 256),
    }


def test_paper_init_draws_weights_from_n0_001_and_sets_the_paper_biases(alexnet_paper):
    for name in ("conv2", "conv4", "conv5", "fc6", "fc7"):
        np.testing.assert_array_equal(alexnet_paper.get_layer(name).bias.numpy(), 1.0)
    for name in ("conv1", "conv3", "fc8"):
        np.testing.assert_array_equal(alexnet_paper.get_layer(name).bias.numpy(), 0.0)
    for name in ("conv1", "conv3", "fc7"):
        kernel = alexnet_paper.get_layer(name).kernel.numpy()
        assert abs(kernel.std() - 0.01) < 0.0005 and abs(kernel.mean()) < 0.0005, name


def test_he_init_has_zero_biases_and_fan_in_scaled_weights():
    model = create_model("alexnet", num_classes=CLASSES, init="he")
    np.testing.assert_array_equal(model.get_layer("conv2").bias.numpy(), 0.0)
    kernel = model.get_layer("conv3").kernel.numpy()  # fan-in 3 * 3 * 256
    assert abs(kernel.std() - np.sqrt(2 / (3 * 3 * 256))) < 0.003


def _paper_lrn(a: np.ndarray, n=5, k=2.0, alpha=1e-4, beta=0.75) -> np.ndarray:
    """b_i = a_i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a_j^2)^beta, channel by channel."""
    channels = a.shape[-1]
    out = np.empty_like(a, dtype=np.float64)
    for i in range(channels):
        window = a[..., max(0, i - n // 2) : min(channels - 1, i + n // 2) + 1].astype(np.float64)
        out[..., i] = a[..., i] / (k + alpha * (window**2).sum(axis=-1)) ** beta
    return out


def test_lrn_matches_the_paper_formula():
    # Values around 50 make alpha * sum(a^2) comparable to k, so the window really matters.
    a = np.random.default_rng(1).normal(scale=50, size=(2, 3, 4, 11)).astype("float32")
    np.testing.assert_allclose(LocalResponseNormalization()(a).numpy(), _paper_lrn(a), rtol=1e-5)
    custom = LocalResponseNormalization(size=3, k=1.0, alpha=1e-3, beta=0.5)
    np.testing.assert_allclose(custom(a).numpy(), _paper_lrn(a, 3, 1.0, 1e-3, 0.5), rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_lrn_runs_under_mixed_precision(policy):
    a = np.random.default_rng(2).normal(scale=50, size=(1, 2, 2, 8)).astype("float32")
    out = LocalResponseNormalization(dtype=policy)(a)
    assert out.dtype.name == policy.split("_")[1]
    np.testing.assert_allclose(np.asarray(out, dtype=np.float32), _paper_lrn(a), rtol=2e-2, atol=1e-2)


def test_logits_stay_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = create_model("lenet5", num_classes=CLASSES)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.get_layer("fc5").compute_dtype == "float16"
    logits = model(np.zeros((2, 32, 32, 3), "float32"))
    assert logits.dtype.name == "float32"


def test_lrn_rejects_an_even_window():
    with pytest.raises(ValueError, match="size=4"):
        LocalResponseNormalization(size=4)


def test_a_model_with_lrn_round_trips_through_a_keras_file(tmp_path):
    inputs = keras.Input((9, 9, 3))
    x = keras.layers.Conv2D(8, 3, name="conv")(inputs)
    x = LocalResponseNormalization(size=3, k=1.5, name="lrn")(x)
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(x)))
    path = tmp_path / "lrn.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("lrn"), LocalResponseNormalization)
    assert (loaded.get_layer("lrn").size, loaded.get_layer("lrn").k) == (3, 1.5)
    images = np.random.default_rng(3).normal(scale=20, size=(2, 9, 9, 3)).astype("float32")
    np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())


def test_alexnet_cifar_width_scales_conv_and_fc_layers():
    half = create_model("alexnet-cifar", num_classes=CLASSES, width=0.5)
    assert [half.get_layer(f"conv{i}").filters for i in range(1, 6)] == [32, 96, 192, 128, 128]
    assert half.get_layer("fc6").units == 1024
    assert half.get_layer("pool5").output.shape[1:] == (4, 4, 128)


@pytest.mark.parametrize("name, options, first_bn", [("alexnet-cifar", {"width": 0.25}, "bn1"), ("vgg11", {}, "bn1_1")])
def test_batch_norm_statistics_catch_up_within_a_short_run(name, options, first_bn):
    # Thirty training batches: evaluation must already see what training sees. With Keras's
    # default momentum (0.99) the moving averages would still be 74% their initial 0 and 1,
    # and a short run would evaluate at chance.
    keras.utils.set_random_seed(0)
    model = create_model(name, num_classes=CLASSES, **options)
    first = keras.Model(model.input, model.get_layer(first_bn).output)
    images = np.random.default_rng(0).normal(5.0, 3.0, (16, 32, 32, 3)).astype(np.float32)
    for _ in range(30):
        trained = first(images, training=True)
    evaluated = first(images, training=False)
    gap = np.abs(np.asarray(evaluated) - np.asarray(trained))
    assert float(np.mean(gap)) < 0.2, f"evaluation differs from training by {float(np.mean(gap)):.2f} on average"


def test_lenet_modern_switches_to_relu_and_max_pooling():
    classic = create_model("lenet5", num_classes=CLASSES)
    modern = create_model("lenet5", num_classes=CLASSES, modern=True)
    assert classic.get_layer("conv1").activation.__name__ == "tanh"
    assert isinstance(classic.get_layer("pool1"), keras.layers.AveragePooling2D)
    assert modern.get_layer("conv1").activation.__name__ == "relu"
    assert isinstance(modern.get_layer("pool1"), keras.layers.MaxPooling2D)
    assert classic.get_layer("conv3").output.shape[1:] == (1, 1, 120)


def test_vgg_depths_follow_the_configuration_table():
    convs = {
        name: sum(isinstance(layer, keras.layers.Conv2D) for layer in create_model(name).layers)
        for name in ("vgg11", "vgg13", "vgg16", "vgg19")
    }
    assert convs == {"vgg11": 8, "vgg13": 10, "vgg16": 13, "vgg19": 16}


def test_vgg_also_builds_for_224():
    model = create_model("vgg11", num_classes=CLASSES, input_shape=(224, 224, 3))
    assert model.get_layer("pool5").output.shape[1:] == (7, 7, 512)
    assert model.output_shape == (None, CLASSES)


def test_unknown_model_is_a_usage_error_naming_it_and_the_known_ones():
    with pytest.raises(UsageError, match="'nope'.*alexnet, alexnet-cifar, lenet5"):
        create_model("nope")


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("vgg16", {"groups": 2}, "no option 'groups'"),
        ("alexnet", {"groups": 3}, "groups=3"),
        ("alexnet", {"init": "xavier"}, "init='xavier'"),
        ("alexnet", {"input_shape": (32, 32, 3)}, "at least 67x67"),
        ("lenet5", {"num_classes": 0}, "num_classes=0"),
        ("alexnet-cifar", {"width": -1.0}, "width=-1.0"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_value(name, options, message):
    with pytest.raises(UsageError, match=message):
        create_model(name, **options)


# Modules that reach Keras through cifarkit.runtime.lazy but import it for real as well (their
# classes subclass Keras's, or they import a module that does): only these may load it on import.
IMPORT_KERAS_ANYWAY = {
    "cifarkit.evaluation.evaluate": "its models come from modelio.keras_file, whose ClassNames is a Keras layer",
    "cifarkit.evaluation.predict": "the same",
    "cifarkit.training.tensorboard_logs": "its callbacks subclass Keras's",
}
NO_TENSORFLOW_PROBE = """
import sys
from cifarkit.cli import main
for name in sys.argv[1:]:
    __import__(name)
for command in ([], ["train"], ["export"], ["evaluate"]):
    sys.argv = ["cifarkit", *command, "--help"]
    try:
        main()
    except SystemExit as end:
        assert not end.code, (command, end.code)
print(sorted(name for name in ("tensorflow", "keras") if name in sys.modules))
"""


def test_cifarkit_the_cli_its_help_and_the_modules_using_the_lazy_stand_ins_load_no_tensorflow():
    """Each module below imports ``tf``/``keras``/``ops`` from cifarkit.runtime.lazy at its top; one
    that read an attribute of them while importing (a module-level ``@tf.function``, ``tf.X`` as a
    default) would load TensorFlow here."""
    package = Path(cifarkit.__file__).parent
    using_lazy = sorted(
        "cifarkit." + ".".join(path.relative_to(package).with_suffix("").parts)
        for path in package.rglob("*.py")
        if re.search(r"^from \.+(runtime\.)?lazy import", path.read_text(), re.M)
    )
    assert "cifarkit.augment.recipes" in using_lazy and "cifarkit.runtime.strategy" in using_lazy
    names = ["cifarkit", "cifarkit.cli.app", "cifarkit.models"] + [
        n for n in using_lazy if n not in IMPORT_KERAS_ANYWAY
    ]
    result = subprocess.run(
        [sys.executable, "-c", NO_TENSORFLOW_PROBE, *names], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: cifarkit train [OPTIONS]" in result.stdout and "--augment-on" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"


def test_cli_models_lists_every_registered_model():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()[1:]}
    assert rows == {m.name: [f"{m.input_size}x{m.input_size}", m.recipe] for m in list_models()}
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    assert "16 epochs, batch 1024, sgd lr 1.5, warmup-linear" in lines["whitenet"]
    assert "90 epochs, batch 128, sgd lr 0.01, plateau" in lines["alexnet"]
    assert "30 epochs, batch 128, sgd lr 0.05, cosine" in lines["vgg11"]


def test_cli_summary_prints_layers_and_the_paper_total():
    result = runner.invoke(app, ["summary", "alexnet", "--classes", "1000", "--groups", "2"])
    assert result.exit_code == 0, result.output
    assert "Total params: 60,965,224" in result.stdout
    assert "Trainable params: 60,965,224" in result.stdout
    layers = {line.split()[0]: line.split()[-1] for line in result.stdout.splitlines() if line.strip()}
    assert layers["conv2"] == "307,456" and layers["lrn1"] == "0" and layers["fc8"] == "4,097,000"


@pytest.mark.parametrize(
    "args, message",
    [
        (["summary", "nope"], "unknown model 'nope'"),
        (["summary", "lenet5", "--groups", "2"], "no option 'groups'"),
        (["summary", "alexnet", "--input-size", "32"], "at least 67x67"),
    ],
)
def test_cli_summary_errors_are_one_line_with_exit_code_2(args, message):
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
