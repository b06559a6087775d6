"""Training: a configuration in, a run folder out.

- :mod:`~cifarkit.training.config`: :class:`TrainConfig`, the defaults a model declares, the checks;
- :mod:`~cifarkit.training.plan`: :class:`TrainPlan`, a run as resolved (config.json's content);
- :mod:`~cifarkit.training.run_data`: the data of a run (``--holdout``, ``--limit-train``);
- :mod:`~cifarkit.training.compile`: models, optimizer, loss, precision, XLA;
- :mod:`~cifarkit.training.callbacks`: progress, history, schedule, checkpoints, backup, one class
  each; :mod:`~cifarkit.training.tensorboard_logs`: the TensorBoard logs;
- :mod:`~cifarkit.training.rundir`: the run folder's files and states;
- :mod:`~cifarkit.training.keras_compat`: where the trainer leans on private Keras APIs;
- :mod:`~cifarkit.training.loop`: :func:`train`, the fit loop, resume;
- :mod:`~cifarkit.training.report`: report.json.

The names below are loaded on first use (PEP 562), so importing one module of the package (for
example :mod:`~cifarkit.training.methods`, whose schedule a saved model holds) does not import
the whole trainer; ``from cifarkit.training import train`` works as usual.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Compiled": "compile",
    "compile_for_training": "compile",
    "OPTIMIZERS": "config",
    "PRECISIONS": "config",
    "SCHEDULES": "config",
    "TrainConfig": "config",
    "resolve": "config",
    "TrainPlan": "plan",
    "TrainResult": "loop",
    "train": "loop",
    "RunData": "run_data",
    "open_run_data": "run_data",
    "REPORT_FILE": "rundir",
    "read_history": "rundir",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
