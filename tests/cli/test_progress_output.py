"""What ``train`` and ``export`` print while they run when stderr is no terminal (a log file, a
pipe, CI; CliRunner's output is none either): plain lines at a bounded pace, or with
``--json-progress`` one JSON object a line."""

from __future__ import annotations

import json
import re

import pytest
import synth
from synth import make_learnable_cifar10
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.runtime.progress import RECORD_KEYS

runner = CliRunner()


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    return make_learnable_cifar10(tmp_path_factory.mktemp("learnable"), per_batch=20, test=20)


def train(learnable, workdir, *extra: str):
    args = ["train", "lenet5", "--data", str(learnable.path), "--workdir", str(workdir), "--epochs", "2"]
    result = runner.invoke(app, [*args, "--batch-size", "16", *extra])
    assert result.exit_code == 0, result.output
    assert "Trained lenet5 for 2 epochs" in result.stdout  # the result line stays on stdout
    return result


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_training_into_a_log_prints_a_line_an_epoch_with_its_numbers(learnable, tmp_path):
    result = train(learnable, tmp_path / "run")
    epochs = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    number, seconds = r"\d+\.\d{4}", r"\d+\.\d s"
    for n, line in enumerate(epochs, 1):
        assert re.fullmatch(
            # validation ran on the test split (no --holdout), and the line says so
            rf"epoch {n}/2: loss {number}, accuracy {number}, test_loss {number}, test_accuracy {number}, "
            rf"{seconds}, [\d,]+ images/s, ETA {seconds}",
            line,
        ), line
    assert len(epochs) == 2
    assert epochs[1].endswith("ETA 0.0 s")


def test_json_progress_with_quiet_makes_stderr_records_alone(learnable, tmp_path):
    result = train(learnable, tmp_path / "run", "--quiet", "--json-progress")
    records = json_lines(result.stderr)  # every line parses: no notes, no bar
    assert all(tuple(r) == RECORD_KEYS for r in records)
    # The pass that measures the training images' statistics comes first and says when it is done.
    stats = [r for r in records if r["task"] == "stats"]
    assert [(r["event"], r["split"], r["step"], r["total"]) for r in stats][-1] == ("done", "train", 100, 100)
    records = [r for r in records if r["task"] == "train"]
    assert [(r["event"], r["epoch"]) for r in records] == [("epoch", 1), ("epoch", 2), ("done", 2)]
    for r in records[:2]:
        assert (r["task"], r["epochs"], r["step"], r["total"], r["unit"]) == ("train", 2, 6, 6, "step")
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds", "images_per_s"} <= set(r["metrics"])
        assert r["elapsed_s"] > 0 and r["eta_s"] >= 0
    assert records[1]["eta_s"] == 0.0


@pytest.fixture()
def small_chunks(monkeypatch):
    """Image trees written one image a task, so that an export of 200 images reports 200 times."""
    monkeypatch.setattr("cifarkit.formats.image_tree.IMAGES_PER_TASK", 1)


def export(tmp_path, *extra: str):
    data = synth.make_cifar10_python(tmp_path / "src", per_batch=40, test=20)
    args = ["export", "--data", str(data.path), "--out", str(tmp_path / "out"), "--format", "png", "--workers", "1"]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Exported 220 images (train 200, test 20) as png")
    return result


def test_an_export_into_a_log_prints_a_few_lines_and_a_summary_a_split(tmp_path, small_chunks):
    lines = [line for line in export(tmp_path).stderr.splitlines() if line.startswith("export ")]
    train = [line for line in lines if line.startswith("export train: ")]
    # 200 updates: a line at each tenth, none more, then the summary
    assert [line.split(" images")[0] for line in train[:-1]] == [f"export train: {n}/200" for n in range(20, 200, 20)]
    assert re.fullmatch(r"export train: 200 images in \d+\.\d s \([\d,]+ images/s\)", train[-1]), train[-1]
    test = [line for line in lines if line.startswith("export test: ")]
    assert len(test) == 10 and test[-1].startswith("export test: 20 images in ")


def test_an_export_with_json_progress_reports_each_split_to_its_end(tmp_path, small_chunks):
    records = json_lines(export(tmp_path, "--quiet", "--json-progress").stderr)
    assert all(tuple(r) == RECORD_KEYS and r["task"] == "export" and r["unit"] == "img" for r in records)
    done = [r for r in records if r["event"] == "done"]
    assert [(r["split"], r["step"], r["total"], r["eta_s"]) for r in done] == [
        ("train", 200, 200, 0.0),
        ("test", 20, 20, 0.0),
    ]
    progress = [r for r in records if r["event"] == "progress"]
    assert 0 < len(progress) <= 18 and all(r["step"] < r["total"] and r["eta_s"] is not None for r in progress)


def test_stats_reports_its_pass_in_json(learnable, tmp_path):
    args = ["stats", "--data", str(learnable.path), "--out", str(tmp_path / "s.json"), "--quiet", "--json-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = json_lines(result.stderr)
    assert [(r["task"], r["event"], r["step"], r["total"]) for r in records][-1] == ("stats", "done", 100, 100)
    assert json.loads((tmp_path / "s.json").read_text())["images"] == 100
