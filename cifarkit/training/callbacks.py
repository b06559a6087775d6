"""The Keras callbacks of a training run, one class each.

The stateful ones (:class:`History`, :class:`LearningRate`, :class:`Checkpoints`) hand their state
to :class:`RunBackup`, which writes it with the weights, and take it back on resume. The
TensorBoard logs are in :mod:`cifarkit.training.tensorboard_logs`.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras

from ..errors import OutputError
from ..runtime.progress import Pacer, duration, emit, record
from ..writers.atomic import write_text
from .keras_compat import backup_weights_bytes
from .methods import STEP_SCHEDULES
from .rundir import (
    BACKUP_STATE,
    BEST_MODEL,
    HISTORY_COLUMNS,
    LAST_MODEL,
    save_model_atomic,
    weights_name,
    write_durably,
    write_history,
)

# The paper's plateau rule, made concrete: divide by 10 after this many epochs without a better
# validation accuracy, at most three times (the paper reduced the rate three times in all).
PLATEAU_FACTOR = 0.1
PLATEAU_PATIENCE = 5
PLATEAU_MAX_CUTS = 3
STEP_MILESTONES = (0.5, 0.75)  # "step": divide by 10 at half and at three quarters of the epochs
STEP_FACTOR = 0.1
# A backup is written at every epoch end and, within an epoch, when this many seconds have passed
# since the last one, so a kill mid-epoch costs at most this much work (single-worker runs only).
BACKUP_SECONDS = 120.0


def current_lr(optimizer) -> float:
    """The learning rate as a number (under a strategy it is a mirrored variable)."""
    value = optimizer.learning_rate
    return float(value.numpy() if hasattr(value, "numpy") else value)


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class StatefulCallback(keras.callbacks.Callback):
    """A callback whose state is written into the run backup under ``key`` and read back on resume."""

    key = ""

    def state(self) -> dict:
        return {}

    def restore(self, state) -> None:
        """Take back what :meth:`state` gave, as the backup's reader checked it (this callback's
        model in :class:`cifarkit.metadata.run_files.CallbackStates`)."""


class Progress(keras.callbacks.Callback):
    """Training progress in a mode of :mod:`cifarkit.runtime.progress`: on a terminal one tqdm bar
    per epoch (loss, accuracy and images/s as it goes, validation at the end); elsewhere one
    line or JSON record per epoch, and one now and then within a long epoch."""

    def __init__(
        self, steps: int, batch_size: int, epochs: int, mode: str, clock=time.monotonic, val_name: str = "val"
    ):
        super().__init__()
        self.steps, self.batch_size, self.epochs, self.mode = steps, batch_size, epochs, mode
        self.val_name = val_name  # what validation ran on, in the lines: "test" or "holdout"
        self.clock, self.bar = clock, None
        self.pacer = Pacer(None, clock)  # within epochs, by time only; restarted when training starts
        self.epoch_seconds: list[float] = []  # this process's epochs, validation included
        self.finished: int | None = None  # the last epoch that ended (1-based)

    def on_train_begin(self, logs=None):
        self.pacer = Pacer(None, self.clock)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.start, self.train_end = epoch, self.clock(), None
        if self.mode != "bar":
            return
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step", leave=True, dynamic_ncols=True
        )

    def on_test_begin(self, logs=None):
        self.train_end = self.clock()  # validation is not training time

    def on_train_batch_end(self, batch, logs=None):
        done, logs = min(batch + 1, self.steps), logs or {}
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            rate = done * self.batch_size / max(self.clock() - self.start, 1e-9)
            self.bar.set_postfix_str(
                f"loss {float(logs.get('loss', math.nan)):.4f} "
                f"acc {float(logs.get('accuracy', math.nan)):.4f} {rate:,.0f} img/s"
            )
        elif self.mode in ("lines", "json") and self.pacer.due(done):
            self.write_step(done, logs)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.bar is not None:
            validated = (
                f" {self.val_name}_loss {logs['val_loss']:.4f} {self.val_name}_acc {logs['val_accuracy']:.4f}"
                if "val_loss" in logs and "val_accuracy" in logs
                else ""  # an epoch without validation (--validate-every)
            )
            self.bar.set_postfix_str(
                f"loss {logs.get('loss', math.nan):.4f} acc {logs.get('accuracy', math.nan):.4f}{validated}"
            )
            self.bar.close()
            self.bar = None
            return
        now = self.clock()
        self.epoch_seconds.append(now - self.start)
        if self.mode in ("lines", "json"):
            self.write_epoch(epoch, logs, now)

    def on_train_end(self, logs=None):
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "json":
            steps = 0 if self.finished is None else self.steps
            emit("json", self.entry("done", self.finished, steps, {}, 0.0), "")

    def entry(self, event: str, epoch: int, step: int, metrics: dict, eta: float | None) -> dict:
        return record(
            event,
            "train",
            epoch=epoch,
            epochs=self.epochs,
            step=step,
            total=self.steps,
            unit="step",
            metrics=metrics,
            elapsed_s=self.clock() - self.pacer.start,
            eta_s=eta,
        )

    def epochs_eta(self, epoch: int, step_seconds: float) -> float:
        """Seconds for the epochs after ``epoch`` (0-based): as long as this process's epochs took
        on average (its first, which compiles, left out once there are others), or the steps at
        this epoch's pace before one has ended."""
        took = self.epoch_seconds[1:] or self.epoch_seconds
        per_epoch = sum(took) / len(took) if took else self.steps * step_seconds
        return max(self.epochs - epoch - 1, 0) * per_epoch

    def write_step(self, done: int, logs: dict) -> None:
        seconds = max(self.clock() - self.start, 1e-9)
        rate = done * self.batch_size / seconds
        eta = (self.steps - done) * seconds / done + self.epochs_eta(self.epoch, seconds / done)
        metrics = {key: value for key, value in _scalars(logs).items() if key in ("loss", "accuracy")}
        metrics["images_per_s"] = rate
        text = (
            f"epoch {self.epoch + 1}/{self.epochs}: step {done:,}/{self.steps:,}, "
            + "".join(f"{key} {value:.4f}, " for key, value in metrics.items() if key != "images_per_s")
            + f"{rate:,.0f} images/s, ETA {duration(eta)}"
        )
        emit(self.mode, self.entry("progress", self.epoch + 1, done, metrics, eta), text)

    def write_epoch(self, epoch: int, logs: dict, now: float) -> None:
        seconds = (self.train_end or now) - self.start
        rate = self.steps * self.batch_size / max(seconds, 1e-9)
        eta = self.epochs_eta(epoch, 0.0)
        metrics = _scalars(logs) | {"seconds": now - self.start, "images_per_s": rate}
        shown = [key for key in ("loss", "accuracy", "val_loss", "val_accuracy") if key in metrics]
        text = (
            f"epoch {epoch + 1}/{self.epochs}: "
            + "".join(f"{key.replace('val_', self.val_name + '_')} {metrics[key]:.4f}, " for key in shown)
            + f"{duration(now - self.start)}, {rate:,.0f} images/s, ETA {duration(eta)}"
        )
        emit(self.mode, self.entry("epoch", epoch + 1, self.steps, metrics, eta), text)
        self.pacer.mark(now)
        self.finished = epoch + 1


