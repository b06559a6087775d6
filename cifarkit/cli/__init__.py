"""The ``cifarkit`` command line: thin commands over library calls, one error boundary.

``app`` (in :mod:`.app`) holds the error boundary; the commands register themselves on it from
:mod:`.data_commands` (reading and writing datasets), :mod:`.model_commands` (models, summary,
train) and :mod:`.evaluate_commands` (evaluate, predict, export-model). Nothing here imports
TensorFlow: commands import the library lazily.
"""

from __future__ import annotations

# Registration order is the order --help lists the commands in.
# isort: off
from . import data_commands  # noqa: F401
from . import model_commands  # noqa: F401
from . import evaluate_commands  # noqa: F401

# isort: on
from .app import app


def main() -> None:
    from ..runtime.tensorflow import prefer_onednn, quiet_tensorflow_startup

    prefer_onednn()  # before any command imports TensorFlow
    quiet_tensorflow_startup()
    app(prog_name="cifarkit")


__all__ = ["app", "main"]
