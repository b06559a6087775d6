"""The ``cifarkit`` command line: thin commands over library calls, one error boundary.

``app`` (in :mod:`.app`) holds the error boundary; the commands register themselves on it from
:mod:`.data_commands` (reading and writing datasets) and :mod:`.model_commands` (models,
training, evaluation). Nothing here imports TensorFlow: commands import the library lazily.
"""

from __future__ import annotations

from . import data_commands, model_commands  # noqa: F401  (registers the commands)
from .app import app


def main() -> None:
    from ..runtime.tensorflow import prefer_onednn, quiet_tensorflow_startup

    prefer_onednn()  # before any command imports TensorFlow
    quiet_tensorflow_startup()
    app(prog_name="cifarkit")


__all__ = ["app", "main"]
