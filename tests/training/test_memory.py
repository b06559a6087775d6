"""Memory of the paper-sized runs: evaluation feeds the network at most a training batch's pixels
at a time, with the same results; TensorFlow's fused LRN is the sliced one's formula and is what
runs; ``cifarkit train`` says what a large run needs before it starts, and says nothing for a
small one."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from synth import make_learnable_cifar10

from cifarkit.evaluation import evaluate
from cifarkit.models.layers import LocalResponseNormalization
from cifarkit.training import TrainConfig, open_run_data, resolve
from cifarkit.training.memory import GB, SAY_ABOVE, estimate_memory, memory_line

PAPER_CROP = 227
TEST_IMAGES = 10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_learnable_cifar10(tmp_path_factory.mktemp("memory-data"), per_batch=8, test=TEST_IMAGES, seed=5)


def _plan(data, tmp_path, **settings):
    return resolve(TrainConfig(workdir=str(tmp_path / "run"), data=str(data.path), **settings))


def test_evaluation_batches_follow_the_pixels_the_network_sees():
    # AlexNet's 227x227 crops: 32 images at a time, 3 images' ten crops; 32x32 networks keep 256.
    assert evaluate.images_per_call(256, PAPER_CROP) == 32
    assert evaluate.images_per_call(256, PAPER_CROP, evaluate.TEN_VIEWS) == 3
    assert evaluate.images_per_call(256, 32) == 256
    assert evaluate.images_per_call(256, 4096, evaluate.TEN_VIEWS) == 1


def test_ten_crop_evaluation_in_small_batches_gives_the_same_probabilities(data, tmp_path, monkeypatch):
    from cifarkit.readers.stats import stats_for
    from cifarkit.training.compile import build_models

    # The paper recipe at a 40-pixel crop on LeNet: ten windows cut from each resized image.
    plan = _plan(data, tmp_path, model="lenet5", recipe="paper", crop=40)
    run_data = open_run_data(plan)
    source = run_data.source
    keras.utils.set_random_seed(0)
    model, _ = build_models(plan, run_data, source.class_names, stats_for(source, "train"))

    batch_sizes = []
    feed = evaluate.eval_batches

    def recorded(*args, **kwargs):
        for images, labels in feed(*args, **kwargs):
            batch_sizes.append(len(images))
            yield images, labels

    whole = evaluate.evaluate_model(model, source, "test", ten_crop=True)  # 10 images: one batch
    monkeypatch.setattr(evaluate, "eval_batches", recorded)
    monkeypatch.setattr(evaluate, "EVAL_PIXELS", 3 * evaluate.TEN_VIEWS * 40 * 40)
    small = evaluate.evaluate_model(model, source, "test", ten_crop=True)
    assert batch_sizes == [3, 3, 3, 1]
    np.testing.assert_allclose(small.probabilities, whole.probabilities, rtol=1e-5, atol=1e-6)
    assert small.accuracy == whole.accuracy

    batch_sizes.clear()
    evaluate.evaluate_model(model, source, "test")  # one view an image: 30 of them fit
    assert batch_sizes == [TEST_IMAGES]


def test_fused_lrn_is_the_sliced_formula_forward_and_backward():
    layer = LocalResponseNormalization()
    x = tf.constant(np.maximum(np.random.default_rng(0).normal(0, 50, (2, 5, 5, 16)), 0).astype("float32"))
    weights = tf.constant(np.random.default_rng(1).normal(size=x.shape).astype("float32"))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        fused, sliced = layer._fused(x), layer._sliced(x)
        fused_loss, sliced_loss = tf.reduce_sum(fused * weights), tf.reduce_sum(sliced * weights)
    np.testing.assert_allclose(fused.numpy(), sliced.numpy(), rtol=1e-6)
    fused_grad, sliced_grad = tape.gradient(fused_loss, x).numpy(), tape.gradient(sliced_loss, x).numpy()
    np.testing.assert_allclose(fused_grad, sliced_grad, rtol=1e-5, atol=1e-6 * np.abs(sliced_grad).max())


def test_on_tensorflow_the_layer_runs_the_fused_kernel():
    layer = LocalResponseNormalization()
    graph = tf.function(layer).get_concrete_function(tf.TensorSpec([None, 5, 5, 16], tf.float32)).graph
    kinds = {op.type for op in graph.get_operations()}
    assert "LRN" in kinds and "Pow" not in kinds


def test_the_paper_alexnet_says_what_it_needs(data, tmp_path):
    from cifarkit.models import create_model

    plan = _plan(data, tmp_path, model="alexnet", batch_size=32)
    estimate = estimate_memory(create_model("alexnet", num_classes=10), plan)
    # Nine copies of 58.3M weights, 4 bytes each: weights, gradients, momentum; the initial values
    # the allocator keeps and the L2 term's squares and gradient; the backup's weights and momentum
    # and the arrays it converts.
    assert estimate.parameters == 58_322_314 and estimate.parameter_bytes == 58_322_314 * 4 * 9
    # Measured: 3.4 GB at batch 32, 3.9 GB at batch 128 (docs/BENCHMARKS.md).
    assert 3.2 * GB < estimate.total < 3.7 * GB
    line = memory_line(estimate, "alexnet", 32)
    assert line.startswith("memory: alexnet at batch 32 needs about 3.") and "\n" not in line
    assert "58.3M parameters" in line
    at_128 = estimate_memory(create_model("alexnet", num_classes=10), _plan(data, tmp_path, model="alexnet"))
    assert 3.8 * GB < at_128.total < 4.4 * GB
    assert at_128.total - estimate.total == pytest.approx(3 * estimate.activation_bytes, rel=1e-6)


def test_a_small_run_says_nothing_of_memory(data, tmp_path):
    from cifarkit.readers.stats import stats_for
    from cifarkit.runtime.strategy import make_strategy
    from cifarkit.training.compile import compile_for_training

    plan = _plan(data, tmp_path, model="lenet5", batch_size=16)
    run_data = open_run_data(plan)
    said = []
    compile_for_training(plan, make_strategy("auto"), run_data, stats_for(run_data.source, "train"), 4, said.append)
    assert not [line for line in said if line.startswith("memory:")]
    assert estimate_memory(keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten()]), plan).total < SAY_ABOVE


def test_train_says_the_memory_line_before_it_trains(data, tmp_path, monkeypatch):
    from cifarkit.training import loop

    said = []

    class Stop(Exception):
        pass

    def stop(*args, **kwargs):
        raise Stop  # after everything is checked and the model built, before fit

    monkeypatch.setattr(loop, "run_inputs", stop)
    monkeypatch.setattr("cifarkit.training.memory.SAY_ABOVE", 0)  # a small run's line, as alexnet's
    with pytest.raises(Stop):
        loop.train(
            TrainConfig(model="lenet5", workdir=str(tmp_path / "run"), data=str(data.path), batch_size=16, epochs=1),
            say=said.append,
        )
    memory = [i for i, line in enumerate(said) if line.startswith("memory: lenet5 at batch 16 needs about")]
    training = [i for i, line in enumerate(said) if line.startswith("training lenet5")]
    assert memory and training and memory[0] < training[0]
