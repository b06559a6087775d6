"""Data parallelism on Keras's JAX backend (``keras.distribution.DataParallel``), without TensorFlow.

JAX is given two CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=2``, read when
JAX starts, so every check runs in a subprocess) where TensorFlow cannot be imported. One step on
two devices is the step on one; ``cifarkit train --strategy mirrored`` trains on both, resumes
after a kill, and validates on every test image; two processes of one device each, joined through
``$TF_CONFIG`` on 127.0.0.1, each feed their slice of every global batch and train step for step as
the two devices of one process did. This file run as a script is the subprocess of the last check.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cifarkit.training import read_history

pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
BLOCK_TENSORFLOW = 'import sys\nsys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError\n'
TIMEOUT = 300
TEST_IMAGES = 41  # odd: the last validation batch is padded to split over two devices
TRAIN = ["lenet5", "--batch-size", "16", "--epochs", "3"]


def _environment(blocked: Path, devices: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    env["PYTHONPATH"] = os.pathsep.join([str(blocked), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("TF_CONFIG", None)
    return env


@pytest.fixture(scope="module")
def blocked(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("no-tensorflow")
    (folder / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from synth import make_learnable_cifar10

    # 400 training images: 25 steps of 16 an epoch, long enough for a kill to land mid-run.
    return make_learnable_cifar10(tmp_path_factory.mktemp("jax-dp-data"), per_batch=80, test=TEST_IMAGES)


def _train(data, workdir: Path, *extra) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cifarkit",
        "train",
        *TRAIN,
        "--data",
        str(data.path),
        "--workdir",
        str(workdir),
        *extra,
    ]


@pytest.fixture(scope="module")
def mirrored(blocked, data, tmp_path_factory) -> Path:
    """A --strategy mirrored run on two devices, killed after its first epoch's backup and run again."""
    workdir = tmp_path_factory.mktemp("mirrored") / "run"
    command, env = _train(data, workdir, "--strategy", "mirrored"), _environment(blocked, 2)
    job = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + TIMEOUT
    while not (workdir / "backup" / "state.json").is_file() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)
    _, stderr = job.communicate()
    assert (workdir / "backup" / "state.json").is_file(), stderr.decode()[-2000:]
    assert not (workdir / "report.json").exists(), "the kill should land mid-training"
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "resumed from the backup" in rerun.stderr and "Traceback" not in rerun.stderr
    return workdir


