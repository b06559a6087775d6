"""The run folder's files and states, without training."""

from __future__ import annotations

import json

import pytest

from cifarkit.errors import OutputError
from cifarkit.training.config import TrainConfig
from cifarkit.training.rundir import HISTORY_COLUMNS, RunState, check_workdir, history_csv, read_history


def test_history_csv_is_the_format_it_always_was_and_reads_back():
    rows = [
        {
            "epoch": 1,
            "loss": 2.302585093,
            "accuracy": 0.1,
            "top5": None,
            "val_loss": 1e-7,
            "val_accuracy": 0.25,
            "val_top5": 1.0,
            "lr": 0.05,
            "train_seconds": 12.345,
            "images_per_second": 4051.2,
        }
    ]
    text = history_csv(rows)
    assert text == ",".join(HISTORY_COLUMNS) + "\n1,2.30259,0.1,,1e-07,0.25,1,0.05,12.345,4051.2,,\n"
    timed = [{**rows[0], "epoch_seconds": 15.5, "wall_seconds": 20.25}]
    assert history_csv(timed).endswith("\n1,2.30259,0.1,,1e-07,0.25,1,0.05,12.345,4051.2,15.5,20.25\n")


def test_history_files_written_before_the_wall_time_columns_still_read(tmp_path):
    path = tmp_path / "history.csv"
    old_columns = HISTORY_COLUMNS[: HISTORY_COLUMNS.index("images_per_second") + 1]
    path.write_text(",".join(old_columns) + "\n1,2.30259,0.1,,1e-07,0.25,1,0.05,12.345,4051.2\n")
    (row,) = read_history(path)
    assert row["images_per_second"] == 4051.2 and row.get("wall_seconds") is None


def test_read_history_gives_numbers_and_none_for_empty_cells(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text(",".join(HISTORY_COLUMNS) + "\n1,2.30259,0.1,,1e-07,0.25,1,0.05,12.345,4051.2,15.5,20.25\n")
    (row,) = read_history(path)
    assert row["wall_seconds"] == 20.25
    assert row["epoch"] == 1 and type(row["epoch"]) is int
    assert row["top5"] is None and row["val_loss"] == 1e-7 and row["images_per_second"] == 4051.2


def test_the_states_of_a_run_folder(tmp_path):
    config = TrainConfig(model="lenet5", workdir=str(tmp_path), data="data", recipe="cifar", lr=0.05)
    assert check_workdir(tmp_path, config, overwrite=False) is RunState.FRESH
    (tmp_path / "config.json").write_text(json.dumps(config.to_json()))
    assert check_workdir(tmp_path, config, overwrite=False) is RunState.RESUME
    # Runtime settings may change on resume; what the run computes may not.
    faster = TrainConfig(**{**config.to_json(), "jit": True, "steps_per_execution": 1})
    assert check_workdir(tmp_path, faster, overwrite=False) is RunState.RESUME
    other = TrainConfig(**{**config.to_json(), "lr": 0.01})
    with pytest.raises(OutputError, match="lr: 0.05 -> 0.01"):
        check_workdir(tmp_path, other, overwrite=False)
    assert check_workdir(tmp_path, other, overwrite=True) is RunState.OVERWRITE
    (tmp_path / "report.json").write_text("{}")
    assert check_workdir(tmp_path, config, overwrite=False) is RunState.FINISHED
