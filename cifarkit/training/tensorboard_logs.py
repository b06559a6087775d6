"""TensorBoard logs in the run folder's ``logs/``: Keras' callback when the ``tensorboard`` package is
installed, else :class:`EpochScalars`, the same epoch scalars through TensorFlow's own summary
writer. Either way a failed write (a full disk) ends the run as an :class:`OutputError`."""

from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from ..errors import OutputError
from .callbacks import current_lr

# The scalars dashboard shows summaries tagged with its plugin name, as tf.summary.scalar does.
_SCALARS = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
# The hooks in which Keras' TensorBoard callback writes.
_WRITING_HOOKS = ("on_train_begin", "on_epoch_end", "on_train_end", "on_test_end", "on_train_batch_end")


def tensorboard_callback(log_dir: Path):
    """The callback that writes the run's TensorBoard logs into ``log_dir``."""
    try:
        import tensorboard  # noqa: F401  (TensorFlow does not need it, but Keras' callback does)
    except ImportError:
        return EpochScalars(log_dir)
    return _writes_guarded(keras.callbacks.TensorBoard, log_dir)(log_dir=str(log_dir), write_graph=False,
                                                                  profile_batch=0)  # fmt: skip


def log_write_error(log_dir: Path, exc: Exception) -> OutputError:
    """TensorFlow reports a full disk under its events file as ResourceExhaustedError, which
    would read as "out of memory": name the folder and the system's reason instead."""
    text = getattr(exc, "message", None) or getattr(exc, "strerror", None) or str(exc)
    reason = text.strip().splitlines()[0].rsplit("; ", 1)[-1] if text.strip() else type(exc).__name__
    return OutputError(f"cannot write the TensorBoard logs in {log_dir}: {reason}")


def _writes_guarded(callback_class, log_dir: Path):
    """``callback_class`` with its writing hooks turning write failures into :func:`log_write_error`."""

    def guard(name):
        method = getattr(callback_class, name)

        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except (OSError, tf.errors.OpError) as exc:
                raise log_write_error(log_dir, exc) from None

        return guarded

    return type(callback_class.__name__, (callback_class,), {name: guard(name) for name in _WRITING_HOOKS})


class EpochScalars(keras.callbacks.Callback):
    """``logs/train`` and ``logs/validation`` with ``epoch_<metric>`` scalars, as Keras writes them."""

    def __init__(self, log_dir: Path):
        super().__init__()
        self.log_dir = Path(log_dir)
        self.writers = {}

    def writer(self, name: str):
        if name not in self.writers:
            self.writers[name] = tf.summary.create_file_writer(str(self.log_dir / name))
        return self.writers[name]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        logs.setdefault("learning_rate", current_lr(self.model.optimizer))
        try:
            for key, value in logs.items():
                part, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
                with self.writer(part).as_default():
                    tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch, metadata=_SCALARS)
            for writer in self.writers.values():
                writer.flush()
        except (OSError, tf.errors.OpError) as exc:
            raise log_write_error(self.log_dir, exc) from None

    def on_train_end(self, logs=None):
        try:
            for writer in self.writers.values():
                writer.close()
        except (OSError, tf.errors.OpError) as exc:
            raise log_write_error(self.log_dir, exc) from None
