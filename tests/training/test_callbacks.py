"""Each training callback on its own, driven by hand on a tiny model: no dataset, no fit."""

from __future__ import annotations

import json
import math

import numpy as np
import pydantic
import pytest

from cifarkit.errors import OutputError
from cifarkit.metadata.run_files import CheckpointsState, HistoryState, LearningRateState
from cifarkit.training import callbacks
from cifarkit.training.callbacks import (
    PLATEAU_MAX_CUTS,
    PLATEAU_PATIENCE,
    Checkpoints,
    History,
    LearningRate,
    Progress,
    RunBackup,
)
from cifarkit.training.rundir import read_backup, read_history


def tiny_model(lr: float = 0.1):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=0.9), loss="mse")
    return model


def as_read(model, state: dict):
    """``state`` as the backup's reader hands it to a callback: through JSON, checked."""
    return model.model_validate_json(json.dumps(state))


def attached(callback, model=None):
    callback.set_model(model if model is not None else tiny_model())
    return callback


def epoch(callback, index: int, logs: dict) -> None:
    callback.on_epoch_begin(index)
    callback.on_test_begin()
    callback.on_epoch_end(index, logs)


def test_history_appends_a_row_per_epoch_and_writes_the_csv(tmp_path):
    history = attached(History(tmp_path, images_per_epoch=640))
    epoch(history, 0, {"loss": 2.0, "accuracy": 0.25, "val_loss": 2.5, "val_accuracy": 0.2})
    epoch(history, 1, {"loss": 1.5, "accuracy": 0.5, "val_loss": 2.0, "val_accuracy": 0.4})

    rows = read_history(tmp_path / "history.csv")
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in history.rows] == [1, 2]
    assert rows[1]["loss"] == 1.5 and rows[1]["val_accuracy"] == 0.4
    assert rows[0]["top5"] is None and rows[0]["val_top5"] is None  # not logged: empty cells
    assert rows[0]["lr"] == pytest.approx(0.1) and rows[0]["images_per_second"] > 0
    assert (tmp_path / "curves.png").is_file()


def test_history_restored_from_a_backup_replaces_the_epochs_run_again(tmp_path):
    first = attached(History(tmp_path, 64))
    for i in range(3):
        epoch(first, i, {"loss": 3.0 - i})
    state = json.loads(json.dumps(first.state()))  # as the backup stores it
    state["rows"] = state["rows"][:2]  # the backup was taken after epoch 2

    resumed = attached(History(tmp_path, 64))
    resumed.restore(as_read(HistoryState, state))
    epoch(resumed, 2, {"loss": 0.5})
    assert [(r["epoch"], r["loss"]) for r in read_history(tmp_path / "history.csv")] == [(1, 3.0), (2, 2.0), (3, 0.5)]
    assert resumed.wall_seconds() >= state["wall_seconds"]


@pytest.mark.parametrize("rows", [[{"epoch": "one"}], "rows", [{"epoch": 1, "loss": "low"}], [{"epoch": 0}]])
def test_a_backup_whose_history_is_not_rows_of_numbers_is_refused(tmp_path, rows):
    (tmp_path / "weights-000001.weights.h5").write_bytes(b"")
    state = {
        "serial": 1,
        "epoch": 1,
        "step": 0,
        "weights": "weights-000001.weights.h5",
        "callbacks": {"history": {"rows": rows}},
    }
    (tmp_path / "state.json").write_text(json.dumps(state))
    with pytest.raises(OutputError, match="damaged run backup .*callbacks.history.rows"):
        read_backup(tmp_path)


def test_learning_rate_cosine_and_step_follow_the_epoch():
    cosine = LearningRate("cosine", 0.05, 4)
    assert [round(cosine.rate(e), 6) for e in range(4)] == [
        0.05,
        round(0.025 * (1 + math.cos(math.pi / 4)), 6),
        0.025,
        round(0.025 * (1 + math.cos(3 * math.pi / 4)), 6),
    ]
    step = LearningRate("step", 1.0, 8)
    assert [step.rate(e) for e in (0, 3, 4, 5, 6, 7)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])

    model = tiny_model()
    attached(cosine, model).on_epoch_begin(2)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(0.025)


