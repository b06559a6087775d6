"""A run folder's JSON files (config.json, backup/state.json, report.json, stats.json) and
$TF_CONFIG, crafted as an attacker would: deep nesting, wrong types, out-of-range values, a
file too big to be one. Each is refused in one line naming the file, by the one function that
reads it; what this version writes, and what earlier versions wrote, still reads."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.errors import CifarkitError, OutputError, SourceError, UsageError
from cifarkit.metadata import run_files
from cifarkit.metadata.run_files import HistoryRow, RunConfigFile, read_run_config
from cifarkit.readers.stats import Stats, bundled_stats, compute_stats, load_stats, save_stats
from cifarkit.runtime.strategy import read_tf_config
from cifarkit.training.config import TrainConfig, identity, resolve
from cifarkit.training.plan import TrainPlan
from cifarkit.training.rundir import HISTORY_COLUMNS, RunState, check_workdir, read_backup, read_report

runner = CliRunner()
DEEP = "[" * 100_000 + "]" * 100_000
WEIGHTS = "weights-000001.weights.h5"

CONFIG = {
    "model": "lenet5",
    "workdir": "/runs/lenet5",
    "data": "/data/cifar10",
    "recipe": "cifar",
    "epochs": 2,
    "batch_size": 16,
    "lr": 0.05,
    "optimizer": "sgd",
    "schedule": "cosine",
    "holdout": 0,
}
BACKUP = {
    "serial": 1,
    "epoch": 1,
    "step": 0,
    "weights": WEIGHTS,
    "callbacks": {
        "history": {"rows": [{"epoch": 1, "loss": 2.0}], "wall_seconds": 3.0},
        "learning_rate": {"best": 0.5, "wait": 0, "cuts": 0},
        "checkpoints": {"best": 0.5, "best_epoch": 1},
    },
}
REPORT = {
    "model": "lenet5",
    "epochs_run": 2,
    "wall_seconds": 9.5,
    "images_per_second": 100.0,
    "test": {"split": "test", "images": 20, "model": "best.keras", "accuracy": 0.5, "top5": 0.9, "top_k": 5},
}


def with_(base: dict, **changes) -> dict:
    return {**base, **changes}


def one_line(error: CifarkitError, path: Path | str) -> str:
    text = str(error)
    assert "\n" not in text and str(path) in text, text
    return text


# --------------------------------------------------------------------------------------------
# config.json


@pytest.mark.parametrize(
    "content, words",
    [
        (DEEP, "nested more than"),
        ("[1]", "the top level"),
        (json.dumps(with_(CONFIG, data=None)), "data: Input should be a valid string"),
        (json.dumps(with_(CONFIG, epochs="2")), "epochs: Input should be a valid integer"),
        (json.dumps(with_(CONFIG, epochs=True)), "epochs: Input should be a valid integer"),
        (json.dumps(with_(CONFIG, holdout=-1)), "holdout: Input should be greater than or equal to 0"),
        ('{"holdout": 1' + "0" * 5000 + "}", "Invalid JSON"),  # a 5,001-digit number
        (json.dumps(with_(CONFIG, lr=0)), "lr: Input should be greater than 0"),
        (json.dumps(with_(CONFIG, seed=-1)), "seed: Input should be greater than or equal to 0"),
        (json.dumps(with_(CONFIG, seed=2**32)), "seed: Input should be less than 4294967296"),
        (json.dumps(with_(CONFIG, momentum=1.5)), "momentum: Input should be less than 1"),
        (json.dumps(with_(CONFIG, eval_split="  ")), "eval_split: "),
        (json.dumps(with_(CONFIG, model_options=[1])), "model_options: Input should be"),
        (b"\xff\xfe{", "Invalid JSON"),
    ],
)
def test_a_hostile_run_configuration_is_one_line(tmp_path, content, words):
    path = tmp_path / "config.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SourceError) as caught:
        read_run_config(path)
    assert words in one_line(caught.value, path)


def test_evaluate_on_a_run_whose_config_is_nested_deep_is_one_line(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(DEEP)
    (run / "best.keras").write_bytes(b"")  # never reached: the configuration is read first
    result = runner.invoke(app, ["evaluate", str(run), "--quiet"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.splitlines()[-1].startswith(
        f"cifarkit: error: {run / 'config.json'}: not a training run's configuration (JSON nested more than"
    )


def test_a_run_configuration_too_big_to_be_one_is_refused_unread(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b" " * (run_files.MAX_RUN_FILE_BYTES + 1))
    with pytest.raises(SourceError, match="larger than"):
        read_run_config(path)


def test_resume_on_a_damaged_configuration_refuses_unless_overwrite(tmp_path):
    config = TrainConfig(**CONFIG)
    (tmp_path / "config.json").write_text(DEEP)
    with pytest.raises(OutputError, match="unreadable config.json"):
        check_workdir(tmp_path, config, overwrite=False)
    assert check_workdir(tmp_path, config, overwrite=True) is RunState.OVERWRITE


def test_every_setting_of_a_run_is_a_typed_field_and_this_versions_config_reads_back(tmp_path):
    assert set(RunConfigFile.model_fields) == {f.name for f in dataclasses.fields(TrainConfig)}
    plan = resolve(TrainConfig(**CONFIG, seed=7, model_options={"width": 0.5, "widths": [64, 128]}, tta="flip"))
    (tmp_path / "config.json").write_text(json.dumps(plan.to_json(), indent=2))
    again = TrainPlan.from_file(read_run_config(tmp_path / "config.json"))
    assert again == plan and again.recipe.name == "cifar" and again.tta == ("flip",)
    assert again.to_json() == json.loads((tmp_path / "config.json").read_text())


def test_a_config_of_an_earlier_version_without_the_newer_settings_still_reads_and_resumes(tmp_path):
    """Folders written before the trainer's methods and the split options lack those keys: they
    read, and compare as the settings those runs had (methods off)."""
    methods = ("nesterov", "averaging", "whiten", "warmup", "tta")
    old = {k: v for k, v in TrainConfig(**CONFIG).to_json().items() if k not in methods}
    (tmp_path / "config.json").write_text(json.dumps(old))
    record = read_run_config(tmp_path / "config.json")
    assert "averaging" not in record.written() and record.averaging is None
    again = TrainConfig(**old, nesterov=False, averaging="none", whiten=False, tta="", warmup=None)
    assert identity(record.written()) == identity(again.to_json())
    with_lookahead = dataclasses.replace(again, averaging="lookahead")
    assert identity(record.written()) != identity(with_lookahead.to_json())


# --------------------------------------------------------------------------------------------
# backup/state.json


def write_backup(folder: Path, content: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WEIGHTS).write_bytes(b"")
    (folder / "state.json").write_text(content)
    return folder / "state.json"


@pytest.mark.parametrize(
    "content, words",
    [
        (DEEP, "nested more than"),
        (json.dumps(with_(BACKUP, epoch=-1)), "epoch: Input should be greater than or equal to 0"),
        (json.dumps(with_(BACKUP, epoch=11)), "epoch: 11, but the run has 10 epochs"),
        (json.dumps(with_(BACKUP, weights="../../etc/passwd")), "holds a path separator"),
        (json.dumps(with_(BACKUP, weights=WEIGHTS * 12)), "is longer than 255 bytes"),  # was ENAMETOOLONG
        (json.dumps(with_(BACKUP, weights=WEIGHTS + ".old")), "not a weights file name the trainer writes"),
        (json.dumps(with_(BACKUP, callbacks={"learning_rate": {"wait": "1"}})), "callbacks.learning_rate.wait"),
        (json.dumps(with_(BACKUP, callbacks={"history": {"rows": [[]] * 3}})), "callbacks.history.rows.0"),
        (json.dumps(with_(BACKUP, callbacks={"checkpoints": {"best": "NaN"}})), "callbacks.checkpoints.best"),
    ],
)
def test_a_hostile_backup_state_is_one_line(tmp_path, content, words):
    path = write_backup(tmp_path / "backup", content)
    with pytest.raises(OutputError) as caught:
        read_backup(tmp_path / "backup", epochs=10)
    text = one_line(caught.value, path)
    assert "damaged run backup" in text and words in text and "--overwrite" in text


def test_a_backup_state_this_version_writes_reads_back_typed(tmp_path):
    write_backup(tmp_path, json.dumps(BACKUP))
    state = read_backup(tmp_path, epochs=10)
    assert (state.serial, state.epoch, state.weights) == (1, 1, WEIGHTS)
    assert state.callbacks.history.rows[0].epoch == 1 and state.callbacks.history.rows[0].wall_seconds is None
    assert state.callbacks.checkpoints.best_epoch == 1
    assert list(HistoryRow.model_fields) == list(HISTORY_COLUMNS)


# --------------------------------------------------------------------------------------------
# report.json


@pytest.mark.parametrize(
    "content, words",
    [
        (DEEP, "nested more than"),
        ("[1]", "the top level"),
        (json.dumps(with_(REPORT, test=with_(REPORT["test"], accuracy="high"))), "test.accuracy"),
        (json.dumps(with_(REPORT, test=with_(REPORT["test"], accuracy=1.5))), "test.accuracy"),
        (json.dumps(with_(REPORT, test=with_(REPORT["test"], top_k=0))), "test.top_k"),
    ],
)
def test_a_hostile_report_is_one_line(tmp_path, content, words):
    (tmp_path / "report.json").write_text(content)
    with pytest.raises(OutputError) as caught:
        read_report(tmp_path)
    text = one_line(caught.value, tmp_path / "report.json")
    assert "damaged run report" in text and words in text and "--overwrite" in text


def test_a_report_of_a_run_with_no_test_images_reads(tmp_path):
    """json.dumps writes NaN for the accuracy of no images; it reads back as NaN."""
    (tmp_path / "report.json").write_text(json.dumps(with_(REPORT, test=with_(REPORT["test"], accuracy=float("nan")))))
    assert read_report(tmp_path).test.accuracy != read_report(tmp_path).test.accuracy


# --------------------------------------------------------------------------------------------
# statistics


@pytest.mark.parametrize(
    "content, words",
    [
        (DEEP, "nested more than"),
        ('{"mean": [1, 2, 3]}', "mean.1: Input should be less than or equal to 1"),
        (
            '{"mean": [0.5, 0.5], "std": [1, 1], "covariance": [], "eigenvalues": [], "eigenvectors": [], '
            '"pixels": 1, "images": 1}',
            "images have 1 or 3",
        ),
        (
            '{"mean": [0.5], "std": [0.1, 0.1], "covariance": [[1]], "eigenvalues": [1], "eigenvectors": [[1]], '
            '"pixels": 1, "images": 1}',
            "not every vector and matrix matches",
        ),
        (
            '{"mean": [0.5], "std": [0.1], "covariance": [[1]], "eigenvalues": [1], "eigenvectors": [[1]], '
            '"pixels": 0, "images": 1}',
            "pixels: Input should be greater than or equal to 1",
        ),
    ],
)
def test_hostile_statistics_are_one_line(tmp_path, content, words):
    (tmp_path / "stats.json").write_text(content)
    with pytest.raises(SourceError) as caught:
        load_stats(tmp_path / "stats.json")
    assert words in one_line(caught.value, tmp_path / "stats.json")


def test_statistics_written_here_grey_or_rgb_and_bundled_read_back(tmp_path):
    import numpy as np

    for channels in (1, 3):
        images = np.random.default_rng(channels).integers(0, 256, (4, 8, 8, channels), dtype=np.uint8)
        stats = compute_stats([images], "x")
        save_stats(stats, tmp_path / f"{channels}.json")
        assert load_stats(tmp_path / f"{channels}.json") == stats
        assert Stats.from_json(stats.to_json()) == stats  # as a saved model's layer config holds them
    assert bundled_stats("cifar10").images == 50_000
    with pytest.raises(SourceError, match="statistics: malformed"):
        Stats.from_json({"mean": "0.5"})


# --------------------------------------------------------------------------------------------
# $TF_CONFIG


@pytest.mark.parametrize(
    "value, words",
    [
        ("[" * 10_000 + "]" * 10_000, "nested more than"),
        (json.dumps({"cluster": {"worker": "a:1"}, "task": {"type": "worker", "index": 0}}), "cluster.worker"),
        (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": -1}}), "task.index"),
        (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 10**30}}), "task.index"),
    ],
)
def test_a_hostile_tf_config_is_one_line(monkeypatch, value, words):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(UsageError) as caught:
        read_tf_config()
    text = one_line(caught.value, "$TF_CONFIG is not a valid cluster description")
    assert words in text and len(text) < 600


def test_a_tf_config_index_as_text_reads_as_tensorflow_reads_it(monkeypatch):
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": "1"}})
    )
    config = read_tf_config()
    assert (config.task.type, config.task.index, config.members) == ("worker", 1, ["a:1", "b:1"])
