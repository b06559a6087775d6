"""A run folder's own JSON files, read into checked types: ``config.json``, ``backup/state.json``
and ``report.json``.

Each is read by one function here under a size cap and a nesting cap
(:mod:`cifarkit.metadata.jsonfile`), with typed, range-checked fields; the trainer and the
model commands receive these objects, never the raw JSON. Fields that older run folders lack
are optional, so those folders read too; ``exclude_unset`` dumps tell a field
the file holds from one it lacks (a resume compares what the file says, nothing filled in).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated

import pydantic

from ..errors import OutputError, SourceError
from .jsonfile import Strict, parse_json, read_bytes_capped
from .names import unsafe_reason

MAX_RUN_FILE_BYTES = 8 * 1024 * 1024  # a report or backup state of thousands of epochs is under 1 MB
MAX_INT = 2**31 - 1  # epochs, batch sizes, crops: far above any run
MAX_IMAGES = 2**40  # images held out or trained on: as the dataset readers bound counts
WEIGHTS_NAME = re.compile(r"weights-\d{6,13}\.weights\.h5")  # cifarkit.training.rundir.weights_name

Name = Annotated[str, pydantic.Field(min_length=1, max_length=4096)]
Text = Annotated[str, pydantic.Field(max_length=4096)]
Positive = Annotated[int, pydantic.Field(ge=1, le=MAX_INT)]
Finite = Annotated[float, pydantic.Field(allow_inf_nan=False)]
Fraction = Annotated[float, pydantic.Field(ge=0, lt=1, allow_inf_nan=False)]


def _share(value: float) -> float:
    if not (0 <= value <= 1 or math.isnan(value)):  # NaN: the accuracy of a split of no images
        raise ValueError("is not a share between 0 and 1")
    return value


Share = Annotated[float, pydantic.AfterValidator(_share)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank")
    return value


SplitSpec = Annotated[str, pydantic.Field(max_length=4096), pydantic.AfterValidator(_not_blank)]


# --------------------------------------------------------------------------------------------
# config.json

# Where a run chooses its best epoch (best.keras): on the images --holdout held out of train, on
# the test split where asked by name (its test accuracy is then optimistic), or nowhere: the
# final model (last.keras) is the run's model.
SELECT_HOLDOUT, SELECT_TEST, SELECT_NONE = "holdout", "test", "none"
SELECTIONS = (SELECT_HOLDOUT, SELECT_TEST, SELECT_NONE)


def default_selection(holdout: int) -> str:
    """Where a run chooses its best epoch unless asked: on its held-out images, else nowhere.
    A config.json without the key (a run folder from before the choice was named) reads the same."""
    return SELECT_HOLDOUT if holdout else SELECT_NONE


class RunConfigFile(Strict):
    """A run's ``config.json``: :class:`cifarkit.training.TrainConfig` with its defaults resolved.

    ``model``, ``workdir``, ``data`` and ``recipe`` are named by every resolved run (its data is
    opened again from them); the rest may be missing in older run folders."""

    model: Name
    workdir: Name
    data: Name
    recipe: Name
    sample: bool = False
    verify: bool = True
    model_options: dict[Annotated[str, pydantic.Field(max_length=256)], pydantic.JsonValue] = {}
    epochs: Positive | None = None
    batch_size: Positive | None = None
    crop: Positive | None = None
    optimizer: Name | None = None
    lr: Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)] | None = None
    momentum: Fraction | None = None
    weight_decay: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)] | None = None
    schedule: Name | None = None
    label_smoothing: Fraction | None = None
    seed: Annotated[int, pydantic.Field(ge=0, lt=2**32)] = 0  # what numpy's and Keras's seeding accept
    precision: Name | None = "float32"  # absent: float32, the only precision before it was recorded
    jit: bool | None = None
    steps_per_execution: Positive = 8
    validate_every: Positive | None = None  # absent: every epoch, the only choice before it was recorded
    augment_on: Name | None = None
    strategy: Name = "auto"
    holdout: Annotated[int, pydantic.Field(ge=0, le=MAX_IMAGES)] = 0
    limit_train: Annotated[int, pydantic.Field(ge=1, le=MAX_IMAGES)] | None = None
    train_split: SplitSpec = "train"
    eval_split: SplitSpec = "test"
    nesterov: bool | None = None
    muon_scale: Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)] | None = None
    averaging: Name | None = None
    whiten: bool | None = None
    warmup: Fraction | None = None
    tta: Text | None = None
    select_on: Annotated[str, pydantic.Field(pattern="^(holdout|test|none)$")] | None = None

    def selection(self) -> str:
        """Where the run chose its best epoch (:data:`SELECTIONS`)."""
        return self.select_on or default_selection(self.holdout)

    def written(self) -> dict:
        """The settings the file holds, and only those (for comparing runs)."""
        return self.model_dump(exclude_unset=True)


def read_run_config(path: Path) -> RunConfigFile:
    """A run folder's ``config.json``; a damaged one is one line (:class:`SourceError`)."""
    return parse_json(read_bytes_capped(path, MAX_RUN_FILE_BYTES), RunConfigFile, path)


