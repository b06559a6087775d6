"""Where the trainer leans on private Keras APIs, each place declared with the Keras it was written for.

Three places, all in Keras 3.15:

- ``multi_worker_build``: before ``fit`` under ``MultiWorkerMirroredStrategy``, Keras builds the
  model from a first batch reduced with ``strategy.reduce`` on the whole (x, y) tuple, which the
  collective strategy cannot reduce;
- ``multi_worker_scalars``: each step's loss and metrics are averaged over replicas with
  ``strategy.reduce("MEAN", value, axis=0)``, which fails for the scalars they are;
- ``weights_in_memory``: the run backup's HDF5 bytes are built in memory (see
  :func:`backup_weights_bytes`).

A :class:`PrivateApi` names the attribute a patch replaces or calls and the parameters it relies
on. When the installed Keras no longer has them, the patch is not applied (the backup falls back
to Keras' public ``save_weights``), and ``tests/training/test_keras_compat.py`` fails, naming the
patch and the version it was written for, so whoever upgrades Keras checks whether it is still
needed rather than finding out in a multi-worker run.
"""

from __future__ import annotations

import importlib
import inspect
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..runtime.lazy import keras, tf


@dataclass(frozen=True)
class PrivateApi:
    """A private Keras attribute one patch depends on, as it was in ``written_for``."""

    patch: str
    written_for: str  # the Keras version the patch was written and tested against
    module: str
    attribute: str  # "name" or "Class.method"
    parameters: tuple[str, ...]  # its signature's parameter names, in order

    def find(self):
        """The attribute, or None when this Keras does not have it."""
        try:
            target = importlib.import_module(self.module)
        except ImportError:
            return None
        for part in self.attribute.split("."):
            target = getattr(target, part, None)
            if target is None:
                return None
        return target

    def mismatch(self) -> str | None:
        """Why the patch does not fit the installed Keras, or None when it does."""
        target = self.find()
        where = f"{self.module}.{self.attribute}"
        if target is None:
            found = "has no " + where
        else:
            try:
                names = tuple(inspect.signature(target).parameters)
            except (TypeError, ValueError):
                names = None
            if names == self.parameters:
                return None
            found = f"has {where}{names} instead of {self.parameters}"
        return (
            f"Keras {keras.version()} {found}: the {self.patch!r} patch was written for Keras "
            f"{self.written_for}; check whether Keras still needs it and update cifarkit/training/keras_compat.py"
        )


MULTI_WORKER_BUILD = PrivateApi(
    "multi_worker_build", "3.15", "keras", "Model._maybe_symbolic_build", ("self", "iterator", "data_batch")
)
MULTI_WORKER_SCALARS = PrivateApi(
    "multi_worker_scalars",
    "3.15",
    "keras.src.backend.tensorflow.trainer",
    "reduce_per_replica",
    ("values", "strategy", "reduction"),
)
WEIGHTS_STORE = PrivateApi(
    "weights_in_memory",
    "3.15",
    "keras.src.saving.saving_lib",
    "H5IOStore.__init__",
    ("self", "path_or_io", "archive", "mode"),
)
WEIGHTS_STATE = PrivateApi(
    "weights_in_memory",
    "3.15",
    "keras.src.saving.saving_lib",
    "_save_state",
    ("saveable", "weights_store", "assets_store", "inner_path", "visited_saveables"),
)
PRIVATE_APIS = (MULTI_WORKER_BUILD, MULTI_WORKER_SCALARS, WEIGHTS_STORE, WEIGHTS_STATE)


def patch_for_multi_worker(model, strategy) -> None:
    """Both multi-worker patches: building ``model`` from this replica's part of a batch, and
    scalar metrics reduced with ``axis=None``."""
    _build_from_local_batch(model, strategy)
    _reduce_scalars_across_workers()


def _build_from_local_batch(model, strategy) -> None:
    """Building needs shapes only, so this replica's own part of the first batch will do."""
    if MULTI_WORKER_BUILD.mismatch() is not None:
        return
    original = model._maybe_symbolic_build

    def local_part(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def build(iterator=None, data_batch=None):
        if iterator is not None and data_batch is None:
            for _, _, it in iterator:
                data_batch = tf.nest.map_structure(local_part, next(it))
                break
        return original(data_batch=data_batch)

    model._maybe_symbolic_build = build


def _reduce_scalars_across_workers() -> None:
    """Reduce scalars with ``axis=None`` (a plain mean over replicas) under the multi-worker
    strategy; everything else as Keras does. Patched once per process."""
    if MULTI_WORKER_SCALARS.mismatch() is not None:
        return
    from keras.src.backend.tensorflow import trainer as keras_tf_trainer

    original = keras_tf_trainer.reduce_per_replica
    if getattr(original, "_cifarkit", False):
        return

    def rank(value) -> int | None:
        if isinstance(value, tf.distribute.DistributedValues):
            value = value.values[0]
        return getattr(getattr(value, "shape", None), "rank", None)

    def reduce_per_replica(values, strategy, reduction):
        multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
        if not (multi_worker and reduction in ("auto", "mean")):
            return original(values, strategy, reduction)
        return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=0 if rank(v) else None), values)

    reduce_per_replica._cifarkit = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


def backup_weights_bytes(model) -> memoryview:
    """What ``model.save_weights`` writes (weights, optimizer slots and step, seed states), built
    in memory.

    HDF5 must never write to the disk itself: when a write fails there (a full disk), the
    library keeps the file open in a state it can neither flush nor close, and the process
    crashes in libhdf5 when it exits. Built in memory, the bytes go to the disk through an
    ordinary write whose failure is a plain OSError."""
    if WEIGHTS_STORE.mismatch() is not None or WEIGHTS_STATE.mismatch() is not None:
        return _weights_through_scratch_file(model)  # Keras' public call, through a scratch file
    from keras.src.saving.saving_lib import H5IOStore, _save_state

    buffer = io.BytesIO()
    store = H5IOStore(buffer, mode="w")
    try:
        _save_state(model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set())
    finally:
        store.close()
    return buffer.getbuffer()


def _weights_through_scratch_file(model) -> memoryview:
    with tempfile.TemporaryDirectory(prefix="cifarkit-weights-") as scratch:
        path = Path(scratch) / "backup.weights.h5"
        model.save_weights(path)
        return memoryview(path.read_bytes())
