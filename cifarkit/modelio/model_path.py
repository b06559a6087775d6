"""Which model a command means: a run folder's own ``.keras`` file, a ``.keras`` file, or a model
``cifarkit export-model`` wrote; and the names of the files a run folder exposes its model under.

Nothing here imports Keras or TensorFlow, so a command can find its model, and start what an
exported model needs (a ``.tflite`` file's child process), while they are imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import SourceError, UsageError

if TYPE_CHECKING:
    from ..metadata.run_files import RunConfigFile

BEST_MODEL = "best.keras"  # highest accuracy on the split the run chose on (--holdout, or --select-on)
LAST_MODEL = "last.keras"  # the end of the latest epoch: the final model
CONFIG_FILE = "config.json"  # the run's settings, defaults resolved


def resolve_model_path(path: Path) -> tuple[Path, RunConfigFile | None]:
    """A run folder (its model, :func:`run_models`, and its config), a ``.keras`` file,
    or what ``cifarkit export-model`` wrote: a SavedModel folder (or its TensorFlow Serving model
    folder: the highest version) or a ``.tflite`` file; only a run folder has a config.

    A folder holding a config.json or a best/last.keras is a run folder, and only ever evaluated
    through its own ``.keras`` file: a SavedModel that happens to lie in it (``1/saved_model.pb``)
    is not picked instead. The config is read and checked
    (:func:`cifarkit.metadata.run_files.read_run_config`)."""
    from .exported import is_savedmodel, latest_version

    path = Path(path).expanduser()
    if path.is_dir() and any((path / name).exists() for name in (CONFIG_FILE, BEST_MODEL, LAST_MODEL)):
        return _run_folder_model(path)
    if path.is_dir() and (is_savedmodel(path) or latest_version(path) is not None):
        return (path if is_savedmodel(path) else latest_version(path)), None
    if path.is_dir():
        raise SourceError(
            f"{path}: no {BEST_MODEL} or {LAST_MODEL} in this folder (not a training run, or one "
            "that has not finished an epoch)"
        )
    if not path.exists():
        raise SourceError(f"{path}: no such run folder or model file")
    if path.suffix == ".onnx":  # export-model writes it for ONNX Runtime; cifarkit itself does not run one
        raise UsageError(
            f"{path}: cifarkit does not run ONNX files; run it with onnxruntime (README: Export a model), "
            "or the .keras model it was exported from"
        )
    if path.suffix not in (".keras", ".tflite"):
        raise UsageError(f"expected a run folder, a .keras or .tflite file or a SavedModel folder. Received: {path}")
    return path, None


def run_models(config: RunConfigFile | None) -> tuple[str, str]:
    """A run folder's model files, the one it stands for first: best.keras where the run chose
    its best epoch (on held-out images, or on the test split where asked by name), else the
    final model, last.keras; the other where that one is missing (a folder of an earlier version
    with best.keras alone, a run cut off before it wrote one)."""
    from ..metadata.run_files import SELECT_NONE

    if config is None or config.selection() == SELECT_NONE:
        return LAST_MODEL, BEST_MODEL
    return BEST_MODEL, LAST_MODEL


def _run_folder_model(path: Path):
    """(the run's model file, the checked config.json or None) of a run folder."""
    from ..metadata.run_files import read_run_config, reason

    config_file, config = path / CONFIG_FILE, None
    if config_file.exists() or config_file.is_symlink():
        try:
            config = read_run_config(config_file)  # a list, {} or "data": null: one line here, not a crash later
        except SourceError as exc:
            raise SourceError(
                f"{config_file}: not a training run's configuration ({reason(exc, config_file)}); "
                f"evaluate its {LAST_MODEL} with --data instead"
            ) from None
    for name in run_models(config):
        if (path / name).is_file():
            return path / name, config
    raise SourceError(
        f"{path}: no {BEST_MODEL} or {LAST_MODEL} in this folder (not a training run, or one "
        "that has not finished an epoch)"
    )
