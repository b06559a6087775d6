"""``--validate-every``: validation after every N-th epoch and the last, which changes what the
run reports (history.csv's validation cells, the progress lines) and never its weights."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synth import make_learnable_cifar10
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.errors import UsageError
from cifarkit.training.config import identity, resolve
from cifarkit.training.plan import TrainConfig
from cifarkit.training.rundir import read_history

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_learnable_cifar10(tmp_path_factory.mktemp("validate-every"), per_batch=32, test=40)


def _train(data, workdir, *extra: str):
    command = ["train", "whitenet", "--data", str(data.path), "--workdir", str(workdir), "--epochs", "3"]
    result = runner.invoke(app, [*command, "--batch-size", "32", "-m", "widths=16,16,16", *extra])
    assert result.exit_code == 0, result.output
    return result


def _weights(path) -> list[np.ndarray]:
    from cifarkit.modelio.keras_file import load_model

    return [np.asarray(w) for w in load_model(path).get_weights()]


def test_fewer_validations_report_fewer_epochs_and_train_the_same_weights(data, tmp_path):
    every = _train(data, tmp_path / "every", "--validate-every", "1")
    default = _train(data, tmp_path / "default")  # whitenet's: every 4th epoch and the last

    validated = [row["epoch"] for row in read_history(tmp_path / "default" / "history.csv") if row["val_accuracy"]]
    assert validated == [3]
    assert all(row["val_accuracy"] is not None for row in read_history(tmp_path / "every" / "history.csv"))
    epoch_lines = [line for line in default.stderr.splitlines() if line.startswith("epoch ") and "step" not in line]
    assert ["test_acc" in line for line in epoch_lines] == [False, False, True]
    assert "test_acc" in [line for line in every.stderr.splitlines() if line.startswith("epoch 1/3: loss")][0]

    first, second = _weights(tmp_path / "every" / "last.keras"), _weights(tmp_path / "default" / "last.keras")
    assert len(first) == len(second) and all(np.array_equal(a, b) for a, b in zip(first, second))
    report = json.loads((tmp_path / "default" / "report.json").read_text())
    assert report["config"]["validate_every"] == 4 and "validated every 4 epochs" in report["validation"]
    validated_each_epoch = json.loads((tmp_path / "every" / "report.json").read_text())
    assert report["test"]["accuracy"] == validated_each_epoch["test"]["accuracy"]


def test_the_validated_epochs_are_every_nth_and_the_last():
    plan = resolve(TrainConfig(model="whitenet", workdir="run", data="data", epochs=10))
    assert plan.validate_every == 4 and plan.validation_epochs == [4, 8, 10]
    plan = resolve(TrainConfig(model="lenet5", workdir="run", data="data", epochs=3))
    assert plan.validation_epochs == [1, 2, 3]


def test_a_config_json_from_before_validate_every_validates_every_epoch():
    from cifarkit.metadata.run_files import parse_run_config
    from cifarkit.training.plan import TrainPlan

    written = resolve(TrainConfig(model="whitenet", workdir="run", data="data", epochs=3)).to_json()
    older = json.dumps({**written, "validate_every": None}).encode()
    plan = TrainPlan.from_file(parse_run_config(older, "config.json"))
    assert plan.validate_every == 1 and plan.validation_epochs == [1, 2, 3]


def test_a_resume_may_change_how_often_it_validates():
    plan = resolve(TrainConfig(model="whitenet", workdir="run", data="data"))
    other = resolve(TrainConfig(model="whitenet", workdir="run", data="data", validate_every=1))
    assert identity(plan.to_json()) == identity(other.to_json())


@pytest.mark.parametrize(
    "model, every, message",
    [
        ("alexnet", 2, "--schedule plateau cuts the learning rate on each epoch's validation accuracy"),
        ("whitenet", 0, "--validate-every must be a positive integer"),
    ],
)
def test_validation_that_cannot_serve_the_run_is_refused(model, every, message):
    with pytest.raises(UsageError, match=message):
        resolve(TrainConfig(model=model, workdir="run", data="data", validate_every=every))


def test_the_best_epoch_is_chosen_among_the_validated_epochs_only(tmp_path, monkeypatch):
    from cifarkit.training import callbacks

    saved = []
    monkeypatch.setattr(callbacks, "save_model_atomic", lambda model, path: saved.append(path.name))
    checkpoints = callbacks.Checkpoints(None, tmp_path, choose=True, validated=[2, 3])
    checkpoints.on_epoch_end(0, {"accuracy": 0.99})  # training accuracy, no validation this epoch
    checkpoints.on_epoch_end(1, {"accuracy": 0.50, "val_accuracy": 0.60})
    checkpoints.on_epoch_end(2, {"accuracy": 0.70, "val_accuracy": 0.55})
    assert (checkpoints.best_epoch, checkpoints.best) == (2, 0.60)
    assert saved == ["last.keras", "last.keras", "best.keras", "last.keras"]
