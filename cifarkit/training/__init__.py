"""Training: a configuration in, a run folder out.

- :mod:`~cifarkit.training.config`: :class:`TrainConfig`, the defaults a model declares, the checks;
- :mod:`~cifarkit.training.run_data`: the data of a run (``--holdout``, ``--limit-train``);
- :mod:`~cifarkit.training.compile`: models, optimizer, loss, precision, XLA;
- :mod:`~cifarkit.training.callbacks`: progress, history, schedule, checkpoints, backup, one class
  each; :mod:`~cifarkit.training.tensorboard_logs`: the TensorBoard logs;
- :mod:`~cifarkit.training.rundir`: the run folder's files and states;
- :mod:`~cifarkit.training.keras_compat`: where the trainer leans on private Keras APIs;
- :mod:`~cifarkit.training.loop`: :func:`train`, the fit loop, resume;
- :mod:`~cifarkit.training.report`: report.json.

Importing this package imports Keras (the callbacks are Keras classes): the CLI imports it inside
the ``train`` and ``evaluate`` commands only.
"""

from .compile import Compiled, compile_for_training
from .config import OPTIMIZERS, PRECISIONS, SCHEDULES, TrainConfig, resolve, run_config
from .loop import TrainResult, train
from .run_data import RunData, open_run_data
from .rundir import REPORT_FILE, read_history

__all__ = ["OPTIMIZERS", "PRECISIONS", "REPORT_FILE", "SCHEDULES", "Compiled", "RunData", "TrainConfig",
           "TrainResult", "compile_for_training", "open_run_data", "read_history", "resolve", "run_config", "train"]  # fmt: skip
