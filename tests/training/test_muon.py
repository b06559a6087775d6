"""``--optimizer muon``: Muon on the convolution filters, Nesterov SGD on the rest
(:mod:`cifarkit.training.muon`), and the precision a model declares (mixed where bfloat16 is native)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cifarkit.training.defaults import CIFAR_MUON_SCALE
from cifarkit.training.muon import MUON_MOMENTUM, MUON_SCALE, MuonSGD, orthogonalize


@pytest.mark.parametrize("shape", [(300, 64), (64, 300), (216, 64), (50, 50)])
def test_orthogonalize_keeps_the_singular_vectors_and_pushes_the_values_near_one(shape):
    rng = np.random.default_rng(0)
    # A skewed spectrum, as gradients have: singular values from 10 down to 0.5.
    u, _ = np.linalg.qr(rng.normal(size=(shape[0], min(shape))))
    v, _ = np.linalg.qr(rng.normal(size=(shape[1], min(shape))))
    values = np.geomspace(10, 0.5, min(shape))
    result = np.asarray(orthogonalize(((u * values) @ v.T).astype("float32")))
    assert result.shape == shape
    inner = u.T @ result @ v  # diagonal when the singular vectors are kept
    assert np.abs(inner - np.diag(np.diag(inner))).max() < 1e-5
    # Three steps bring a 20-fold spread into [0.5, 1.5] (exactly 1 would take more steps, and
    # trains no better: Jordan 2024).
    assert np.diag(inner).min() > 0.5 and np.diag(inner).max() < 1.5


def _two_steps(optimizer, kernel, dense, gradients):
    import keras

    variables = [keras.Variable(kernel, name="kernel"), keras.Variable(dense, name="dense")]
    for grads in gradients:
        optimizer.apply_gradients(zip([keras.ops.convert_to_tensor(g) for g in grads], variables))
    return [np.asarray(v.numpy()) for v in variables]


def test_a_filter_steps_by_its_orthogonalised_nesterov_momentum_from_a_fixed_norm():
    import keras

    rng = np.random.default_rng(1)
    kernel = rng.normal(size=(3, 3, 4, 8)).astype("float32")
    dense = rng.normal(size=(8, 10)).astype("float32")
    gradients = [[rng.normal(size=kernel.shape).astype("float32"), rng.normal(size=dense.shape).astype("float32")]]
    gradients.append([rng.normal(size=kernel.shape).astype("float32"), rng.normal(size=dense.shape).astype("float32")])
    lr = 0.5
    new_kernel, new_dense = _two_steps(MuonSGD(learning_rate=lr, momentum=0.9), kernel, dense, gradients)

    # By hand: momentum m <- 0.6 m + g, direction g + 0.6 m; the kernel rescaled to norm sqrt(8),
    # then moved by lr * MUON_SCALE along the orthogonalised direction, reshaped to (72, 8).
    expected, momentum = kernel, np.zeros_like(kernel)
    for grad, _ in gradients:
        momentum = MUON_MOMENTUM * momentum + grad
        direction = grad + MUON_MOMENTUM * momentum
        step = np.asarray(orthogonalize(direction.reshape(-1, 8))).reshape(kernel.shape)
        expected = expected * math.sqrt(8) / np.linalg.norm(expected) - lr * MUON_SCALE * step
    np.testing.assert_allclose(new_kernel, expected, rtol=1e-4, atol=1e-5)

    # Everything that is not a filter takes exactly Keras's Nesterov SGD.
    _, sgd_dense = _two_steps(
        keras.optimizers.SGD(learning_rate=lr, momentum=0.9, nesterov=True), kernel, dense, gradients
    )
    np.testing.assert_allclose(new_dense, sgd_dense, rtol=1e-6)


def test_muon_needs_its_momenta_even_when_sgd_has_none():
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(3, 3, 2, 4)).astype("float32")
    dense = rng.normal(size=(4, 3)).astype("float32")
    grads = [[np.ones_like(kernel), np.ones_like(dense)]] * 2
    new_kernel, new_dense = _two_steps(MuonSGD(learning_rate=0.1, momentum=0.0), kernel, dense, grads)
    np.testing.assert_allclose(new_dense, dense - 0.2, rtol=1e-6)  # plain SGD, two steps of 0.1
    assert not np.allclose(new_kernel, kernel)


def test_the_optimizer_saves_and_loads_with_its_settings():
    import keras

    optimizer = MuonSGD(learning_rate=0.3, momentum=0.8, muon_scale=0.2, muon_momentum=0.5)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert isinstance(again, MuonSGD)
    assert (again.muon_scale, again.muon_momentum, again.momentum, again.nesterov) == (0.2, 0.5, 0.8, True)
    with pytest.raises(ValueError, match="muon_momentum"):
        MuonSGD(muon_momentum=1.0)


def test_muon_takes_the_sgd_defaults_of_the_model():
    from cifarkit.training import TrainConfig
    from cifarkit.training.config import resolve

    plan = resolve(TrainConfig(model="whitenet", workdir="run", data="data", optimizer="muon"))
    assert (plan.optimizer, plan.lr, plan.momentum, plan.nesterov) == ("muon", 1.5, 0.85, True)


@pytest.mark.parametrize(
    "model, asked, expected",
    [("whitenet", None, MUON_SCALE), ("whitenet", 0.1, 0.1), ("alexnet-cifar", None, CIFAR_MUON_SCALE)],
)
def test_muons_scale_is_the_models_default_unless_asked_and_recorded(model, asked, expected):
    from cifarkit.training import TrainConfig
    from cifarkit.training.config import resolve

    plan = resolve(TrainConfig(model=model, workdir="run", data="data", optimizer="muon", muon_scale=asked))
    assert plan.muon_scale == expected and plan.to_json()["muon_scale"] == expected
    assert resolve(TrainConfig(model=model, workdir="run", data="data")).muon_scale is None  # sgd


@pytest.mark.parametrize(
    "optimizer, scale, message",
    [
        ("muon", 0.0, "--muon-scale must be a positive number"),
        ("muon", float("inf"), "--muon-scale must be a positive number"),
        ("sgd", 0.1, "--muon-scale is Muon's: it needs --optimizer muon"),
    ],
)
def test_a_muon_scale_that_cannot_apply_is_refused(optimizer, scale, message):
    from cifarkit.errors import UsageError
    from cifarkit.training import TrainConfig
    from cifarkit.training.config import check_request

    with pytest.raises(UsageError, match=message):
        check_request(TrainConfig(model="whitenet", workdir="run", optimizer=optimizer, muon_scale=scale))


def test_a_muon_run_folder_from_before_its_scale_was_recorded_ran_at_the_old_constant():
    from cifarkit.training import TrainConfig
    from cifarkit.training.config import identity, resolve

    asked = TrainConfig(model="whitenet", workdir="run", data="data", optimizer="muon", muon_scale=0.04)
    plan = resolve(asked).to_json()
    older = {k: v for k, v in plan.items() if k != "muon_scale"}
    assert identity(older) == identity(plan)  # 0.04, the only scale before it was an option
    assert identity({**plan, "muon_scale": MUON_SCALE}) != identity(plan)


@pytest.mark.parametrize(
    "model, native, asked, expected",
    [
        ("whitenet", True, None, "mixed"),  # a CPU with AVX-512 BF16 or AMX
        ("whitenet", False, None, "float32"),  # emulated bfloat16 is many times slower
        ("whitenet", None, None, "float32"),  # cannot tell (not Linux)
        ("whitenet", True, "float32", "float32"),  # asked for
        ("lenet5", True, None, "float32"),  # models that declare float32 keep it
        ("lenet5", False, "mixed", "mixed"),
    ],
)
def test_the_default_precision_is_mixed_only_where_the_model_asks_and_the_cpu_computes_bfloat16(
    monkeypatch, model, native, asked, expected
):
    from cifarkit.runtime import tensorflow as runtime
    from cifarkit.training import TrainConfig
    from cifarkit.training.config import resolve

    monkeypatch.setattr(runtime, "cpu_has_bfloat16", lambda: native)
    plan = resolve(TrainConfig(model=model, workdir="run", data="data", precision=asked))
    assert plan.precision == expected
    assert plan.to_json()["precision"] == expected  # config.json records what ran, not "default"


@pytest.mark.parametrize("optimizer", ["sgd", "muon"])
def test_weight_decay_is_an_l2_term_on_kernels_but_not_on_muons_filters(optimizer):
    import keras

    from cifarkit.models import create_model
    from cifarkit.training.compile import decay_kernels

    network = create_model("whitenet", num_classes=10, input_shape=(32, 32, 3), widths="8,16,16")
    decay_kernels(network, optimizer, 0.01)
    decayed = {layer.name for layer in network.layers if getattr(getattr(layer, "kernel", None), "regularizer", None)}
    convs = {f"block{b}_conv{c}" for b in (1, 2, 3) for c in (1, 2)}
    assert decayed == ({"fc"} | convs if optimizer == "sgd" else {"fc"})  # the frozen whitening never
    assert network.get_layer("fc").kernel.regularizer.get_config()["l2"] == pytest.approx(0.005)
    assert isinstance(network.get_layer("fc").kernel.regularizer, keras.regularizers.L2)


def test_whitenet_trains_with_muon_and_holds_its_filters_near_their_norm(tmp_path):
    from synth import make_learnable_cifar10

    from cifarkit.metadata.run_files import read_run_config
    from cifarkit.modelio.keras_file import load_model, model_parts
    from cifarkit.training import TrainConfig, train
    from cifarkit.training.compile import make_optimizer
    from cifarkit.training.plan import TrainPlan
    from cifarkit.training.rundir import read_history

    data = make_learnable_cifar10(tmp_path / "data", per_batch=32, test=40)
    workdir = tmp_path / "run"
    config = TrainConfig(
        model="whitenet",
        workdir=str(workdir),
        data=str(data.path),
        epochs=3,
        batch_size=32,
        optimizer="muon",
        muon_scale=0.06,
        averaging="none",
        tta="none",
        model_options={"widths": "8,16,16"},
    )
    result = train(config)
    assert result.report.config.optimizer == "muon"
    assert json.loads((workdir / "config.json").read_text())["muon_scale"] == 0.06
    assert make_optimizer(TrainPlan.from_file(read_run_config(workdir / "config.json"))).muon_scale == 0.06
    rows = read_history(workdir / "history.csv")
    assert rows[-1]["loss"] < rows[0]["loss"]
    network = model_parts(load_model(workdir / "last.keras"))[1]
    filters = [layer.kernel for layer in network.layers if layer.name.startswith("block") and "conv" in layer.name]
    assert len(filters) == 6
    for kernel in filters:  # each step starts from norm sqrt(out) and moves by at most lr * scale * ~1.5 * sqrt(out)
        out = kernel.shape[-1]
        norm = float(np.linalg.norm(np.asarray(kernel.numpy())))
        assert abs(norm - math.sqrt(out)) < 1.5 * 0.06 * 1.5 * math.sqrt(out)