def parse_run_config(data: bytes, where: object) -> RunConfigFile:
    return parse_json(data, RunConfigFile, where)


# --------------------------------------------------------------------------------------------
# backup/state.json


class HistoryRow(Strict):
    """One epoch of ``history.csv`` (cifarkit.training.rundir.HISTORY_COLUMNS); rows of older
    run folders lack the two wall-time columns."""

    epoch: Positive
    loss: float | None = None
    accuracy: float | None = None
    top5: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_top5: float | None = None
    lr: float | None = None
    train_seconds: float | None = None
    images_per_second: float | None = None
    epoch_seconds: float | None = None
    wall_seconds: float | None = None


class HistoryState(Strict):
    rows: list[HistoryRow] = []
    wall_seconds: Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)] = 0.0


class LearningRateState(Strict):
    best: Finite | None = None  # the best validation accuracy so far (plateau)
    wait: Annotated[int, pydantic.Field(ge=0, le=MAX_INT)] = 0
    cuts: Annotated[int, pydantic.Field(ge=0, le=MAX_INT)] = 0


class CheckpointsState(Strict):
    best: Finite | None = None
    best_epoch: Positive | None = None


class CallbackStates(Strict):
    """What each stateful callback (its ``key``) handed to the backup."""

    history: HistoryState = HistoryState()
    learning_rate: LearningRateState = LearningRateState()
    checkpoints: CheckpointsState = CheckpointsState()


class BackupState(Strict):
    """The committed backup: its serial, where in training it was taken, its weights file."""

    serial: Annotated[int, pydantic.Field(ge=0, le=2**40)]
    epoch: Annotated[int, pydantic.Field(ge=0, le=MAX_INT)]
    step: Annotated[int, pydantic.Field(ge=0, le=2**40)]  # steps into ``epoch``; 0: the epoch is whole
    weights: Text  # a file name beside state.json
    saved_at: Text = ""
    callbacks: CallbackStates

    @pydantic.field_validator("weights")
    @classmethod
    def _weights_file(cls, name: str) -> str:
        # pydantic's pattern is searched, not matched whole: a longer name would pass it
        why = unsafe_reason(name)  # what path_component refuses, in this parser's words
        if why is not None:
            raise ValueError(f"the weights file name {name[:40]!r}... {why}; it cannot be a file name")
        if not WEIGHTS_NAME.fullmatch(name):
            raise ValueError(f"{name[:80]!r} is not a weights file name the trainer writes")
        return name


def read_backup_state(path: Path) -> BackupState:
    """``backup/state.json``; a damaged one is one line (:class:`OutputError`: the trainer
    refuses to resume from it and names ``--overwrite``)."""
    return parse_json(read_bytes_capped(path, MAX_RUN_FILE_BYTES, OutputError), BackupState, path, OutputError)


# --------------------------------------------------------------------------------------------
# report.json


class TtaNumbers(Strict):
    model: Name
    views: Text
    accuracy: Share
    tta_accuracy: Share


class TestNumbers(Strict):
    """The saved model's test accuracy, as the summary line of ``cifarkit train`` reads it."""

    split: Text = "test"
    images: Annotated[int, pydantic.Field(ge=0, le=MAX_IMAGES)] = 0
    model: Name
    accuracy: Share
    top5: Share
    top_k: Annotated[int, pydantic.Field(ge=1, le=MAX_INT)]
    ten_crop_accuracy: Share | None = None
    tta: TtaNumbers | None = None


class RunReport(Strict):
    """A finished run's ``report.json``: what a summary reads; the rest stays in the file."""

    model: Name
    test: TestNumbers
    epochs_run: Annotated[int, pydantic.Field(ge=0, le=MAX_INT)] = 0
    wall_seconds: Annotated[float, pydantic.Field(ge=0)] | None = None
    images_per_second: Annotated[float, pydantic.Field(ge=0)] | None = None
    resumed_from_epoch: Annotated[int, pydantic.Field(ge=0, le=MAX_INT)] | None = None
    precision: Name | None = None
    config: RunConfigFile | None = None
    selected_on: Annotated[str, pydantic.Field(pattern="^(holdout|test|none)$")] | None = None  # older: absent
    best_epoch: Positive | None = None


def read_run_report(path: Path) -> RunReport:
    """A finished run's ``report.json``; a damaged one is one line (:class:`OutputError`)."""
    return parse_run_report(read_bytes_capped(path, MAX_RUN_FILE_BYTES, OutputError), path)


def parse_run_report(data: bytes, where: object) -> RunReport:
    return parse_json(data, RunReport, where, OutputError)


def reason(error: SourceError | OutputError, path: Path) -> str:
    """What a reader here found wrong with ``path``, without the path it starts with and without
    "malformed (...)" around it, for a message that says what the file is not."""
    text, prefix = str(error), f"{path}: "
    text = text[len(prefix) :] if text.startswith(prefix) else text
    if text.startswith("malformed (") and text.endswith(")"):
        text = text[len("malformed (") : -1]
    return text
