"""whitenet (cifarkit.models.whitenet): airbench's shape, its partial identity initialisation,
the fast batch-norm biases, and a saved model that loads back."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cifarkit.models import create_model
from cifarkit.models.whitenet_layers import PartialIdentity, ScaledBias


def test_shape_of_airbench_at_the_default_widths():
    model = create_model("whitenet")
    assert model.get_layer("whiten").output.shape[1:] == (31, 31, 24)  # 2x2, no padding
    assert not model.get_layer("whiten").trainable
    assert model.get_layer("block1_pool").output.shape[1:] == (15, 15, 64)
    assert model.get_layer("block3_conv2").output.shape[1:] == (3, 3, 320)
    assert model.count_params() == 3_007_544
    assert model.get_layer("block1_gelu1").activation.__name__ == "tanh_gelu"  # GELU's tanh form
    assert model.output.shape[1:] == (10,)
    airbench94 = create_model("whitenet", widths="64,256,256")
    assert airbench94.get_layer("block3_conv2").output.shape[1:] == (3, 3, 256)
    assert airbench94.count_params() == 1_973_944
    narrow = create_model("whitenet", widths="64,128,128")  # airbench93's
    assert narrow.get_layer("block3_conv2").output.shape[1:] == (3, 3, 128)
    assert model.count_params() > 5 * narrow.count_params()


def test_partial_identity_passes_the_first_channels_through():
    kernel = np.asarray(PartialIdentity(seed=0)((3, 3, 4, 6)))
    for j in range(4):
        expected = np.zeros((3, 3, 4))
        expected[1, 1, j] = 1
        np.testing.assert_array_equal(kernel[..., j], expected)
    assert np.abs(kernel[..., 4:]).max() <= 1 / np.sqrt(36) and np.abs(kernel[..., 4:]).max() > 0


def test_scaled_bias_learns_scale_squared_times_faster():
    x = np.zeros((4, 3), "float32")
    steps = {}
    for scale in (1.0, 8.0):
        layer = ScaledBias(scale)
        model = keras.Sequential([keras.Input((3,)), layer])
        model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
        model.train_on_batch(x, np.ones((4, 3), "float32"))
        steps[scale] = float(np.asarray(model(x))[0, 0])
    assert steps[8.0] == pytest.approx(64 * steps[1.0], rel=1e-4)


def test_bad_widths_are_refused():
    from cifarkit.errors import UsageError

    with pytest.raises(UsageError, match="widths"):
        create_model("whitenet", widths="64,128")


def test_a_whitenet_round_trips_through_a_keras_file(tmp_path):
    model = create_model("whitenet", widths="8,16,16")
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "w.keras")
    again = keras.models.load_model(tmp_path / "w.keras")
    np.testing.assert_allclose(np.asarray(again(images)), np.asarray(model(images)), rtol=1e-5, atol=1e-6)


def test_the_sigmoid_gelu_stays_within_two_hundredths_of_gelu():
    from cifarkit.models.whitenet_layers import sigmoid_gelu

    x = np.linspace(-8, 8, 4001).astype("float32")
    exact = np.asarray(keras.activations.gelu(x, approximate=False))
    approx = np.asarray(sigmoid_gelu(x))
    assert np.abs(approx - exact).max() < 0.021
    assert np.abs(approx - exact).max() > 1e-3  # an approximation, not the same function


def test_the_tanh_gelu_stays_within_bfloat16s_rounding_of_gelu():
    from cifarkit.models.whitenet_layers import tanh_gelu

    x = np.linspace(-8, 8, 4001).astype("float32")
    exact = np.asarray(keras.activations.gelu(x, approximate=False))
    approx = np.asarray(tanh_gelu(x))
    assert 1e-5 < np.abs(approx - exact).max() < 5e-4
    # bfloat16 keeps 8 significant bits: where GELU is not near 0 the forms round alike or one step apart.
    away = np.abs(exact) > 0.05
    steps = np.abs(approx[away] - exact[away]) / (np.abs(exact[away]) * 2.0**-8)
    assert steps.max() < 1.0


@pytest.mark.parametrize(("activation", "function"), [("gelu-sigmoid", "sigmoid_gelu"), ("gelu-tanh", "tanh_gelu")])
def test_a_whitenet_with_a_cheaper_gelu_uses_it_and_round_trips(tmp_path, activation, function):
    from cifarkit.modelio.keras_file import load_model

    model = create_model("whitenet", widths="8,16,16", activation=activation)
    exact = create_model("whitenet", widths="8,16,16", activation="gelu")
    exact.set_weights(model.get_weights())
    images = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    assert not np.array_equal(np.asarray(model(images)), np.asarray(exact(images)))
    model.save(tmp_path / "w.keras")
    again = load_model(tmp_path / "w.keras")
    assert again.get_layer("block1_gelu1").activation.__name__ == function
    np.testing.assert_allclose(np.asarray(again(images)), np.asarray(model(images)), rtol=1e-5, atol=1e-6)
    from cifarkit.errors import UsageError

    with pytest.raises(UsageError, match="activation"):
        create_model("whitenet", activation="relu")


def test_batch_norm_chooses_the_layer_with_the_same_weights_and_outputs(tmp_path):
    from cifarkit.errors import UsageError
    from cifarkit.modelio.keras_file import load_model
    from cifarkit.models.batch_norm import FusedBatchNorm

    fused = create_model("whitenet", widths="16,32,32")
    plain = create_model("whitenet", widths="16,32,32", batch_norm="keras")
    assert type(fused.get_layer("block2_1_bn")) is FusedBatchNorm
    assert type(plain.get_layer("block2_1_bn")) is keras.layers.BatchNormalization
    plain.set_weights(fused.get_weights())
    images = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
    for training in (False, True):
        np.testing.assert_allclose(
            np.asarray(plain(images, training=training)), np.asarray(fused(images, training=training)), atol=1e-5
        )
    plain.save(tmp_path / "plain.keras")
    assert type(load_model(tmp_path / "plain.keras").get_layer("block2_1_bn")) is keras.layers.BatchNormalization
    with pytest.raises(UsageError, match="batch_norm must be one of fused, keras"):
        create_model("whitenet", batch_norm="sync")