def _scalars(logs: dict) -> dict[str, float]:
    """The metrics of Keras's logs as floats (they may be NumPy or tensor scalars)."""
    scalars = {}
    for key, value in logs.items():
        try:
            scalars[key] = float(value)
        except (TypeError, ValueError):
            continue
    return scalars


class History(StatefulCallback):
    """Rows of per-epoch metrics, timing and learning rate; history.csv and curves.png each epoch.

    The rows travel in the backup, so a resumed run rewrites history.csv from the rows that
    belong to the epochs it kept: never a duplicated or a missing epoch.
    """

    key = "history"

    def __init__(self, folder: Path | None, images_per_epoch: int, val_name: str = "val"):
        super().__init__()
        self.folder, self.images_per_epoch = folder, images_per_epoch
        self.val_name = val_name  # the curves' name for what validation ran on
        self.rows: list[dict] = []
        self.seconds_before = 0.0  # wall time of earlier processes of this run
        self.process_start = time.perf_counter()

    def state(self):
        return {"rows": self.rows, "wall_seconds": self.wall_seconds()}

    def restore(self, state):
        self.rows = [row.model_dump() for row in state.rows]
        self.seconds_before = state.wall_seconds

    def wall_seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.process_start

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = time.perf_counter()
        self.train_end = None

    def on_test_begin(self, logs=None):
        self.train_end = time.perf_counter()  # validation is not training time

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        seconds = (self.train_end or time.perf_counter()) - self.epoch_start
        row = {"epoch": epoch + 1}
        for key in HISTORY_COLUMNS[1:7]:
            row[key] = float(logs[key]) if key in logs else None
        row["lr"] = current_lr(self.model.optimizer)
        row["train_seconds"] = round(seconds, 3)
        row["images_per_second"] = round(self.images_per_epoch / max(seconds, 1e-9), 1)
        row["epoch_seconds"] = round(time.perf_counter() - self.epoch_start, 3)  # with validation
        row["wall_seconds"] = round(self.wall_seconds(), 3)  # since the trainer started, all processes
        self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
        self.write()

    def write(self):
        if self.folder is not None:
            write_history(self.folder, self.rows, self.val_name)