def test_a_mirrored_run_trains_on_both_devices_resumes_and_validates_on_every_image(mirrored):
    report = json.loads((mirrored / "report.json").read_text())
    assert report["strategy"] == {"name": "mirrored", "replicas": 2, "devices": ["cpu:0", "cpu:1"]}
    assert report["runtime"]["backend"] == "jax" and report["runtime"]["jit"] is True  # jit stays on
    assert report["resumed_from_epoch"] >= 1 and report["epochs_run"] == 3
    history = read_history(mirrored / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["loss"] < history[0]["loss"] and history[-1]["accuracy"] > 0.5
    # The last epoch's validation is the test split, every image once though padded to an even
    # batch: the accuracy the report measures on the saved model, image by image on one device.
    assert report["test"]["images"] == TEST_IMAGES
    assert history[-1]["val_accuracy"] == pytest.approx(report["test"]["accuracy"], abs=1e-6)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_feed_their_own_slices_and_train_the_run_two_devices_did(blocked, data, mirrored, tmp_path):
    workdir = tmp_path / "multi"
    cluster = {"worker": [f"127.0.0.1:{_free_port()}", "127.0.0.1:1"]}  # worker 0's address coordinates
    jobs = []
    for index in range(2):
        env = _environment(blocked, 1)
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        command = _train(data, workdir, "--strategy", "multi-worker")
        jobs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [job.communicate(timeout=TIMEOUT) for job in jobs]
    finally:
        for job in jobs:
            if job.poll() is None:
                job.kill()
    for job, (_, stderr) in zip(jobs, outputs):
        assert job.returncode == 0, stderr
    assert "worker finished; the chief wrote the run folder" in outputs[1][0]
    report = json.loads((workdir / "report.json").read_text())
    assert report["strategy"] == {"name": "multi-worker", "replicas": 2, "devices": ["worker:0"]}
    assert report["runtime"]["steps_per_execution"] > 1  # JAX takes groups of steps across processes too
    # Each process gathered half of every global batch; together they are the batches one process
    # fed two devices: the same first epoch, step for step (the reference run was killed after it
    # and resumed, which reproduces the later epochs only to about 1e-3 on JAX, one device or two).
    ran, reference = read_history(workdir / "history.csv"), read_history(mirrored / "history.csv")
    assert [row["epoch"] for row in ran] == [1, 2, 3] and ran[-1]["loss"] < ran[0]["loss"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert ran[0][key] == pytest.approx(reference[0][key], rel=1e-5, abs=1e-6), key


def test_a_step_on_two_devices_is_the_step_on_one(blocked, tmp_path):
    run = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_environment(blocked, 2),
    )
    assert run.returncode == 0, run.stderr
    seen = json.loads((tmp_path / "step.json").read_text())
    assert seen["placement"] == ["mirrored", 2, ["cpu:0", "cpu:1"]]
    assert seen["kernel_devices"] == 2 and seen["kernel_replicated"]  # every device holds the weights
    assert seen["batch_split"] == [8, 8]  # each device holds half of the global batch of 16
    assert seen["loss"][0] == pytest.approx(seen["loss"][1], rel=1e-6)
    assert seen["weights_moved"] > 0 and seen["weights_differ"] < 1e-6 * seen["weights_moved"] + 1e-7
    # 41 images, padded to 42 for two devices: the same loss and accuracy as one device's plain
    # pass, and as numpy computes them image by image.
    two, one, plain = seen["evaluate_two"], seen["evaluate_one"], seen["numpy"]
    for key in ("loss", "accuracy"):
        assert two[key] == pytest.approx(one[key], rel=1e-5) and two[key] == pytest.approx(plain[key], rel=1e-5)


# --------------------------------------------------------------------------------------------
# The subprocess: JAX with two CPU devices, TensorFlow blocked


def _step_worker(out: Path) -> None:
    import jax
    import keras

    from cifarkit.models import create_model
    from cifarkit.readers.feed import Feed
    from cifarkit.runtime.strategy import make_strategy
    from cifarkit.training.inputs import evaluation_passes

    placement = make_strategy("mirrored")

    def build():
        keras.utils.set_random_seed(0)
        model = create_model("lenet5", num_classes=10, input_shape=(32, 32, 3))
        model.compile(
            optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
            jit_compile=True,
        )
        return model

    with placement.strategy.scope():
        two = build()
    one = build()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 32, 32, 3)).astype("float32"), rng.integers(0, 10, 16)
    kernel = two.trainable_variables[0].value
    layout = placement.strategy.distribution.get_data_layout(x.shape).backend_layout
    before = [np.array(w) for w in one.get_weights()]
    with placement.fitting():
        loss_two = float(two.train_on_batch(x, y, return_dict=True)["loss"])
    loss_one = float(one.train_on_batch(x, y, return_dict=True)["loss"])
    after_two, after_one = two.get_weights(), one.get_weights()

    xe, ye = rng.normal(size=(TEST_IMAGES, 32, 32, 3)).astype("float32"), rng.integers(0, 10, TEST_IMAGES)
    padded = Feed(xe, ye, batch_size=16, shuffle=False, drop_remainder=False, batch_multiple=2)
    with placement.fitting():
        evaluate_two = two.evaluate(evaluation_passes(padded), return_dict=True, verbose=0)
    single = Feed(xe, ye, batch_size=16, shuffle=False, drop_remainder=False)
    evaluate_one = one.evaluate(evaluation_passes(single), return_dict=True, verbose=0)
    logits = np.asarray(one.predict(xe, verbose=0), np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    seen = {
        "placement": [placement.name, placement.replicas, list(placement.devices)],
        "kernel_devices": len(kernel.sharding.device_set),
        "kernel_replicated": bool(kernel.is_fully_replicated),
        "batch_split": [shard.data.shape[0] for shard in jax.device_put(x, layout).addressable_shards],
        "loss": [loss_two, loss_one],
        "weights_moved": float(sum(np.abs(a - b).sum() for a, b in zip(after_one, before))),
        "weights_differ": float(sum(np.abs(a - b).sum() for a, b in zip(after_two, after_one))),
        "evaluate_two": {k: float(evaluate_two[k]) for k in ("loss", "accuracy")},
        "evaluate_one": {k: float(evaluate_one[k]) for k in ("loss", "accuracy")},
        "numpy": {
            "loss": float(-log_probs[np.arange(TEST_IMAGES), ye].mean()),
            "accuracy": float((logits.argmax(axis=1) == ye).mean()),
        },
    }
    (out / "step.json").write_text(json.dumps(seen))


if __name__ == "__main__":
    _step_worker(Path(sys.argv[1]))
