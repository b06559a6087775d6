"""The run folder (``--workdir``): its file names, its states, and the files written into it.

The folder holds:

- ``config.json``: every setting, defaults resolved (the run's identity: re-running the same
  command resumes or reports the run finished; a different one is refused unless ``--overwrite``);
- ``last.keras`` (the final model) and, where the run chooses its best epoch (on ``--holdout``
  images, or ``--select-on test``), ``best.keras``: the network *with its preprocessing* (see
  :mod:`cifarkit.modelio.keras_file`);
- ``history.csv`` and ``curves.png`` (rewritten every epoch), TensorBoard logs in ``logs/``;
- ``stats.json``: the dataset statistics the preprocessing uses;
- ``report.json`` once training has finished (its presence marks the run finished);
- ``backup/`` while training runs: weights, optimizer and callback state (see
  :class:`cifarkit.training.callbacks.RunBackup`);
- ``.cifarkit.lock``: held while a command trains in the folder, so a second one is refused.

Every file is written under the temporary name of :mod:`cifarkit.writers.atomic` and renamed, so
one sweep (:func:`~cifarkit.writers.atomic.remove_partials`) finds what a kill left, models too.
"""

from __future__ import annotations

import csv
import enum
import io
import json
import os
import shutil
from pathlib import Path

from ..errors import OutputError, SourceError
from ..metadata.run_files import BackupState, RunReport, read_backup_state, read_run_config, read_run_report, reason
from ..modelio.model_path import BEST_MODEL, CONFIG_FILE, LAST_MODEL
from ..readers.stats import STATS_FILE
from ..writers.atomic import partial_path, remove_partials, write_bytes, write_text
from .config import identity
from .plan import TrainPlan

REPORT_FILE, HISTORY_FILE, CURVES_FILE = "report.json", "history.csv", "curves.png"
LOG_DIR, BACKUP_DIR, BACKUP_STATE = "logs", "backup", "state.json"
# epoch_seconds: the epoch with its validation pass; wall_seconds: cumulative at the epoch's end.
# History files without these two columns (older run folders) read back without them.
HISTORY_COLUMNS = (
    "epoch",
    "loss",
    "accuracy",
    "top5",
    "val_loss",
    "val_accuracy",
    "val_top5",
    "lr",
    "train_seconds",
    "images_per_second",
    "epoch_seconds",
    "wall_seconds",
)
RUN_FILES = (CONFIG_FILE, REPORT_FILE, HISTORY_FILE, CURVES_FILE, BEST_MODEL, LAST_MODEL, STATS_FILE)
RUN_FOLDERS = (LOG_DIR, BACKUP_DIR)


class RunState(enum.Enum):
    """What a run folder holds, as :func:`check_workdir` finds it for a configuration."""

    FRESH = "fresh"  # no run yet
    RESUME = "resume"  # this run, cut off: go on from its backup
    FINISHED = "finished"  # this run, with its report
    OVERWRITE = "overwrite"  # a run that --overwrite replaces


def check_workdir(workdir: Path, config: TrainPlan, overwrite: bool) -> RunState:
    """The folder's state for ``config``; a different earlier run is refused unless ``overwrite``."""
    config_path = workdir / CONFIG_FILE
    if not config_path.is_file():
        return RunState.FRESH
    try:
        old = read_run_config(config_path).written()
    except SourceError:
        old = None  # damaged: no run's configuration, so no run this one could resume
    if overwrite:
        return RunState.OVERWRITE
    asked = identity(config.to_json())
    was = identity(_options_completed(old, config.model_options)) if old is not None else None
    if was != asked:
        change, resume = "unreadable config.json", ""
        if was is not None:
            keys = _differences(was, asked)
            change = f"{keys[0]}: {was.get(keys[0])!r} -> {asked.get(keys[0])!r}"
            resume = _resume_option(was, keys)
        raise OutputError(
            f"{workdir} holds a run with other settings ({change}); "
            f"{resume}pass --overwrite to replace it, or choose another --workdir"
        )
    if (workdir / REPORT_FILE).is_file():
        return RunState.FINISHED
    return RunState.RESUME


def _options_completed(old: dict, asked: dict) -> dict:
    """``old`` with the model options it did not record taken as ``asked`` now: folders written
    before runs recorded every option, defaults included, hold only those they were given, so the
    others cannot be compared (a default changed since then shows when the backup does not fit)."""
    return {**old, "model_options": {**asked, **(old.get("model_options") or {})}}


# Settings whose default a run folder may have resolved otherwise: by the machine (mixed precision
# where the CPU computes bfloat16), or before the default changed (Muon's scale was 0.04 for every
# model until each training family declared its own, and whitenet's is 0.08 now).
RESOLVED_DEFAULTS = ("precision", "muon_scale")


