"""``cifarkit train``: the run folder, resume after SIGKILL, defaults, augmentation places, precision.

Training data here is learnable on purpose (each class has its own colour under the noise), so
"the loss went down" means the optimiser, the pipeline and the labels are wired up correctly.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import synth
from synth import Learnable, make_learnable_cifar10
from typer.testing import CliRunner

from cifarkit.cli import app

runner = CliRunner()

RUN_FILES = ("last.keras", "history.csv", "curves.png", "config.json", "report.json", "stats.json")


train_args = synth.lenet5_train_args


def read_history(path: Path) -> list[dict]:
    from cifarkit.training.rundir import read_history as read

    return read(path)


@pytest.fixture(scope="module")
def learnable(tmp_path_factory) -> Learnable:
    return make_learnable_cifar10(tmp_path_factory.mktemp("learnable"))


@pytest.fixture(scope="module")
def finished_run(learnable, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("runs") / "lenet"
    result = runner.invoke(app, train_args(learnable, workdir))
    assert result.exit_code == 0, result.output
    return workdir, result


def test_two_epochs_write_every_run_file_and_lower_the_loss(finished_run, learnable):
    import imageio.v3 as iio

    workdir, result = finished_run
    assert "Trained lenet5 for 2 epochs" in result.stdout
    for name in RUN_FILES:
        assert (workdir / name).is_file(), name
    assert not (workdir / "backup").exists(), "a finished run keeps no backup"
    assert list((workdir / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((workdir / "logs" / "validation").glob("events.out.tfevents.*"))

    history = read_history(workdir / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"]
    assert all(0 <= row["val_accuracy"] <= 1 and row["images_per_second"] > 0 for row in history)
    # cosine schedule over 2 epochs: the full rate, then half of it
    assert history[0]["lr"] == pytest.approx(0.05) and history[1]["lr"] == pytest.approx(0.025)

    curves = iio.imread(workdir / "curves.png")
    assert curves.ndim == 3 and curves.shape[2] == 3 and curves.dtype == np.uint8
    assert len(np.unique(curves.reshape(-1, 3), axis=0)) > 3  # lines and text, not a blank canvas

    config = json.loads((workdir / "config.json").read_text())
    assert config["recipe"] == "cifar" and config["optimizer"] == "sgd" and config["schedule"] == "cosine"
    assert config["momentum"] == 0.9 and config["weight_decay"] == 5e-4 and config["augment_on"] == "host"

    report = json.loads((workdir / "report.json").read_text())
    for key in (
        "test",
        "best_epoch",
        "best_val_accuracy",
        "epochs_run",
        "images_per_second",
        "wall_seconds",
        "validation",
        "dataset",
        "stats",
        "strategy",
        "config",
    ):
        assert key in report, key
    assert report["epochs_run"] == 2 and report["resumed_from_epoch"] is None
    assert report["runtime"]["jit"] is False and report["runtime"]["steps_per_execution"] == 8  # 12 steps/epoch
    assert "cpu_kernels" in report["runtime"]
    assert 0.5 < report["test"]["accuracy"] <= 1  # colours are easy; chance is 0.1
    assert report["test"]["accuracy"] <= report["test"]["top5"] <= 1
    assert report["test"]["images"] == 50 and "ten_crop_accuracy" not in report["test"]  # cifar recipe
    assert report["images_per_second"] > 0 and report["wall_seconds"] > 0
    assert report["dataset"]["counts"] == {"train": 200, "test": 50}
    assert report["stats"]["origin"].startswith("computed from the 200")
    assert report["strategy"] == {"name": "default", "replicas": 1, "devices": report["strategy"]["devices"]}
    assert report["config"] == config


def _legend_band(image: np.ndarray) -> np.ndarray:
    """The top right of both charts of curves.png, where the legends are drawn (above the plots)."""
    from cifarkit.evaluation import plots

    left = plots.PANEL_W // 2
    return np.concatenate([image[: plots.MARGIN_T - 4, left : plots.PANEL_W], image[: plots.MARGIN_T - 4, -left:]])


def test_without_a_holdout_nothing_is_chosen_on_the_test_split(finished_run):
    import imageio.v3 as iio

    from cifarkit.evaluation import plots

    workdir, result = finished_run
    assert not (workdir / "best.keras").exists()
    report = json.loads((workdir / "report.json").read_text())
    assert report["selected_on"] == "none" and report["best_epoch"] is None and report["best_val_accuracy"] is None
    assert report["test"]["model"] == "last.keras" and "warning" not in report
    assert report["validation"] == (
        "test split (no holdout): the val_ numbers of each epoch are the test split's; nothing is chosen on it: "
        "the run's model is the final one, last.keras"
    )
    test = report["test"]
    assert result.stdout.splitlines()[-1].endswith(
        f"test accuracy {test['accuracy']:.4f}, top-5 {test['top5']:.4f} (last.keras, the final model); "
        f"report: {workdir / 'report.json'}"
    )
    # The curves name the test split as such: the legend is the one drawn for "test", not for "val".
    curves = iio.imread(workdir / "curves.png")
    history = read_history(workdir / "history.csv")
    assert np.array_equal(_legend_band(curves), _legend_band(plots.curves_image(history, "test")))
    assert not np.array_equal(_legend_band(curves), _legend_band(plots.curves_image(history, "val")))


def test_the_same_command_again_says_finished_and_changes_nothing(finished_run, learnable):
    workdir, _ = finished_run
    before = {name: (workdir / name).read_bytes() for name in RUN_FILES}
    result = runner.invoke(app, train_args(learnable, workdir))
    assert result.exit_code == 0, result.output
    assert "already holds this run, finished" in result.stdout
    assert {name: (workdir / name).read_bytes() for name in RUN_FILES} == before


def test_another_command_on_a_run_is_refused_unless_overwrite(finished_run, learnable, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(finished_run[0], workdir)
    result = runner.invoke(app, train_args(learnable, workdir, "--lr", "0.01"))
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(errors) == 1 and "lr: 0.05 -> 0.01" in errors[0] and "--overwrite" in errors[0]

    result = runner.invoke(app, train_args(learnable, workdir, "--lr", "0.01", "--overwrite"))
    assert result.exit_code == 0, result.output
    assert json.loads((workdir / "config.json").read_text())["lr"] == 0.01
    assert read_history(workdir / "history.csv")[0]["lr"] == pytest.approx(0.01)


def test_a_killed_run_resumes_from_its_backup(tmp_path):
    data = make_learnable_cifar10(tmp_path / "data", per_batch=200, test=50)
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "cifarkit",
        "train",
        "lenet5",
        "--data",
        str(data.path),
        "--workdir",
        str(workdir),
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--steps-per-execution",
        "1",
    ]
    job = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def epochs_logged() -> int:
        try:
            return len(read_history(workdir / "history.csv"))
        except (FileNotFoundError, IndexError):
            return 0

    deadline = time.monotonic() + 120
    while epochs_logged() < 2 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)  # as an OOM killer or a pre-empted machine would
    job.wait()
    assert not (workdir / "report.json").exists(), "the kill should land mid-training"
    state = json.loads((workdir / "backup" / "state.json").read_text())
    assert state["epoch"] >= 1 and (workdir / "backup" / state["weights"]).is_file()
    before = read_history(workdir / "history.csv")

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert (
        f"resumed from the backup in {workdir / 'backup'}: continuing at epoch {state['epoch'] + 1} of 6"
        in rerun.stderr
    )
    history = read_history(workdir / "history.csv")
    assert [row["epoch"] for row in history] == list(range(1, 7))  # continuous, no epoch twice
    for old, new in zip(before[: state["epoch"]], history):
        assert old == new  # the epochs the backup holds are kept as they were logged
    # Weights and optimizer came back: the first resumed epoch trains on from where the run was,
    # far below the loss of a first epoch from scratch.
    assert history[state["epoch"]]["loss"] < history[0]["loss"] / 2
    report = json.loads((workdir / "report.json").read_text())
    assert report["resumed_from_epoch"] == state["epoch"] and report["epochs_run"] == 6
    assert not (workdir / "backup").exists()


@pytest.mark.parametrize("place", ["host", "device"])
def test_host_and_device_augmentation_both_train_and_save_the_same_model(learnable, tmp_path, place):
    from cifarkit.modelio.keras_file import load_model, model_parts
    from cifarkit.training import TrainConfig, train

    config = TrainConfig(
        model="lenet5",
        workdir=str(tmp_path / place),
        data=str(learnable.path),
        epochs=2,
        batch_size=16,
        augment_on=place,
    )
    result = train(config, quiet=True)
    history = read_history(tmp_path / place / "history.csv")
    assert history[1]["loss"] < history[0]["loss"]
    assert result.report.config.augment_on == place
    model = load_model(tmp_path / place / "last.keras")
    augmentation, network, names = model_parts(model)
    assert model.input.dtype == "uint8" and tuple(model.input_shape[1:]) == (32, 32, 3)
    assert augmentation.recipe.name == "cifar" and network.name == "lenet5" and names == synth.CIFAR10_CLASSES


def test_mixed_precision_trains_in_bfloat16_on_cpu_and_restores_the_policy(learnable, tmp_path, monkeypatch):
    import keras

    from cifarkit.modelio.keras_file import load_model, model_parts
    from cifarkit.training import TrainConfig, compile, train

    monkeypatch.setattr(compile, "cpu_has_bfloat16", lambda: False)  # as on an AVX2-only CPU
    notes = []
    result = train(
        TrainConfig(
            model="lenet5",
            workdir=str(tmp_path / "mixed"),
            data=str(learnable.path),
            epochs=2,
            batch_size=16,
            precision="mixed",
        ),
        say=notes.append,
    )
    assert any("no bfloat16 arithmetic" in note for note in notes)  # the user hears why it is slow
    assert keras.config.dtype_policy().name == "float32"  # set for building only
    network = model_parts(load_model(tmp_path / "mixed" / "last.keras"))[1]
    assert network.get_layer("conv1").dtype_policy.name == "mixed_bfloat16"
    history = read_history(tmp_path / "mixed" / "history.csv")
    assert history[1]["loss"] < history[0]["loss"] and math.isfinite(history[1]["loss"])
    assert result.report.precision == "mixed"


def test_holdout_validates_on_held_out_training_images_and_chooses_the_best_epoch_there(learnable, tmp_path):
    import imageio.v3 as iio

    from cifarkit.evaluation import plots
    from cifarkit.modelio.model_path import resolve_model_path

    workdir = tmp_path / "held"
    result = runner.invoke(app, train_args(learnable, workdir, "--holdout", "40", "--limit-train", "100"))
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "report.json").read_text())
    assert report["dataset"]["counts"] == {"test": 50, "train": 100, "holdout": 40}
    assert report["dataset"]["source_counts"] == {"train": 200, "test": 50}
    assert report["validation"] == (
        "holdout: 40 images drawn from train under seed 0; the best epoch is chosen on it: "
        "the run's model is best.keras"
    )
    assert report["test"]["images"] == 50  # the test split stays for the final report
    history = read_history(workdir / "history.csv")  # its val_ columns: the holdout's numbers
    best = max(history, key=lambda row: row["val_accuracy"])  # the first of equals, as the checkpoint keeps it
    assert report["selected_on"] == "holdout" and report["best_epoch"] == best["epoch"]
    assert report["best_val_accuracy"] == pytest.approx(best["val_accuracy"], rel=1e-6)
    assert report["test"]["model"] == "best.keras" and (workdir / "best.keras").is_file()
    assert f"(best.keras, epoch {best['epoch']} chosen on the holdout split)" in result.stdout
    assert resolve_model_path(workdir)[0] == workdir / "best.keras"  # what evaluate, predict, export-model take
    curves = iio.imread(workdir / "curves.png")
    assert np.array_equal(_legend_band(curves), _legend_band(plots.curves_image(history, "holdout")))


def test_choosing_on_the_test_split_is_asked_by_name_and_warned_of(learnable, tmp_path):
    workdir = tmp_path / "on-test"
    result = runner.invoke(app, train_args(learnable, workdir, "--select-on", "test"))
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "report.json").read_text())
    assert report["selected_on"] == "test" and report["test"]["model"] == "best.keras"
    assert report["warning"] == (
        "the best epoch was chosen on the test split (--select-on test), so best.keras's test accuracy is optimistic"
    )
    assert "warning: best.keras was chosen on the test split: its test accuracy is optimistic" in result.stderr
    assert f"(best.keras, epoch {report['best_epoch']} chosen on the test split)" in result.stdout


def test_defaults_follow_the_model():
    from cifarkit.training import TrainConfig, resolve

    paper = resolve(TrainConfig(model="alexnet", workdir="run", data="data"))
    assert (
        paper.recipe.name,
        paper.crop,
        paper.optimizer,
        paper.lr,
        paper.momentum,
        paper.weight_decay,
        paper.schedule,
        paper.batch_size,
        paper.epochs,
    ) == ("paper", 227, "sgd", 0.01, 0.9, 5e-4, "plateau", 128, 90)
    small = resolve(TrainConfig(model="alexnet-cifar", workdir="run", data="data"))
    assert (small.recipe.name, small.crop, small.lr, small.schedule) == ("cifar", 32, 0.05, "cosine")
    adam = resolve(TrainConfig(model="lenet5", workdir="run", data="data", optimizer="adam"))
    assert adam.lr == 1e-3 and adam.momentum is None
    assert resolve(TrainConfig(model="alexnet", workdir="run", data="data", crop=224)).crop == 224


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--optimizer", "rmsprop"], "'rmsprop' is not one of"),
        (["--schedule", "linear"], "'linear' is not one of"),
        (["--precision", "half"], "'half' is not one of"),
        (["--augment-on", "tpu"], "'tpu' is not one of"),
        (["--epochs", "0"], "epochs=0"),
        (["--label-smoothing", "1.5"], "label_smoothing=1.5"),
        (["--strategy", "tpu"], "'tpu' is not one of"),
        (["--model-option", "width"], "KEY=VALUE"),
        (["--crop", "100"], "crop=100"),
        (["--batch-size", "1000"], "batch_size=1000"),
        (["--select-on", "best"], "'best' is not one of"),
        (["--select-on", "holdout"], "--select-on holdout needs --holdout N"),
        (["--select-on", "test", "--holdout", "20"], "with --holdout 20 validation runs on the held-out images"),
    ],
)
def test_bad_settings_are_one_line_usage_errors(learnable, tmp_path, extra, message):
    result = runner.invoke(app, train_args(learnable, tmp_path / "bad", *extra))
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.output


def test_an_unknown_model_is_refused_before_anything_is_read(tmp_path):
    result = runner.invoke(app, ["train", "resnet9", "--workdir", str(tmp_path / "x"), "--data", "/no/such/data"])
    assert result.exit_code == 2 and "unknown model 'resnet9'" in result.stderr
    assert not (tmp_path / "x").exists()


def test_label_smoothing_loss_is_keras_categorical_crossentropy_on_one_hot_labels():
    import keras

    from cifarkit.training.compile import make_loss

    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
    labels = np.array([0, 2])
    loss = make_loss(0.1)(labels, logits)
    expected = keras.losses.categorical_crossentropy(np.eye(3)[labels], logits, from_logits=True, label_smoothing=0.1)
    np.testing.assert_allclose(np.asarray(loss), np.asarray(expected), rtol=1e-6)


def test_curves_chart_draws_both_series_in_their_colours():
    from cifarkit.evaluation import plots

    rows = [
        {"epoch": e, "loss": 2.0 / e, "accuracy": 0.2 * e, "val_loss": 2.2 / e, "val_accuracy": 0.15 * e}
        for e in range(1, 5)
    ]
    image = plots.curves_image(rows)
    assert image.shape == (plots.PANEL_H, 2 * plots.PANEL_W + 8, 3)
    for colour in (plots.TRAIN_COLOUR, plots.VAL_COLOUR):
        assert (image == colour).all(axis=2).sum() > 100
    # The validation curves' legend is the split's name: its swatch sits that name's width from the right.
    for name in ("test", "holdout"):
        legend = plots.curves_image(rows, name)[16, : plots.PANEL_W]
        swatch = np.flatnonzero((legend == plots.VAL_COLOUR).all(axis=1))
        assert swatch.min() == plots.PANEL_W - plots.MARGIN_R - plots.text_width(name) - 18
    assert plots.nice_ticks(0.14, 0.2) == [0.14, 0.16, 0.18, 0.2]
    assert plots.nice_ticks(1, 20) == [0, 5, 10, 15, 20]


def test_without_data_or_workdir_it_trains_on_the_bundled_sample_into_runs_model(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    result = runner.invoke(app, ["train", "lenet5", "--epochs", "1", "--batch-size", "50"])
    assert result.exit_code == 0, result.output
    assert "bundled" in result.stderr and "sample" in result.stderr
    assert "run folder: runs/lenet5" in result.stderr
    report = json.loads((tmp_path / "work" / "runs" / "lenet5" / "report.json").read_text())
    assert report["dataset"]["bundled_sample"] is True and report["dataset"]["name"] == "cifar10"
    assert report["dataset"]["counts"] == {"train": 200, "test": 100}
    assert report["config"]["sample"] is True


def test_a_crash_mid_epoch_resumes_from_the_mid_epoch_backup(learnable, tmp_path, monkeypatch):
    import cifarkit.training as trainer

    synth.crash_during_training(monkeypatch, epoch=1, batch=5)
    config = trainer.TrainConfig(
        model="lenet5",
        workdir=str(tmp_path / "run"),
        data=str(learnable.path),
        epochs=3,
        batch_size=16,
        steps_per_execution=1,
    )
    with pytest.raises(synth.TrainingCrash):
        trainer.train(config, quiet=True, backup_seconds=0)  # a backup after every step
    state = json.loads((tmp_path / "run" / "backup" / "state.json").read_text())
    assert (state["epoch"], state["step"]) == (1, 5)  # the crash came before the sixth step was saved
    assert len(state["callbacks"]["history"]["rows"]) == 1

    monkeypatch.undo()
    messages = []
    result = trainer.train(config, say=messages.append, backup_seconds=0)
    assert any("continuing at epoch 2 of 3 (the backup was 5 steps into it;" in m for m in messages), messages
    assert result.resumed_from == 1
    assert [row["epoch"] for row in read_history(tmp_path / "run" / "history.csv")] == [1, 2, 3]


def test_a_colour_recipe_on_grey_images_is_refused_in_one_line_before_training(tmp_path):
    synth.make_mnist_folder(tmp_path / "mnist")
    workdir = tmp_path / "run"
    args = ["train", "lenet5", "--data", str(tmp_path / "mnist"), "--recipe", "paper", "--workdir", str(workdir)]
    result = runner.invoke(app, [*args, "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1] == (
        f"cifarkit: error: --recipe paper shifts colours along RGB's principal components; {tmp_path / 'mnist'} "
        "holds grey images (--recipe mnist or cifar)"
    )
    assert not workdir.exists()
