"""TensorBoard logs in the run folder's ``logs/``.

- TensorFlow backend: Keras' callback when the ``tensorboard`` package is installed, else
  :class:`EpochScalars` writing the same epoch scalars through ``tf.summary``;
- JAX and PyTorch backends: :class:`EpochScalars` through the ``tensorboard`` package's own event
  file writer, which needs no TensorFlow; without that package the logs are skipped, and the
  run says so once.

Either way a failed write (a full disk) ends the run as an :class:`OutputError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import keras

from ..errors import OutputError
from ..runtime.lazy import tf
from .callbacks import current_lr

# The hooks in which Keras' TensorBoard callback writes.
_WRITING_HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end", "on_test_end", "on_train_batch_end")


def tensorboard_callback(log_dir: Path, say: Callable[[str], None] = lambda message: None):
    """The callback that writes the run's TensorBoard logs into ``log_dir`` (a no-op callback
    when nothing installed can write them)."""
    from ..runtime.strategy import keras_backend

    backend = keras_backend()
    try:
        import tensorboard  # noqa: F401  (TensorFlow does not need it, but Keras' callback does)
    except ImportError:
        if backend == "tensorflow":
            return EpochScalars(log_dir, _TfSummaryWriter)
        say(
            f"note: no TensorBoard logs (logs/): on the {backend} backend they need the tensorboard package "
            "(pip install tensorboard)"
        )
        return keras.callbacks.Callback()
    if backend != "tensorflow":
        return EpochScalars(log_dir, _EventWriter)
    return _writes_guarded(keras.callbacks.TensorBoard, log_dir)(
        log_dir=str(log_dir), write_graph=False, profile_batch=0
    )


def log_write_error(log_dir: Path, exc: Exception) -> OutputError:
    """TensorFlow reports a full disk under its events file as ResourceExhaustedError, which
    would read as "out of memory": name the folder and the system's reason instead."""
    text = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc)
    reason = text.strip().splitlines()[0].rsplit("; ", 1)[-1] if text.strip() else type(exc).__name__
    return OutputError(f"cannot write the TensorBoard logs in {log_dir}: {reason}")


def _write_errors() -> tuple[type[BaseException], ...]:
    """What a failed write raises: OSError, and TensorFlow's own errors where it is loaded."""
    import sys

    tf = sys.modules.get("tensorflow")
    return (OSError, tf.errors.OpError) if tf is not None else (OSError,)


def _writes_guarded(callback_class, log_dir: Path):
    """``callback_class`` with its writing hooks turning write failures into :func:`log_write_error`."""

    def guard(name):
        method = getattr(callback_class, name)

        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except _write_errors() as exc:
                raise log_write_error(log_dir, exc) from None

        return guarded

    return type(callback_class.__name__, (callback_class,), {name: guard(name) for name in _WRITING_HOOKS})


class _TfSummaryWriter:
    """Scalars through ``tf.summary``, tagged for the scalars dashboard as ``tf.summary.scalar`` tags them."""

    def __init__(self, folder: Path):
        from tensorflow.core.framework import summary_pb2

        self.tf, self.writer = tf, tf.summary.create_file_writer(str(folder))
        plugin = summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
        self.metadata = summary_pb2.SummaryMetadata(plugin_data=plugin)

    def scalar(self, tag: str, value: float, step: int) -> None:
        with self.writer.as_default():
            self.tf.summary.write(tag, self.tf.constant(value), step=step, metadata=self.metadata)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _EventWriter:
    """Scalars through the ``tensorboard`` package's event file writer (no TensorFlow needed)."""

    def __init__(self, folder: Path):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.event_pb2, self.summary_pb2 = event_pb2, summary_pb2
        self.writer = EventFileWriter(str(folder))

    def scalar(self, tag: str, value: float, step: int) -> None:
        summary = self.summary_pb2.Summary(value=[self.summary_pb2.Summary.Value(tag=tag, simple_value=value)])
        self.writer.add_event(self.event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class EpochScalars(keras.callbacks.Callback):
    """``logs/train`` and ``logs/validation`` with ``epoch_<metric>`` scalars, as Keras writes them."""

    def __init__(self, log_dir: Path, writer_class=_TfSummaryWriter):
        super().__init__()
        self.log_dir, self.writer_class = Path(log_dir), writer_class
        self.writers = {}

    def writer(self, name: str):
        if name not in self.writers:
            self.writers[name] = self.writer_class(self.log_dir / name)
        return self.writers[name]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs.setdefault("learning_rate", current_lr(self.model.optimizer))
        try:
            for key, value in logs.items():
                part, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                self.writer(part).scalar(f"epoch_{tag}", float(value), epoch)
            for writer in self.writers.values():
                writer.flush()
        except _write_errors() as exc:
            raise log_write_error(self.log_dir, exc) from None

    def on_train_end(self, logs=None):
        try:
            for writer in self.writers.values():
                writer.close()
        except _write_errors() as exc:
            raise log_write_error(self.log_dir, exc) from None