def _resume_option(old: dict, differ: list[str]) -> str:
    """ "--precision float32 resumes it; " where the one key in ``differ`` is such a default."""
    if len(differ) != 1 or differ[0] not in RESOLVED_DEFAULTS or old.get(differ[0]) is None:
        return ""
    return f"--{differ[0].replace('_', '-')} {old[differ[0]]} resumes it; "


def _differences(old: dict, new: dict) -> list[str]:
    """The keys whose values differ between two configurations, in name order."""
    return [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def clear_run(workdir: Path) -> None:
    """Remove what a run writes (and nothing else: the folder may hold other files)."""
    for name in RUN_FILES:
        (workdir / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(workdir / name, ignore_errors=True)
    for extra in list(workdir.glob("backup-*")) + list(workdir.glob("eval-*")):
        shutil.rmtree(extra, ignore_errors=True)
    remove_partials(workdir)  # the lock file (.cifarkit.lock) stays: its holder is this process


def read_report(workdir: Path) -> RunReport:
    """A finished run's report.json, checked for what the summary line reads from it."""
    path = workdir / REPORT_FILE
    try:
        return read_run_report(path)
    except OutputError as exc:
        raise OutputError(
            f"{path}: damaged run report ({reason(exc, path)}); pass --overwrite to train again"
        ) from None


def write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------------------------
# Models and durable files


def save_model_atomic(model, path: Path) -> None:
    """Keras writes ``.keras`` files in place; save under a temporary ``.keras`` name and rename.

    The temporary name is the one every atomic write uses (plus the ``.keras`` Keras insists
    on), so the clean-up at the next start finds it after a kill."""
    path = Path(path)
    tmp = partial_path(path, ".keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)  # after a failure; after the rename it is already gone


def write_durably(path: Path, data) -> None:
    """Write ``path`` atomically and flush it to the disk before returning: the backup state
    that names it is committed afterwards, and must never name a file a power cut could empty."""
    write_bytes(path, data)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


# --------------------------------------------------------------------------------------------
# History


def history_csv(rows: list[dict]) -> str:
    """history.csv's text: one row per epoch, empty cells for metrics an epoch did not log."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HISTORY_COLUMNS)
    for row in rows:
        writer.writerow("" if row.get(k) is None else _csv_number(row[k]) for k in HISTORY_COLUMNS)
    return out.getvalue()


def _csv_number(value) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def write_history(folder: Path, rows: list[dict], val_name: str = "val") -> None:
    """history.csv and curves.png of ``rows``; ``val_name`` names the validation curves (the
    split validation ran on: "test" or "holdout")."""
    from ..evaluation.plots import curves_image, save_png

    write_text(folder / HISTORY_FILE, history_csv(rows))
    save_png(curves_image(rows, val_name), folder / CURVES_FILE)


def read_history(path: Path) -> list[dict]:
    """history.csv back as rows of numbers (empty cells: None)."""
    with open(path, newline="") as file:
        return [
            {key: None if cell == "" else (int(cell) if key == "epoch" else float(cell)) for key, cell in row.items()}
            for row in csv.DictReader(file)
        ]


# --------------------------------------------------------------------------------------------
# Backup


def damaged_backup(path: Path, why: str) -> OutputError:
    # Refused rather than discarded: the backup is written so that a kill, a crash or a full disk
    # never damages it, so damage came from outside, and starting again would replace best.keras
    # and the history of the epochs done; --overwrite makes that the user's choice.
    return OutputError(f"{path}: damaged run backup ({why}); pass --overwrite to start the run again")


def read_backup(folder: Path, epochs: int | None = None) -> BackupState | None:
    """The committed backup state in ``folder``, checked, or None when there is none.

    A state that does not hold what a resume needs (or more epochs than the run has), or names
    a weights file that is not there, is refused in one line (see :func:`damaged_backup`)."""
    path = Path(folder) / BACKUP_STATE
    if not path.exists() and not path.is_symlink():
        return None
    try:
        state = read_backup_state(path)
    except OutputError as exc:
        raise damaged_backup(path, reason(exc, path)) from None
    if epochs is not None and state.epoch > epochs:
        raise damaged_backup(path, f"epoch: {state.epoch!r}, but the run has {epochs} epochs")
    if not (Path(folder) / state.weights).is_file():
        raise damaged_backup(path, f"its weights file {state.weights} is missing")
    return state


def weights_name(serial: int) -> str:
    """The backup weights file of the ``serial``-th committed backup."""
    return f"weights-{serial:06d}.weights.h5"
