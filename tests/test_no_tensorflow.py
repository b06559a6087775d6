"""``cifarkit train``, ``evaluate`` and ``predict`` in a Python where ``import tensorflow`` fails,
on Keras's JAX and PyTorch backends.

Each command runs in a subprocess whose ``sitecustomize`` puts ``sys.modules["tensorflow"] =
None`` before anything else runs, so any import of TensorFlow on the way (cifarkit's, Keras's,
a library's) raises ImportError, as in an environment where it is not installed. The model a
JAX run saves is then read back by ``cifarkit predict`` on the TensorFlow backend: one file
for every backend.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import synth

from cifarkit.training import read_history

BLOCK_TENSORFLOW = 'import sys\nsys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError\n'
TIMEOUT = 240
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
TRAIN = ["alexnet-cifar", "-m", "width=0.25", "--batch-size", "32"]


@pytest.fixture(scope="module")
def blocked(tmp_path_factory) -> Path:
    """A folder holding the sitecustomize.py that blocks TensorFlow, for PYTHONPATH."""
    folder = tmp_path_factory.mktemp("no-tensorflow")
    (folder / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    return folder


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return synth.make_cifar10_python(tmp_path_factory.mktemp("data"), per_batch=20, test=30).path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Two images to predict: one of the model's size, one that has to be brought to it."""
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (45, 60, 3), dtype=np.uint8)).save(folder / "b.png")
    return folder


def environment(backend: str, blocked: Path | None) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend}
    if blocked is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(blocked), *filter(None, [env.get("PYTHONPATH")])])
    return env


def cifarkit_command(*args) -> list[str]:
    return [sys.executable, "-m", "cifarkit", *map(str, args)]


def cli(backend: str, blocked: Path | None, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        cifarkit_command(*args), capture_output=True, text=True, timeout=TIMEOUT, env=environment(backend, blocked)
    )


def predictions(path: Path) -> dict[str, dict[str, float]]:
    """predict's CSV as {file name: {class: probability}}."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    k = sum(1 for key in rows[0] if key.startswith("class_"))
    return {
        Path(r["file"]).name: {r[f"class_{i}"]: float(r[f"probability_{i}"]) for i in range(1, k + 1)} for r in rows
    }


def check_run(workdir: Path, backend: str) -> dict:
    """A finished two-epoch run's folder, as the trainer promises it on every backend."""
    for name in ("config.json", "stats.json", "history.csv", "curves.png", "last.keras", "report.json"):
        assert (workdir / name).is_file(), name
    assert not (workdir / "backup").exists()
    history = read_history(workdir / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(row["val_accuracy"] is not None and row["images_per_second"] > 0 for row in history)
    report = json.loads((workdir / "report.json").read_text())
    assert report["runtime"]["backend"] == backend and report["epochs_run"] == 2
    assert report["config"]["augment_on"] == "device" and report["test"]["images"] == 30
    return report


@pytest.mark.parametrize("backend", [pytest.param("jax", marks=needs_jax), pytest.param("torch", marks=needs_torch)])
def test_train_evaluate_predict_without_tensorflow(backend, blocked, archive, images, tmp_path):
    workdir = tmp_path / "run"
    trained = cli(backend, blocked, "train", *TRAIN, "--data", archive, "--workdir", workdir, "--epochs", "2")
    assert trained.returncode == 0, trained.stderr
    assert "Traceback" not in trained.stderr and "augmentation on the device" in trained.stderr
    report = check_run(workdir, backend)

    evaluated = cli(backend, blocked, "evaluate", workdir, "--quiet")
    assert evaluated.returncode == 0, evaluated.stderr
    metrics = json.loads((workdir / "eval-test" / "metrics.json").read_text())
    assert metrics["images"] == 30 and metrics["accuracy"] == pytest.approx(report["test"]["accuracy"])

    predicted = cli(backend, blocked, "predict", workdir, images, "--top-k", "10")
    assert predicted.returncode == 0, predicted.stderr
    table = predictions(workdir / "predictions.csv")
    assert sorted(table) == ["a.png", "b.png"]
    assert all(sum(probabilities.values()) == pytest.approx(1, abs=1e-4) for probabilities in table.values())

    if backend == "jax" and importlib.util.find_spec("tensorflow") is not None:
        # The same last.keras on the TensorFlow backend: the same probabilities for the image of
        # the model's size (the other one is resized, by each backend's own bilinear resize).
        on_tf = cli(
            "tensorflow", None, "predict", workdir / "last.keras", images, "--top-k", "10", "--csv", tmp_path / "tf.csv"
        )
        assert on_tf.returncode == 0, on_tf.stderr
        tf_table = predictions(tmp_path / "tf.csv")
        for name, probability in table["a.png"].items():
            assert tf_table["a.png"][name] == pytest.approx(probability, abs=1e-4)


@needs_jax
def test_a_killed_run_resumes_from_its_backup_without_tensorflow(blocked, tmp_path):
    data = synth.make_cifar10_python(tmp_path / "data", per_batch=160, test=30).path  # 25 steps an epoch
    workdir = tmp_path / "run"
    command = cifarkit_command("train", *TRAIN, "--data", data, "--workdir", workdir, "--epochs", "4")
    job = subprocess.Popen(
        command,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environment("jax", blocked),
    )

    def backed_up() -> bool:  # the backup is the last thing an epoch's end writes
        return (workdir / "backup" / "state.json").is_file()

    deadline = time.monotonic() + TIMEOUT
    while not backed_up() and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    os.killpg(job.pid, signal.SIGKILL)  # as an OOM killer or a pre-empted machine would
    job.wait()
    assert not (workdir / "report.json").exists(), "the kill should land mid-training"
    state = json.loads((workdir / "backup" / "state.json").read_text())
    assert 1 <= state["epoch"] < 4 and (workdir / "backup" / state["weights"]).is_file()
    before = read_history(workdir / "history.csv")

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=environment("jax", blocked))
    assert rerun.returncode == 0, rerun.stderr
    assert f"continuing at epoch {state['epoch'] + 1} of 4" in rerun.stderr
    history = read_history(workdir / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]  # continuous, no epoch twice
    assert history[: state["epoch"]] == before[: state["epoch"]]  # the epochs the backup holds, as logged
    report = json.loads((workdir / "report.json").read_text())
    assert report["resumed_from_epoch"] == state["epoch"] and report["epochs_run"] == 4
    assert not (workdir / "backup").exists()


@needs_jax
@pytest.mark.parametrize(
    "option, message",
    [
        (["--augment-on", "host"], "--augment-on host is TensorFlow's tf.data; on the jax backend"),
        ("tree", "is a image files source, which needs TensorFlow's tf.data; on the jax backend cifarkit reads CIFAR"),
    ],
)
def test_what_needs_tensorflow_is_refused_in_one_line_and_writes_nothing(blocked, archive, tmp_path, option, message):
    if option == "tree":
        data, option = synth.make_image_folder(tmp_path / "tree").path, []
    else:
        data = archive
    workdir = tmp_path / "run"
    result = cli("jax", blocked, "train", *TRAIN, "--data", data, "--workdir", workdir, "--epochs", "1", *option)
    assert result.returncode == 2  # a usage error: the command asks for what this backend lacks
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("cifarkit: error: ") and message in lines[-1], result.stderr
    assert "Traceback" not in result.stderr
    assert not workdir.exists() or sorted(p.name for p in workdir.iterdir()) == [".cifarkit.lock"]  # the lock alone
