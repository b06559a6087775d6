"""FusedBatchNorm: TensorFlow's fused kernel in training, Keras's batch norm in everything else,
with the same outputs, gradients and moving averages as ``keras.layers.BatchNormalization``."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from cifarkit.models.batch_norm import FusedBatchNorm


def twin_layers(shape, **kwargs):
    """A Keras batch norm and a fused one with the same weights, built for ``shape``."""
    plain = keras.layers.BatchNormalization(**kwargs)
    fused = FusedBatchNorm(**kwargs)
    for layer in (plain, fused):
        layer.build(shape)
    rng = np.random.default_rng(0)
    weights = [rng.normal(1.0, 0.3, w.shape).astype("float32") for w in plain.get_weights()]
    weights[-1] = np.abs(weights[-1])  # the moving variance
    plain.set_weights(weights)
    fused.set_weights(weights)
    return plain, fused


def training_step(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        # A loss that weighs channels differently, so that every gradient term matters.
        loss = tf.reduce_sum(tf.cast(y, "float32") ** 2 * tf.range(1.0, y.shape[-1] + 1.0))
    return y, tape.gradient(loss, [x, *layer.trainable_variables])


@pytest.mark.parametrize("center_scale", [True, False])
def test_training_matches_keras_outputs_gradients_and_moving_averages(center_scale):
    shape = (8, 5, 6, 16)
    x = tf.constant(np.random.default_rng(1).normal(3.0, 2.0, shape), "float32")
    plain, fused = twin_layers(shape, momentum=0.6, epsilon=1e-5, center=center_scale, scale=center_scale)
    old_variance = fused.moving_variance.numpy()
    y_plain, g_plain = training_step(plain, x)
    y_fused, g_fused = training_step(fused, x)
    np.testing.assert_allclose(y_fused.numpy(), y_plain.numpy(), rtol=1e-5, atol=1e-5)
    assert len(g_fused) == len(g_plain) == (3 if center_scale else 1)
    for a, b in zip(g_fused, g_plain):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-3)
    # Keras's moving variance: the biased batch variance, not the kernel's n/(n-1) times it.
    for a, b in zip(fused.non_trainable_weights, plain.non_trainable_weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-6)
    batch_variance = x.numpy().reshape(-1, 16).var(axis=0)
    np.testing.assert_allclose(fused.moving_variance.numpy(), 0.6 * old_variance + 0.4 * batch_variance, rtol=1e-5)


def kernel_runs(channels: int, training: bool) -> bool:
    shape = (4, 3, 3, channels)
    _, fused = twin_layers(shape)
    graph = tf.function(lambda t: fused(t, training=training)).get_concrete_function(tf.zeros(shape)).graph
    return "FusedBatchNormV3" in {op.type for op in graph.get_operations()}


def test_training_runs_the_fused_kernel_and_inference_runs_plain_ops():
    assert kernel_runs(32, training=True)
    assert not kernel_runs(32, training=False)


def test_channel_counts_off_the_kernels_blocks_of_16_run_keras_code():
    # There the kernel is slower than Keras's ops (alexnet-cifar's 22 and 67 channels at width 0.35).
    assert [c for c in (16, 22, 24, 48, 67, 256) if kernel_runs(c, training=True)] == [16, 48, 256]


def test_inference_is_keras_batch_norm_exactly():
    shape = (6, 4, 4, 5)
    x = tf.constant(np.random.default_rng(2).normal(0, 3, shape), "float32")
    plain, fused = twin_layers(shape)
    np.testing.assert_array_equal(fused(x, training=False).numpy(), plain(x, training=False).numpy())


def test_bfloat16_training_stays_bfloat16_and_within_its_precision():
    shape = (16, 8, 8, 16)
    x32 = tf.constant(np.random.default_rng(3).normal(2.0, 4.0, shape), "float32")
    plain, fused = twin_layers(shape, dtype="mixed_bfloat16")
    y_plain = plain(tf.cast(x32, "bfloat16"), training=True)
    y_fused = fused(tf.cast(x32, "bfloat16"), training=True)
    assert y_fused.dtype == y_plain.dtype == tf.bfloat16
    # bfloat16 keeps 8 bits of mantissa: outputs of a few units agree to one step of 2**-6.
    np.testing.assert_allclose(tf.cast(y_fused, "float32"), tf.cast(y_plain, "float32"), atol=2**-5)


def test_a_rank_other_than_four_falls_back_to_keras():
    x = tf.constant(np.random.default_rng(4).normal(0, 1, (32, 6)), "float32")
    plain, fused = twin_layers((32, 6))
    np.testing.assert_allclose(fused(x, training=True).numpy(), plain(x, training=True).numpy(), rtol=1e-6)


def test_saved_and_loaded_with_its_weights(tmp_path):
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, FusedBatchNorm(momentum=0.9, name="bn")(inputs))
    model.layers[-1].set_weights([np.full(3, v, "float32") for v in (2.0, 0.5, 0.25, 4.0)])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.get_layer("bn")) is FusedBatchNorm
    x = np.random.default_rng(5).normal(0, 1, (2, 4, 4, 3)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