def test_plateau_divides_by_ten_after_patience_epochs_without_progress_at_most_three_times():
    plateau = attached(LearningRate("plateau", 0.01, 90))
    epoch(plateau, 0, {"val_accuracy": 0.5})
    for e in range(1, PLATEAU_PATIENCE):
        epoch(plateau, e, {"val_accuracy": 0.4})
    assert plateau.cuts == 0 and plateau.wait == PLATEAU_PATIENCE - 1
    epoch(plateau, PLATEAU_PATIENCE, {"val_accuracy": 0.5})  # not better than the best: still waiting
    assert plateau.cuts == 1 and plateau.rate(PLATEAU_PATIENCE + 1) == pytest.approx(0.001)
    epoch(plateau, 99, {"val_accuracy": 0.6})  # progress resets the wait
    assert (plateau.best, plateau.wait) == (0.6, 0)

    for e in range(PLATEAU_PATIENCE * (PLATEAU_MAX_CUTS + 2)):
        epoch(plateau, e, {"val_accuracy": 0.1})
    assert plateau.cuts == PLATEAU_MAX_CUTS

    resumed = LearningRate("plateau", 0.01, 90)
    resumed.restore(as_read(LearningRateState, plateau.state()))
    assert (resumed.best, resumed.wait, resumed.cuts) == (plateau.best, plateau.wait, plateau.cuts)


def test_checkpoints_save_last_every_epoch_and_best_on_improvement(tmp_path):
    model = tiny_model()
    checkpoints = attached(Checkpoints(model, tmp_path), model)
    checkpoints.on_epoch_end(0, {"val_accuracy": 0.5})
    best_first = (tmp_path / "best.keras").stat().st_mtime_ns
    checkpoints.on_epoch_end(1, {"val_accuracy": 0.4})
    assert (checkpoints.best, checkpoints.best_epoch) == (0.5, 1)
    assert (tmp_path / "best.keras").stat().st_mtime_ns == best_first  # not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.keras", "last.keras"]
    checkpoints.on_epoch_end(2, {"val_accuracy": 0.7})
    assert checkpoints.state() == {"best": 0.7, "best_epoch": 3}
    resumed = Checkpoints(model, tmp_path)
    resumed.restore(as_read(CheckpointsState, checkpoints.state()))
    assert (resumed.best, resumed.best_epoch) == (0.7, 3)
    with pytest.raises(pydantic.ValidationError, match="best_epoch"):
        as_read(CheckpointsState, {"best": 0.7, "best_epoch": "3"})