class LearningRate(StatefulCallback):
    """The schedule, decided per epoch: cosine and step from the epoch number alone; plateau
    from the best validation accuracy so far, kept in the backup."""

    key = "learning_rate"

    def __init__(self, schedule: str, lr: float, epochs: int):
        super().__init__()
        self.schedule, self.base_lr, self.epochs = schedule, lr, epochs
        self.best, self.wait, self.cuts = -math.inf, 0, 0

    def state(self):
        return {"best": _finite_or_none(self.best), "wait": self.wait, "cuts": self.cuts}

    def restore(self, state):
        self.best = state.best if state.best is not None else -math.inf
        self.wait, self.cuts = state.wait, state.cuts

    def rate(self, epoch: int) -> float:
        if self.schedule == "cosine":
            return self.base_lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
        if self.schedule == "step":
            passed = sum(epoch >= int(m * self.epochs) for m in STEP_MILESTONES)
            return self.base_lr * STEP_FACTOR**passed
        return self.base_lr * PLATEAU_FACTOR**self.cuts

    def on_epoch_begin(self, epoch, logs=None):
        if self.schedule in STEP_SCHEDULES:  # the optimizer's own schedule, evaluated at every step
            return
        self.model.optimizer.learning_rate = self.rate(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if self.schedule != "plateau" or logs is None or "val_accuracy" not in logs:
            return
        if logs["val_accuracy"] > self.best:
            self.best, self.wait = float(logs["val_accuracy"]), 0
            return
        self.wait += 1
        if self.wait >= PLATEAU_PATIENCE and self.cuts < PLATEAU_MAX_CUTS:
            self.cuts, self.wait = self.cuts + 1, 0


class Checkpoints(StatefulCallback):
    """``last.keras`` every epoch; where the run chooses its best epoch (``choose``), ``best.keras``
    when validation accuracy improves, among the epochs that validate (``validated``, 1-based; None:
    every epoch). A run that validates on the test split chooses nothing, unless asked by name:
    its final model is its model."""

    key = "checkpoints"

    def __init__(self, export_model, folder: Path, choose: bool = True, validated: list[int] | None = None):
        super().__init__()
        self.export_model, self.folder, self.choose = export_model, folder, choose
        self.validated = None if validated is None else set(validated)
        self.best, self.best_epoch = -math.inf, None

    def state(self):
        return {"best": _finite_or_none(self.best), "best_epoch": self.best_epoch}

    def restore(self, state):
        self.best = state.best if state.best is not None else -math.inf
        self.best_epoch = state.best_epoch

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        save_model_atomic(self.export_model, self.folder / LAST_MODEL)
        if not self.choose or (self.validated is not None and epoch + 1 not in self.validated):
            return  # an epoch without validation is not compared with those that had it
        accuracy = logs.get("val_accuracy", logs.get("accuracy"))
        if accuracy is not None and float(accuracy) > self.best:
            self.best, self.best_epoch = float(accuracy), epoch + 1
            save_model_atomic(self.export_model, self.folder / BEST_MODEL)


class RunBackup(keras.callbacks.Callback):
    """What :class:`keras.callbacks.BackupAndRestore` does, made safe against a kill at any moment.

    Keras' callback writes the weights and then the epoch number in place, one after the other,
    and knows nothing of the other callbacks. Here the weights (model, optimizer slots and
    step, the augmentation layer's seed) go to a new file first; ``state.json``, written
    atomically and naming that file together with the epoch and every stateful callback's
    state, is the commit point; older weight files are removed after it. A kill leaves
    either the previous backup or the new one, whole.

    Within an epoch it saves when ``every_seconds`` have passed since the last save (None: only
    at epoch ends), so a kill mid-epoch costs at most that much work.
    """

    def __init__(self, folder: Path, stateful: list[StatefulCallback], every_seconds: float | None, serial: int = 0):
        super().__init__()
        self.folder, self.stateful, self.every_seconds = folder, stateful, every_seconds
        self.epoch, self.last_save = 0, time.monotonic()
        self.serial = serial  # of the committed backup this process resumed from, or 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.every_seconds is not None and time.monotonic() - self.last_save >= self.every_seconds:
            self.save(self.epoch, batch + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)

    def save(self, epoch: int, step: int) -> None:
        """Commit a backup of ``step`` steps into ``epoch`` (step 0: the epoch is whole)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {self.folder}: {exc.strerror or exc}") from None
        serial = self.serial + 1
        weights = weights_name(serial)
        # A new file beside the committed one, which stays whole if this write fails.
        write_durably(self.folder / weights, backup_weights_bytes(self.model))
        state = {
            "serial": serial,
            "epoch": epoch,
            "step": step,
            "weights": weights,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "callbacks": {cb.key: cb.state() for cb in self.stateful},
        }
        try:
            write_text(self.folder / BACKUP_STATE, json.dumps(state, indent=1) + "\n")
        except OutputError:
            (self.folder / weights).unlink(missing_ok=True)  # never committed
            raise
        self.serial = serial
        for old in self.folder.glob("weights-*.weights.h5"):
            if old.name != weights:
                old.unlink(missing_ok=True)
        self.last_save = time.monotonic()