def test_a_backup_holds_weights_optimizer_and_callback_state_that_resume(tmp_path):
    model = tiny_model()
    model.fit(np.ones((8, 4)), np.zeros((8, 3)), epochs=1, verbose=0)  # optimizer slots and a step count
    schedule = LearningRate("plateau", 0.01, 90)
    schedule.best, schedule.wait, schedule.cuts = 0.5, 3, 1
    backup = attached(RunBackup(tmp_path, [schedule], every_seconds=None), model)
    backup.on_epoch_end(2)
    backup.on_epoch_end(3)

    state = read_backup(tmp_path, epochs=10)
    assert (state.serial, state.epoch, state.step) == (2, 4, 0)
    assert json.loads((tmp_path / "state.json").read_text())["callbacks"] == {"learning_rate": schedule.state()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", state.weights]  # the older weights went

    again = tiny_model(lr=0.5)
    again.optimizer.build(again.trainable_variables)
    again.load_weights(tmp_path / state.weights)
    for saved, loaded in zip(model.weights, again.weights):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
    assert int(again.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 1
    resumed = LearningRate("plateau", 0.01, 90)
    resumed.restore(state.callbacks.learning_rate)
    assert (resumed.best, resumed.wait, resumed.cuts) == (0.5, 3, 1)


def test_a_backup_within_an_epoch_waits_for_its_time_limit(tmp_path, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(callbacks.time, "monotonic", lambda: clock[0])
    backup = attached(RunBackup(tmp_path, [], every_seconds=120.0))
    backup.on_epoch_begin(1)
    clock[0] += 119
    backup.on_train_batch_end(4)
    assert read_backup(tmp_path) is None  # not yet two minutes
    clock[0] += 1
    backup.on_train_batch_end(5)
    assert (read_backup(tmp_path).epoch, read_backup(tmp_path).step) == (1, 6)  # six steps into epoch 2
    backup.on_train_batch_end(6)
    assert read_backup(tmp_path).serial == 1  # the clock restarted at the save

    never = attached(RunBackup(tmp_path / "epochs-only", [], every_seconds=None))
    clock[0] += 10_000
    never.on_train_batch_end(0)
    assert read_backup(tmp_path / "epochs-only") is None


def test_progress_off_prints_nothing(capsys):
    progress = Progress(steps=3, batch_size=16, epochs=1, mode="off")
    progress.on_train_begin()
    progress.on_epoch_begin(0)
    progress.on_train_batch_end(0, {"loss": 1.0})
    progress.on_epoch_end(0, {"loss": 1.0})
    progress.on_train_end()
    assert capsys.readouterr().err == ""


def run_epochs(progress, clock, epochs: int, steps: int, step_seconds: float, *, validate: bool = True) -> None:
    """``progress`` driven as fit drives it, ``clock`` moving ``step_seconds`` a step (and 1 s of validation)."""
    progress.on_train_begin()
    for index in range(epochs):
        progress.on_epoch_begin(index)
        for step in range(steps):
            clock[0] += step_seconds
            progress.on_train_batch_end(step, {"loss": np.float32(2.0 - index), "accuracy": np.float32(0.5)})
        logs = {"loss": 2.0 - index, "accuracy": 0.5, "top5": 0.9}
        if validate:
            progress.on_test_begin()
            clock[0] += 1.0
            logs |= {"val_loss": 2.5, "val_accuracy": 0.25}
        progress.on_epoch_end(index, logs)
    progress.on_train_end()


def test_progress_without_a_terminal_writes_one_line_an_epoch(capsys):
    clock = [0.0]
    progress = Progress(steps=10, batch_size=32, epochs=2, mode="lines", clock=lambda: clock[0])
    run_epochs(progress, clock, epochs=2, steps=10, step_seconds=0.4)  # 5 s an epoch: no line within one
    assert capsys.readouterr().err.splitlines() == [
        "epoch 1/2: loss 2.0000, accuracy 0.5000, val_loss 2.5000, val_accuracy 0.2500, 5.0 s, 80 images/s, ETA 5.0 s",
        "epoch 2/2: loss 1.0000, accuracy 0.5000, val_loss 2.5000, val_accuracy 0.2500, 5.0 s, 80 images/s, ETA 0.0 s",
    ]


def test_progress_in_a_long_epoch_writes_a_line_now_and_then(capsys):
    clock = [0.0]
    progress = Progress(steps=100, batch_size=10, epochs=3, mode="lines", clock=lambda: clock[0])
    run_epochs(progress, clock, epochs=1, steps=100, step_seconds=1.0, validate=False)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == [
        "epoch 1/3: step 30/100, loss 2.0000, accuracy 0.5000, 10 images/s, ETA 4 min 30 s",
        "epoch 1/3: step 60/100, loss 2.0000, accuracy 0.5000, 10 images/s, ETA 4 min 00 s",
        "epoch 1/3: step 90/100, loss 2.0000, accuracy 0.5000, 10 images/s, ETA 3 min 30 s",
    ]
    assert lines[3].startswith("epoch 1/3: loss 2.0000, accuracy 0.5000, 1 min 40 s, 10 images/s, ETA 3 min 20 s")
    assert len(lines) == 4


def test_progress_json_records_an_epoch_with_its_metrics_and_the_end(capsys):
    from cifarkit.runtime.progress import RECORD_KEYS

    clock = [0.0]
    progress = Progress(steps=10, batch_size=32, epochs=2, mode="json", clock=lambda: clock[0])
    run_epochs(progress, clock, epochs=2, steps=10, step_seconds=0.4)
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["event"], r["epoch"]) for r in records] == [("epoch", 1), ("epoch", 2), ("done", 2)]
    assert all(tuple(r) == RECORD_KEYS and r["task"] == "train" and r["epochs"] == 2 for r in records)
    first = records[0]
    assert first["metrics"] == {
        "loss": 2.0,
        "accuracy": 0.5,
        "top5": 0.9,
        "val_loss": 2.5,
        "val_accuracy": 0.25,
        "seconds": 5.0,
        "images_per_s": 80.0,  # 320 images in the 4 s of training; validation is not training time
    }
    assert (first["step"], first["total"], first["unit"], first["elapsed_s"], first["eta_s"]) == (
        10,
        10,
        "step",
        5.0,
        5.0,
    )


def test_epoch_scalars_write_train_and_validation_events(tmp_path):
    import tensorflow as tf

    from cifarkit.training.tensorboard_logs import EpochScalars

    scalars = attached(EpochScalars(tmp_path))
    scalars.on_epoch_end(0, {"loss": 2.0, "val_loss": 2.5})
    scalars.on_epoch_end(1, {"loss": 1.0, "val_loss": 1.5})
    scalars.on_train_end()

    def read(part):
        values = {}
        for path in (tmp_path / part).glob("events.out.tfevents.*"):
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                for value in event.summary.value:
                    values[(value.tag, event.step)] = float(tf.make_ndarray(value.tensor))
        return values

    assert read("train") == {
        ("epoch_loss", 0): 2.0,
        ("epoch_loss", 1): 1.0,
        ("epoch_learning_rate", 0): pytest.approx(0.1),
        ("epoch_learning_rate", 1): pytest.approx(0.1),
    }
    assert read("validation") == {("epoch_loss", 0): 2.5, ("epoch_loss", 1): 1.5}


def test_a_tensorboard_write_error_names_the_folder_and_the_reason(tmp_path):
    import tensorflow as tf

    from cifarkit.training.tensorboard_logs import log_write_error

    error = log_write_error(tmp_path, tf.errors.ResourceExhaustedError(None, None, "x/events; No space left on device"))
    assert str(error) == f"cannot write the TensorBoard logs in {tmp_path}: No space left on device"
