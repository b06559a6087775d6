"""``cifarkit train``: one run folder per training run, resumable after a kill.

The run folder (``--workdir``) holds:

- ``config.json``: every setting, defaults resolved (the run's identity: re-running the same
  command resumes or reports the run finished; a different one is refused unless ``--overwrite``);
- ``best.keras`` (highest validation accuracy) and ``last.keras``: the network *with its
  preprocessing*: an input of uint8 images, the recipe's :class:`~cifarkit.augment_layer.Augmentation`
  layer (the centre view at inference), the network, and a pass-through layer that carries the class
  names. Evaluation and prediction feed uint8 images to it and need nothing else;
- ``history.csv`` and ``curves.png`` (rewritten every epoch), TensorBoard logs in ``logs/``;
- ``stats.json``: the dataset statistics the preprocessing uses;
- ``report.json`` once training has finished (its presence marks the run finished);
- ``backup/`` while training runs: weights, optimizer and callback state (see :class:`RunBackup`);
- ``.cifarkit.lock``: held while a command trains in the folder, so a second one is refused.

Resuming: the backup holds the weights, the optimizer (slots, step count, learning rate), the
augmentation layer's seed state, the history rows, the best accuracy so far and the plateau
schedule's counters. Keras starts every epoch at its first step, so an epoch backed up part-way
runs again in full from the weights it had reached, and the epochs left draw a fresh data order
from (seed, epoch resumed at): reproducible, though not the order an uninterrupted run would take.

Augmentation runs either on the host (``tf.data`` map; the bare network trains on float crops)
or on the device (the pipeline ships uint8 batches and the wrapped model trains, its first layer
augmenting inside the compiled step). Both share the very layers that are saved, so the saved
model is the same either way.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import folder_lock
from .errors import OutputError, SourceError, UsageError
from .tf_runtime import cpu_has_bfloat16, onednn_state
from .writers.atomic import partial_path, remove_partials, write_bytes, write_text

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("plateau", "cosine", "step")
PRECISIONS = ("float32", "mixed")

# Section 5 of Krizhevsky et al. 2012: batch 128, momentum 0.9, weight decay 0.0005, learning rate
# 0.01 divided by 10 when the validation error stops improving, roughly 90 passes.
PAPER_DEFAULTS = dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=5e-4, schedule="plateau",
                      batch_size=128, epochs=90)  # fmt: skip
# The usual CIFAR recipe for small networks: SGD with momentum, a higher rate annealed by a cosine.
CIFAR_DEFAULTS = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
                      batch_size=128, epochs=30)  # fmt: skip
ADAM_LR = 1e-3  # Adam's usual rate; SGD's would make it diverge
# The paper's plateau rule, made concrete: divide by 10 after this many epochs without a better
# validation accuracy, at most three times (the paper reduced the rate three times in all).
PLATEAU_FACTOR = 0.1
PLATEAU_PATIENCE = 5
PLATEAU_MAX_CUTS = 3
STEP_MILESTONES = (0.5, 0.75)  # "step": divide by 10 at half and at three quarters of the epochs
STEP_FACTOR = 0.1
DEFAULT_STEPS_PER_EXECUTION = 8  # steps per call into the compiled function: less Python per step
# A backup is written at every epoch end and, within an epoch, when this many seconds have passed
# since the last one, so a kill mid-epoch costs at most this much work (single-worker runs only).
BACKUP_SECONDS = 120.0
# A resumed run draws a fresh, reproducible data order from (seed, epoch it resumes at) rather
# than replaying the order of the first epoch.
RESUME_SEED_STRIDE = 1_000_003

CONFIG_FILE, REPORT_FILE, HISTORY_FILE, CURVES_FILE = "config.json", "report.json", "history.csv", "curves.png"
BEST_MODEL, LAST_MODEL, STATS_FILE, LOG_DIR, BACKUP_DIR = "best.keras", "last.keras", "stats.json", "logs", "backup"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5", "lr",
                   "train_seconds", "images_per_second")  # fmt: skip
# Settings that change how fast a run goes, not what it computes: a resumed run may change them.
RUNTIME_KEYS = ("jit", "steps_per_execution", "strategy")


@dataclass
class TrainConfig:
    """What ``cifarkit train`` was asked for; ``None`` means "the model's default"."""

    model: str
    workdir: str
    data: str | None = None
    sample: bool = False  # the data is the bundled sample (recorded, and said in the report)
    verify: bool = True
    model_options: dict = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    recipe: str | None = None
    crop: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    label_smoothing: float = 0.0
    seed: int = 0
    precision: str = "float32"
    jit: bool | None = None
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION
    augment_on: str | None = None
    strategy: str = "auto"
    holdout: int = 0  # images held out of train for validation; 0: validate on the test split
    limit_train: int | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(data: dict) -> "TrainConfig":
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig(**{k: v for k, v in data.items() if k in known})

    @property
    def val_split(self) -> str:
        return HOLDOUT_SPLIT if self.holdout else "test"


HOLDOUT_SPLIT = "holdout"
# What a run's config.json must name for its data to be opened again (evaluate, resume).
REQUIRED_KEYS = ("model", "workdir", "data", "recipe")
_JSON_TYPES = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,), "dict": (dict,)}


def run_config(data: Any, where: Path) -> TrainConfig:
    """A run's config.json as read back, checked: a list, a missing key or a value of the wrong
    type (``"data": null``) is a damaged run folder, said in one line, not a crash further on."""

    def damaged(why: str) -> SourceError:
        return SourceError(f"{where}: not a training run's configuration ({why})")

    if not isinstance(data, dict):
        raise damaged(f"a JSON {type(data).__name__}, not an object")
    for key in REQUIRED_KEYS:
        if key not in data:
            raise damaged(f"no {key!r}")
        if not isinstance(data[key], str) or not data[key]:  # resolved runs name all of them
            raise damaged(f"{key}: {data[key]!r}")
    for f in fields(TrainConfig):
        if f.name not in data:
            continue
        value, kinds = data[f.name], str(f.type).replace(" ", "").split("|")
        if value is None and "None" in kinds:
            continue
        allowed = tuple(t for kind in kinds for t in _JSON_TYPES.get(kind, ()))
        # JSON has no separate bool: true is not a number of epochs, and 1 is not a flag.
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise damaged(f"{f.name}: {value!r}")
    if data.get("holdout", 0) < 0:
        raise damaged(f"holdout: {data['holdout']!r}")
    if data.get("limit_train") is not None and data["limit_train"] < 1:
        raise damaged(f"limit_train: {data['limit_train']!r}")
    return TrainConfig.from_json(data)


def resolve(config: TrainConfig) -> TrainConfig:
    """Every ``None`` replaced by the model's default, every value checked (a bad one names itself)."""
    from .models import model_info
    from .recipes import get_recipe

    info = model_info(config.model)
    recipe_name = config.recipe or info.recipe
    recipe = get_recipe(recipe_name, config.crop)  # checks the recipe and --crop
    defaults = PAPER_DEFAULTS if config.model == "alexnet" else CIFAR_DEFAULTS
    optimizer = config.optimizer or defaults["optimizer"]
    if optimizer not in OPTIMIZERS:
        raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}. Received: optimizer={optimizer!r}")
    schedule = config.schedule or defaults["schedule"]
    if schedule not in SCHEDULES:
        raise UsageError(f"--schedule must be one of {', '.join(SCHEDULES)}. Received: schedule={schedule!r}")
    if config.precision not in PRECISIONS:
        raise UsageError(f"--precision must be float32 or mixed. Received: precision={config.precision!r}")
    lr = config.lr if config.lr is not None else (defaults["lr"] if optimizer == "sgd" else ADAM_LR)
    resolved = replace(
        config, recipe=recipe_name, crop=recipe.crop, optimizer=optimizer, schedule=schedule, lr=float(lr),
        epochs=config.epochs if config.epochs is not None else defaults["epochs"],
        batch_size=config.batch_size if config.batch_size is not None else defaults["batch_size"],
        momentum=float(config.momentum if config.momentum is not None else defaults["momentum"]) if optimizer == "sgd" else None,
        weight_decay=float(config.weight_decay if config.weight_decay is not None else defaults["weight_decay"]),
        augment_on=config.augment_on or _default_augment_place(),
        jit=config.jit if config.jit is not None else _gpu_visible(),
        data=str(Path(config.data).expanduser().resolve()) if config.data else None,
        workdir=str(Path(config.workdir).expanduser().resolve()),
    )  # fmt: skip
    _check_positive("epochs", resolved.epochs)
    _check_positive("batch-size", resolved.batch_size)
    _check_positive("steps-per-execution", resolved.steps_per_execution)
    if not resolved.lr > 0 or not math.isfinite(resolved.lr):
        raise UsageError(f"--lr must be a positive number. Received: lr={resolved.lr}")
    if resolved.momentum is not None and not 0 <= resolved.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1). Received: momentum={resolved.momentum}")
    if not resolved.weight_decay >= 0:
        raise UsageError(f"--weight-decay must be 0 or more. Received: weight_decay={resolved.weight_decay}")
    if not 0 <= resolved.label_smoothing < 1:
        raise UsageError(f"--label-smoothing must be in [0, 1). Received: label_smoothing={resolved.label_smoothing}")
    if resolved.holdout < 0:
        raise UsageError(f"--holdout must be 0 or more images. Received: holdout={resolved.holdout}")
    if resolved.limit_train is not None:
        _check_positive("limit-train", resolved.limit_train)
    from .pipeline import check_place

    check_place(resolved.augment_on)
    from .strategy import STRATEGIES

    if resolved.strategy not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}. Received: strategy={resolved.strategy!r}")
    if resolved.data is None:
        raise UsageError("no data given (--data)")
    return resolved


def _check_positive(option: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"--{option} must be a positive integer. Received: {option.replace('-', '_')}={value!r}")


def _gpu_visible() -> bool:
    from .strategy import gpu_visible

    return gpu_visible()


def _default_augment_place() -> str:
    # On a GPU the host would be the bottleneck (the paper recipe makes 227x227 float crops);
    # on a CPU both places are the same processor, and the host pipeline overlaps with the step.
    return "device" if _gpu_visible() else "host"


def identity(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in RUNTIME_KEYS}


# --------------------------------------------------------------------------------------------
# Data


@dataclass
class RunData:
    source: Any  # cifarkit.data.DataSource with the splits training uses
    full_counts: dict[str, int]  # the splits of the source as read, before --limit-train/--holdout
    image_size: int | None  # square size images of mixed sizes are brought to, or None
    input_shape: tuple[int, int, int]  # uint8 input of the saved model


def open_run_data(config: TrainConfig) -> RunData:
    """The source, with ``--holdout`` and ``--limit-train`` applied as new splits of it."""
    from .data import open_data
    from .recipes import get_recipe

    source = open_data(config.data, verify=config.verify)
    if "train" not in source.counts or "test" not in source.counts:
        raise SourceError(f"{config.data}: training needs train and test splits; it has {', '.join(source.counts)}")
    full = dict(source.counts)
    rng = np.random.default_rng(config.seed)
    order = rng.permutation(full["train"])
    if config.holdout and config.holdout >= full["train"]:
        raise UsageError(f"--holdout must leave training images: train has {full['train']}. Received: holdout={config.holdout}")
    held, kept = order[: config.holdout], order[config.holdout :]
    if config.limit_train is not None:
        kept = kept[: config.limit_train]
    if config.holdout or config.limit_train is not None:
        # Sorted, so the subsets keep dataset order (evaluation reads them in order).
        picks = {"train": np.sort(kept)}
        if config.holdout:
            picks[HOLDOUT_SPLIT] = np.sort(held)
        source = subset_source(source, "train", picks)
    recipe = get_recipe(config.recipe, config.crop)
    if source.image_shape is None:
        size = recipe.source_size
        return RunData(source, full, size, (size, size, 3))
    return RunData(source, full, None, tuple(source.image_shape))


def subset_source(source, base_split: str, picks: dict[str, np.ndarray]):
    """A :class:`~cifarkit.data.DataSource` whose splits ``picks`` are index subsets of ``base_split``."""
    import tensorflow as tf

    from .data import DataSource

    counts = {s: n for s, n in source.counts.items() if s != base_split}
    counts.update({s: len(idx) for s, idx in picks.items()})
    if source.kind == "arrays":
        images, labels = source.arrays[base_split]
        arrays = {s: a for s, a in source.arrays.items() if s != base_split}
        arrays.update({s: (images[idx], labels[idx]) for s, idx in picks.items()})

        def build(split: str):
            return tf.data.Dataset.from_tensor_slices(arrays[split])

        return replace(source, counts=counts, arrays=arrays, _build=build)

    masks = {}
    for split, idx in picks.items():
        mask = np.zeros(source.counts[base_split], bool)
        mask[idx] = True
        masks[split] = mask
    base_build = source._build

    def build_files(split: str):
        if split not in masks:
            return base_build(split)
        mask = tf.constant(masks[split])
        ds = base_build(base_split).enumerate()
        return ds.filter(lambda i, example: tf.gather(mask, i)).map(lambda i, example: example)

    return replace(source, counts=counts, _build=build_files, files={})


def stats_origin(stats, dataset_name: str) -> str:
    from .stats import bundled_stats

    bundled = bundled_stats(dataset_name)
    if bundled is not None and bundled == stats:
        return f"bundled statistics of the full {dataset_name} training split"
    return f"computed from the {stats.images} training images used"


# --------------------------------------------------------------------------------------------
# Model


def build_models(config: TrainConfig, data: RunData, class_names, stats):
    """(saved model: uint8 -> augmentation -> network -> class names, bare network)."""
    import keras

    from .augment_layer import Augmentation
    from .evaluate import ClassNames
    from .models import create_model
    from .recipes import get_recipe

    recipe = get_recipe(config.recipe, config.crop)
    network = create_model(config.model, num_classes=len(class_names), input_shape=(recipe.crop, recipe.crop, 3),
                           **config.model_options)  # fmt: skip
    if config.optimizer == "sgd" and config.weight_decay:
        # Weight decay for SGD as the paper writes it: v <- 0.9 v - wd * lr * w - lr * grad, which is
        # gradient descent on loss + (wd / 2) * |w|^2. Kernels only: decaying biases and batch-norm
        # scales only hurts.
        for layer in network._flatten_layers():
            kernel = getattr(layer, "kernel", None)
            if kernel is not None and kernel.trainable:
                kernel.regularizer = keras.regularizers.L2(config.weight_decay / 2)
    inputs = keras.Input(shape=data.input_shape, dtype="uint8", name="uint8_image")
    views = Augmentation(recipe=recipe, stats=stats, seed=config.seed, name="preprocess")(inputs)
    logits = ClassNames(list(class_names), name="class_names")(network(views))
    return keras.Model(inputs, logits, name=config.model.replace("-", "_")), network


def make_optimizer(config: TrainConfig):
    import keras

    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=config.lr, momentum=config.momentum)
    # Adam: weight decay decoupled from the gradient (AdamW, Loshchilov & Hutter 2019); as an L2
    # term it would be divided by Adam's running scale and barely act.
    optimizer = keras.optimizers.AdamW(learning_rate=config.lr, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def make_loss(label_smoothing: float):
    import keras

    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # Keras' sparse cross-entropy has no label smoothing; one-hot the labels inside the loss instead
    # of shipping one-hot labels through the pipeline.
    def smoothed_crossentropy(y_true, y_pred):
        depth = keras.ops.shape(y_pred)[-1]
        onehot = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), [-1]), depth)
        return keras.losses.categorical_crossentropy(onehot, y_pred, from_logits=True, label_smoothing=label_smoothing)

    return smoothed_crossentropy


def _build_from_local_batch(model, strategy) -> None:
    """Work around Keras (3.15) under MultiWorkerMirroredStrategy: before ``fit`` it builds the
    model from a first batch reduced with ``strategy.reduce`` on the whole (x, y) tuple, which the
    collective strategy cannot reduce. Building needs shapes only, so this replica's own part of
    the batch does."""
    import tensorflow as tf

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
    """Work around Keras (3.15) under MultiWorkerMirroredStrategy: each step's loss and metrics
    are averaged over replicas with ``strategy.reduce("MEAN", value, axis=0)``, which fails for
    the scalars they are. Reduce scalars with ``axis=None`` (a plain mean over replicas) instead.
    Only multi-worker runs patch this, once per process."""
    import tensorflow as tf

    try:
        from keras.src.backend.tensorflow import trainer as keras_tf_trainer
    except ImportError:  # a Keras whose internals moved, presumably with the bug fixed
        return
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
        return tf.nest.map_structure(
            lambda v: strategy.reduce("MEAN", v, axis=0 if rank(v) else None), values)  # fmt: skip

    reduce_per_replica._cifarkit = True
    keras_tf_trainer.reduce_per_replica = reduce_per_replica


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


def backup_weights_bytes(model) -> memoryview:
    """What ``model.save_weights`` writes (weights, optimizer slots and step, seed states), built
    in memory.

    HDF5 must never write to the disk itself: when a write fails there (a full disk), the
    library keeps the file open in a state it can neither flush nor close, and the process
    crashes in libhdf5 when it exits. Built in memory, the bytes go to the disk through an
    ordinary write whose failure is a plain OSError."""
    try:
        from keras.src.saving.saving_lib import H5IOStore, _save_state
    except ImportError:  # a Keras whose internals moved: its public call, through a scratch file
        return _weights_through_scratch_file(model)
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
# Callbacks


def _callbacks_base():
    import keras

    return keras.callbacks.Callback


class _Stateful:
    """A callback whose state is written into the run backup and read back on resume."""

    key = ""

    def state(self) -> dict:
        return {}

    def restore(self, state: dict) -> None:
        pass


def current_lr(optimizer) -> float:
    """The learning rate as a number (under a strategy it is a mirrored variable)."""
    value = optimizer.learning_rate
    return float(value.numpy() if hasattr(value, "numpy") else value)


def make_callbacks():
    """Built lazily so that importing this module does not import Keras."""
    Base = _callbacks_base()

    class Progress(Base):
        """One tqdm bar per epoch: loss, accuracy and images/s as it goes, validation at the end."""

        def __init__(self, steps: int, batch_size: int, epochs: int, enabled: bool):
            super().__init__()
            self.steps, self.batch_size, self.epochs, self.enabled = steps, batch_size, epochs, enabled
            self.bar = None

        def on_epoch_begin(self, epoch, logs=None):
            from tqdm import tqdm

            self.start = time.perf_counter()
            self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", unit="step",
                            disable=not self.enabled, leave=True, dynamic_ncols=True)  # fmt: skip

        def on_train_batch_end(self, batch, logs=None):
            if self.bar is None or not self.enabled:
                return
            done = min(batch + 1, self.steps)
            self.bar.update(done - self.bar.n)
            rate = done * self.batch_size / max(time.perf_counter() - self.start, 1e-9)
            logs = logs or {}
            self.bar.set_postfix_str(f"loss {float(logs.get('loss', math.nan)):.4f} "
                                     f"acc {float(logs.get('accuracy', math.nan)):.4f} {rate:,.0f} img/s")  # fmt: skip

        def on_epoch_end(self, epoch, logs=None):
            if self.bar is None:
                return
            logs = logs or {}
            if self.enabled:
                self.bar.set_postfix_str(f"loss {logs.get('loss', math.nan):.4f} acc {logs.get('accuracy', math.nan):.4f} "
                                         f"val_loss {logs.get('val_loss', math.nan):.4f} "
                                         f"val_acc {logs.get('val_accuracy', math.nan):.4f}")  # fmt: skip
            self.bar.close()
            self.bar = None

        def on_train_end(self, logs=None):
            if self.bar is not None:
                self.bar.close()

    class History(Base, _Stateful):
        """Rows of per-epoch metrics, timing and learning rate; history.csv and curves.png each epoch.

        The rows travel in the backup, so a resumed run rewrites history.csv from the rows that
        belong to the epochs it kept: never a duplicated or a missing epoch.
        """

        key = "history"

        def __init__(self, folder: Path | None, images_per_epoch: int):
            super().__init__()
            self.folder, self.images_per_epoch = folder, images_per_epoch
            self.rows: list[dict] = []
            self.seconds_before = 0.0  # wall time of earlier processes of this run
            self.process_start = time.perf_counter()

        def state(self):
            return {"rows": self.rows, "wall_seconds": self.wall_seconds()}

        def restore(self, state):
            rows = state.get("rows", [])
            numbers = (int, float, type(None))
            if not isinstance(rows, list) or not all(
                isinstance(r, dict) and type(r.get("epoch")) is int and all(isinstance(r.get(k), numbers) for k in HISTORY_COLUMNS)
                for r in rows
            ):  # fmt: skip
                raise ValueError("history rows that are not rows of numbers")
            self.rows = rows
            self.seconds_before = float(state.get("wall_seconds", 0.0))

        def wall_seconds(self) -> float:
            return self.seconds_before + time.perf_counter() - self.process_start

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch_start = time.perf_counter()
            self.train_end = None

        def on_test_begin(self, logs=None):
            self.train_end = time.perf_counter()  # validation is not training time

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            seconds = (self.train_end or time.perf_counter()) - self.epoch_start
            row = {"epoch": epoch + 1}
            for key in HISTORY_COLUMNS[1:7]:
                row[key] = float(logs[key]) if key in logs else None
            row["lr"] = current_lr(self.model.optimizer)
            row["train_seconds"] = round(seconds, 3)
            row["images_per_second"] = round(self.images_per_epoch / max(seconds, 1e-9), 1)
            self.rows = [r for r in self.rows if r["epoch"] < epoch + 1] + [row]
            self.write()

        def write(self):
            if self.folder is not None:
                write_history(self.folder, self.rows)

    class LearningRate(Base, _Stateful):
        """The schedule, decided per epoch: cosine and step from the epoch number alone; plateau
        from the best validation accuracy so far, kept in the backup."""

        key = "learning_rate"

        def __init__(self, schedule: str, lr: float, epochs: int):
            super().__init__()
            self.schedule, self.base_lr, self.epochs = schedule, lr, epochs
            self.best, self.wait, self.cuts = -math.inf, 0, 0

        def state(self):
            return {"best": self.best if math.isfinite(self.best) else None, "wait": self.wait, "cuts": self.cuts}

        def restore(self, state):
            self.best = float(state["best"]) if state.get("best") is not None else -math.inf
            self.wait, self.cuts = int(state.get("wait", 0)), int(state.get("cuts", 0))

        def rate(self, epoch: int) -> float:
            if self.schedule == "cosine":
                return self.base_lr * 0.5 * (1 + math.cos(math.pi * epoch / self.epochs))
            if self.schedule == "step":
                passed = sum(epoch >= int(m * self.epochs) for m in STEP_MILESTONES)
                return self.base_lr * STEP_FACTOR**passed
            return self.base_lr * PLATEAU_FACTOR**self.cuts

        def on_epoch_begin(self, epoch, logs=None):
            self.model.optimizer.learning_rate = self.rate(epoch)

        def on_epoch_end(self, epoch, logs=None):
            if self.schedule != "plateau" or logs is None or "val_accuracy" not in logs:
                return
            if logs["val_accuracy"] > self.best:
                self.best, self.wait = float(logs["val_accuracy"]), 0
                return
            self.wait += 1
            if self.wait >= PLATEAU_PATIENCE and self.cuts < PLATEAU_MAX_CUTS:
                self.cuts, self.wait = self.cuts + 1, 0

    class Checkpoints(Base, _Stateful):
        """``last.keras`` every epoch, ``best.keras`` when validation accuracy improves."""

        key = "checkpoints"

        def __init__(self, export_model, folder: Path):
            super().__init__()
            self.export_model, self.folder = export_model, folder
            self.best, self.best_epoch = -math.inf, None

        def state(self):
            return {"best": self.best if math.isfinite(self.best) else None, "best_epoch": self.best_epoch}

        def restore(self, state):
            self.best = float(state["best"]) if state.get("best") is not None else -math.inf
            self.best_epoch = state.get("best_epoch")
            if self.best_epoch is not None and type(self.best_epoch) is not int:
                raise ValueError(f"best_epoch: {self.best_epoch!r}")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            save_model_atomic(self.export_model, self.folder / LAST_MODEL)
            accuracy = logs.get("val_accuracy", logs.get("accuracy"))
            if accuracy is not None and float(accuracy) > self.best:
                self.best, self.best_epoch = float(accuracy), epoch + 1
                save_model_atomic(self.export_model, self.folder / BEST_MODEL)

    class RunBackup(Base):
        """What :class:`keras.callbacks.BackupAndRestore` does, made safe against a kill at any moment.

        Keras' callback writes the weights and then the epoch number in place, one after the other,
        and knows nothing of the other callbacks. Here the weights (model, optimizer slots and
        step, the augmentation layer's seed) go to a new file first; ``state.json``, written
        atomically and naming that file together with the epoch and every stateful callback's
        state, is the commit point; older weight files are removed after it. A kill leaves
        either the previous backup or the new one, whole.
        """

        def __init__(self, folder: Path, stateful: list, every_seconds: float | None, serial: int = 0):
            super().__init__()
            self.folder, self.stateful, self.every_seconds = folder, stateful, every_seconds
            self.epoch, self.last_save = 0, time.monotonic()
            self.serial = serial  # of the committed backup this process resumed from, or 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if self.every_seconds is not None and time.monotonic() - self.last_save >= self.every_seconds:
                self.save(self.epoch, batch + 1)

        def on_epoch_end(self, epoch, logs=None):
            self.save(epoch + 1, 0)

        def save(self, epoch: int, step: int) -> None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OutputError(f"cannot create {self.folder}: {exc.strerror or exc}") from None
            serial = self.serial + 1
            weights = f"weights-{serial:06d}.weights.h5"
            # A new file beside the committed one, which stays whole if this write fails.
            write_durably(self.folder / weights, backup_weights_bytes(self.model))
            state = {"serial": serial, "epoch": epoch, "step": step, "weights": weights,
                     "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                     "callbacks": {cb.key: cb.state() for cb in self.stateful}}  # fmt: skip
            try:
                write_text(self.folder / BACKUP_STATE, json.dumps(state, indent=1) + "\n")
            except OutputError:
                (self.folder / weights).unlink(missing_ok=True)  # never committed
                raise
            self.serial = serial
            for old in self.folder.glob("weights-*.weights.h5"):
                if old.name != weights:
                    old.unlink(missing_ok=True)
            self.last_save = time.monotonic()

    return {"Progress": Progress, "History": History, "LearningRate": LearningRate,
            "Checkpoints": Checkpoints, "RunBackup": RunBackup}  # fmt: skip


BACKUP_STATE = "state.json"


def tensorboard_callback(log_dir: Path):
    """Keras' TensorBoard callback; without the ``tensorboard`` package (TensorFlow does not need
    it, but Keras' callback does) the same epoch scalars through TensorFlow's own summary writer.
    Either way a failed write (a full disk) ends the run as an :class:`OutputError`."""
    import keras

    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return make_summary_writer()(log_dir)
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
    import tensorflow as tf

    def guard(name):
        method = getattr(callback_class, name)

        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except (OSError, tf.errors.OpError) as exc:
                raise log_write_error(log_dir, exc) from None

        return guarded

    hooks = ("on_train_begin", "on_epoch_end", "on_train_end", "on_test_end", "on_train_batch_end")
    return type(callback_class.__name__, (callback_class,), {name: guard(name) for name in hooks})


def make_summary_writer():
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    # The scalars dashboard shows summaries tagged with its plugin name, as tf.summary.scalar does.
    metadata = summary_pb2.SummaryMetadata(plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))

    class EpochScalars(_callbacks_base()):
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
                        tf.summary.write(f"epoch_{tag}", tf.constant(float(value)), step=epoch, metadata=metadata)
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

    return EpochScalars


_WEIGHTS_NAME = re.compile(r"weights-\d{6,}\.weights\.h5")


def damaged_backup(path: Path, why: str) -> OutputError:
    # Refused rather than discarded: the backup is written so that a kill, a crash or a full disk
    # never damages it, so damage came from outside, and starting again would replace best.keras
    # and the history of the epochs done; --overwrite makes that the user's choice.
    return OutputError(f"{path}: damaged run backup ({why}); pass --overwrite to start the run again")


def read_backup(folder: Path, epochs: int | None = None) -> dict | None:
    """The committed backup state in ``folder``, checked, or None when there is none.

    A state that does not hold what a resume needs, or names a weights file that is not there,
    is refused in one line (see :func:`damaged_backup`)."""
    path = Path(folder) / BACKUP_STATE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise damaged_backup(path, f"unreadable: {exc}") from None
    if not isinstance(state, dict):
        raise damaged_backup(path, f"a JSON {type(state).__name__}, not an object")

    def whole_number(key: str, high: int | None = None) -> None:
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0 or (high is not None and value > high):
            raise damaged_backup(path, f"{key}: {value!r}" if key in state else f"no {key!r}")

    whole_number("serial")
    whole_number("epoch", epochs)
    whole_number("step")
    weights = state.get("weights")
    if not isinstance(weights, str) or not _WEIGHTS_NAME.fullmatch(weights):
        raise damaged_backup(path, f"weights: {weights!r}" if "weights" in state else "no 'weights'")
    if not isinstance(state.get("callbacks"), dict) or not all(isinstance(v, dict) for v in state["callbacks"].values()):
        raise damaged_backup(path, "no callback state")
    if not (Path(folder) / weights).is_file():
        raise damaged_backup(path, f"its weights file {weights} is missing")
    return state


def write_history(folder: Path, rows: list[dict]) -> None:
    from .plots import curves_image, save_png

    lines = [",".join(HISTORY_COLUMNS)]
    for row in rows:
        lines.append(",".join("" if row.get(k) is None else _csv_number(row[k]) for k in HISTORY_COLUMNS))
    write_text(folder / HISTORY_FILE, "\n".join(lines) + "\n")
    save_png(curves_image(rows), folder / CURVES_FILE)


def _csv_number(value) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.6g}"


def read_history(path: Path) -> list[dict]:
    """history.csv back as rows of numbers (empty cells: None)."""
    text = Path(path).read_text().splitlines()
    header = text[0].split(",")
    rows = []
    for line in text[1:]:
        cells = line.split(",")
        row = {}
        for key, cell in zip(header, cells):
            row[key] = None if cell == "" else (int(cell) if key == "epoch" else float(cell))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class TrainResult:
    workdir: Path
    report: dict
    resumed_from: int | None = None  # epochs already done when this process started
    already_finished: bool = False


RUN_FILES = (CONFIG_FILE, REPORT_FILE, HISTORY_FILE, CURVES_FILE, BEST_MODEL, LAST_MODEL, STATS_FILE)
RUN_FOLDERS = (LOG_DIR, BACKUP_DIR)


def clear_run(workdir: Path) -> None:
    """Remove what a run writes (and nothing else: the folder may hold other files)."""
    for name in RUN_FILES:
        (workdir / name).unlink(missing_ok=True)
    for name in RUN_FOLDERS:
        shutil.rmtree(workdir / name, ignore_errors=True)
    for extra in list(workdir.glob("backup-*")) + list(workdir.glob("eval-*")):
        shutil.rmtree(extra, ignore_errors=True)
    remove_partials(workdir)  # the lock file (.cifarkit.lock) stays: its holder is this process


def _first_difference(old: dict, new: dict) -> str:
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
    return ""


def check_workdir(workdir: Path, config: TrainConfig, overwrite: bool) -> str:
    """"fresh", "resume" or "finished"; a different earlier run is refused unless ``overwrite``."""
    config_path = workdir / CONFIG_FILE
    if not config_path.is_file():
        return "fresh"
    try:
        old = json.loads(config_path.read_text())
    except (OSError, ValueError):
        old = None
    if not isinstance(old, dict):
        old = None  # a list or a number is no run's configuration either
    if overwrite:
        return "overwrite"
    if old is None or identity(old) != identity(config.to_json()):
        change = _first_difference(identity(old), identity(config.to_json())) if old else "unreadable config.json"
        raise OutputError(f"{workdir} holds a run with other settings ({change}); "
                          "pass --overwrite to replace it, or choose another --workdir")  # fmt: skip
    if (workdir / REPORT_FILE).is_file():
        return "finished"
    return "resume"


def train(config: TrainConfig, *, overwrite: bool = False, quiet: bool = False,
          say: Callable[[str], None] | None = None, backup_seconds: float | None = BACKUP_SECONDS) -> TrainResult:
    """Train ``config.model`` as configured, into ``config.workdir``; resume it if it was cut off.

    The chief holds the run folder's lock from the state check to the end, so a second training
    on the same folder is refused in one line instead of interleaving its files with this one's.
    Everything that can refuse the run (settings, data, batch size, model options, the backup)
    is checked before the first file is written, so a refused start leaves the folder as it was.
    """
    from .strategy import make_strategy

    say = say or (lambda message: None if quiet else print(message, file=sys.stderr))
    # The strategy first: a multi-worker strategy must exist before TensorFlow runs anything.
    placement = make_strategy(config.strategy)
    config = resolve(config)
    workdir = Path(config.workdir)
    if not placement.is_chief:
        # Other workers compute the same things (their saves take part in collective ops) but
        # keep them in a scratch folder; only their backup lives beside the chief's. The chief
        # holds the lock for all of them.
        state_of_run = check_workdir(workdir, config, overwrite)
        if state_of_run == "finished":
            return TrainResult(workdir, read_report(workdir), already_finished=True)
        out = Path(tempfile.mkdtemp(prefix="cifarkit-worker-"))
        try:
            backup_folder = workdir / f"backup-{placement.task.replace(':', '-')}"
            return _train(config, placement, out, backup_folder, state_of_run, quiet, say, backup_seconds)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    with folder_lock.hold(workdir, "a training run"):
        state_of_run = check_workdir(workdir, config, overwrite)
        if state_of_run == "finished":
            return TrainResult(workdir, read_report(workdir), already_finished=True)
        return _train(config, placement, workdir, workdir / BACKUP_DIR, state_of_run, quiet, say, backup_seconds)


def read_report(workdir: Path) -> dict:
    """A finished run's report.json, checked for what the summary line reads from it."""
    path = workdir / REPORT_FILE
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        report, why = None, str(exc)
    else:
        why = "not the report cifarkit train writes"
    test = report.get("test") if isinstance(report, dict) else None
    if not isinstance(test, dict) or not all(isinstance(test.get(k), (int, float)) for k in ("accuracy", "top5", "top_k")):
        raise OutputError(f"{path}: damaged run report ({why}); pass --overwrite to train again")
    return report


@dataclass
class Compiled:
    export_model: Any  # what is saved: uint8 -> preprocessing -> network -> class names
    network: Any
    train_model: Any  # what ``fit`` runs: the export model (device augmentation) or the network
    steps_per_execution: int  # as used, which can differ from the config's request
    jit: bool  # as used


def compile_for_training(config: TrainConfig, placement, data: RunData, stats, steps: int,
                         say: Callable[[str], None] = lambda message: None) -> Compiled:  # fmt: skip
    """The models of a run, built under the precision policy and the strategy, and compiled."""
    import keras

    source = data.source
    keras.utils.set_random_seed(config.seed)
    policy_before = keras.config.dtype_policy()
    if config.precision == "mixed":
        # bfloat16 on CPUs (no float16 matrix units there, and no loss scaling needed); float16 on GPUs.
        gpu = _gpu_visible()
        keras.config.set_dtype_policy("mixed_float16" if gpu else "mixed_bfloat16")
        if not gpu and cpu_has_bfloat16() is False:
            say("note: this CPU has no bfloat16 arithmetic (AVX-512 BF16, AMX or Arm BF16), so --precision "
                "mixed is emulated and much slower than float32 here")  # fmt: skip
    try:
        with placement.strategy.scope():
            export_model, network = build_models(config, data, source.class_names, stats)
            if config.augment_on == "device":
                train_model = keras.Model(export_model.inputs, export_model.outputs, name="train_on_uint8")
            else:
                # A separate view, so that compiling it does not attach the optimizer to the saved model.
                train_model = keras.Model(network.inputs, network.outputs, name="train_on_floats")
            optimizer = make_optimizer(config)
            if keras.config.dtype_policy().name == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            top_k = min(5, len(source.class_names))
            spe = min(config.steps_per_execution, steps)
            if placement.name == "multi-worker" and spe > 1:
                # Keras' loop of several steps per call fails under the collective strategy (it
                # feeds a placeholder it never binds); one step per call works.
                say("note: --steps-per-execution is 1 under the multi-worker strategy")
                spe = 1
            jit = bool(config.jit)
            if jit and placement.replicas > 1 and not _gpu_visible():
                # XLA refuses variables that live on another logical CPU device of the same host.
                say("note: --jit is off for several CPU replicas")
                jit = False
            train_model.compile(
                optimizer=optimizer, loss=make_loss(config.label_smoothing),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                         keras.metrics.SparseTopKCategoricalAccuracy(k=top_k, name="top5")],
                steps_per_execution=spe, jit_compile=jit,
            )  # fmt: skip
    finally:
        keras.config.set_dtype_policy(policy_before)
    return Compiled(export_model, network, train_model, spe, jit)


def _train(config: TrainConfig, placement, out: Path, backup_folder: Path, state_of_run: str, quiet: bool,
           say: Callable, backup_seconds: float | None) -> TrainResult:  # fmt: skip
    from .pipeline import eval_batches, train_batches
    from .recipes import eval_transform, get_recipe, train_transform
    from .stats import save_stats, stats_for

    # First everything that can refuse the run, reading only; nothing is written before "Commit".
    backup = read_backup(backup_folder, config.epochs) if state_of_run == "resume" else None
    initial_epoch = backup["epoch"] if backup else 0
    data = open_run_data(config)
    source = data.source
    recipe = get_recipe(config.recipe, config.crop)
    per_replica = placement.check_batch(config.batch_size)
    steps = source.counts["train"] // config.batch_size
    if steps < 1:
        raise UsageError(f"--batch-size is larger than the {source.counts['train']} training images. "
                         f"Received: batch_size={config.batch_size}")  # fmt: skip
    stats = stats_for(source, "train", image_size=data.image_size, progress=not quiet and sys.stderr.isatty())
    compiled = compile_for_training(config, placement, data, stats, steps, say)
    export_model, network, train_model = compiled.export_model, compiled.network, compiled.train_model

    num_workers = placement.replicas if placement.name == "multi-worker" else 1
    if placement.name == "multi-worker":
        _build_from_local_batch(train_model, placement.strategy)
        _reduce_scalars_across_workers()
    # A resumed run takes a fresh data order (and host augmentation stream) for the epochs left.
    data_seed = config.seed + RESUME_SEED_STRIDE * initial_epoch
    transform = train_transform(recipe, stats) if config.augment_on == "host" else None
    train_ds = train_batches(source, "train", transform, batch_size=config.batch_size, seed=data_seed,
                             augment_on=config.augment_on, image_size=data.image_size, num_workers=num_workers)  # fmt: skip
    val_transform = eval_transform(recipe, stats) if config.augment_on == "host" else None
    val_ds = eval_batches(source, config.val_split, val_transform, batch_size=config.batch_size,
                          image_size=data.image_size, num_workers=num_workers)  # fmt: skip

    cb = make_callbacks()
    history = cb["History"](out, steps * config.batch_size)
    schedule = cb["LearningRate"](config.schedule, config.lr, config.epochs)
    checkpoints = cb["Checkpoints"](export_model, out)
    stateful = [history, schedule, checkpoints]
    # Mid-epoch saves only where every worker decides alike; time differs between workers.
    every = backup_seconds if placement.name != "multi-worker" else None
    callbacks = [
        schedule,
        cb["Progress"](steps, config.batch_size, config.epochs, enabled=not quiet and sys.stderr.isatty()),
        history,
        checkpoints,
        tensorboard_callback(out / LOG_DIR),
        # last: it records the others' state
        cb["RunBackup"](backup_folder, stateful, every, serial=backup["serial"] if backup else 0),
    ]
    resumed_from = None
    if backup is not None:
        restore_backup(backup_folder, backup, train_model, stateful, placement)
        resumed_from = initial_epoch

    # Commit: the run is accepted; from here on it writes to its folder.
    if placement.is_chief:
        if state_of_run == "overwrite":
            clear_run(out)
        remove_partials(out)  # what a killed save left (models, backup weights, history, ...)
        write_text(out / CONFIG_FILE, json.dumps(config.to_json(), indent=2) + "\n")
        save_stats(stats, out / STATS_FILE)
    if backup is None and backup_folder.exists():
        shutil.rmtree(backup_folder, ignore_errors=True)  # no committed state: start afresh
    if backup is not None:
        # Keras starts epochs at their first step: an epoch backed up part-way runs again in full,
        # from the weights it had reached.
        partial = (f" (the backup was {backup['step']} steps into it; that epoch runs again in full "
                   "from the weights it had reached)") if backup["step"] else ""  # fmt: skip
        say(f"resumed from the backup in {backup_folder}: continuing at epoch {initial_epoch + 1} of "
            f"{config.epochs}{partial}")  # fmt: skip
    say(f"training {config.model} on {source.name} ({source.counts['train']:,} images, validation: "
        f"{config.val_split} {source.counts[config.val_split]:,}) for {config.epochs} "
        f"epoch{'' if config.epochs == 1 else 's'}, batch "
        f"{config.batch_size} on {placement.replicas} replica(s) ({placement.name}), augmentation on the "
        f"{config.augment_on}, {config.precision}")  # fmt: skip

    train_model.fit(train_ds, validation_data=val_ds, epochs=config.epochs, initial_epoch=initial_epoch,
                    callbacks=callbacks, verbose=0, shuffle=False)  # fmt: skip  (the pipeline shuffles)

    if not placement.is_chief:
        shutil.rmtree(backup_folder, ignore_errors=True)
        return TrainResult(out, {}, resumed_from)
    history.write()  # also after a resume that had no epochs left to run
    report = _final_report(config, placement, compiled, data, stats, history, checkpoints, out, resumed_from)
    write_text(out / REPORT_FILE, json.dumps(report, indent=2) + "\n")
    # Finished: report.json now marks the run. The state goes first, so a kill during the removal
    # never leaves a state naming deleted weights.
    (backup_folder / BACKUP_STATE).unlink(missing_ok=True)
    shutil.rmtree(backup_folder, ignore_errors=True)
    return TrainResult(out, report, resumed_from)


def restore_backup(folder: Path, backup: dict, train_model, stateful: list, placement) -> None:
    """Weights, optimizer and callback state from the committed backup; damage is one line."""
    with placement.strategy.scope():
        train_model.optimizer.build(train_model.trainable_variables)
    weights = folder / backup["weights"]
    try:
        train_model.load_weights(weights)
    except Exception as exc:  # h5py and Keras raise many kinds for a truncated or foreign file
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise damaged_backup(weights, f"cannot load it: {why}") from None
    for item in stateful:
        try:
            item.restore(backup["callbacks"].get(item.key, {}))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise damaged_backup(folder / BACKUP_STATE, f"{item.key} state: {exc}") from None


def _final_report(config, placement, compiled, data, stats, history, checkpoints, out: Path, resumed_from) -> dict:
    from .evaluate import evaluate_model, load_model

    model_name = BEST_MODEL if (out / BEST_MODEL).is_file() else LAST_MODEL
    model = load_model(out / model_name)
    result = evaluate_model(model, data.source, "test", image_size=data.image_size)
    test = {"split": "test", "images": result.count, "model": model_name, "accuracy": result.accuracy,
            "top5": result.top_k_accuracy, "top_k": result.top_k}  # fmt: skip
    if config.recipe == "paper":
        test["ten_crop_accuracy"] = evaluate_model(model, data.source, "test", image_size=data.image_size,
                                                   ten_crop=True).accuracy  # fmt: skip
    rows = history.rows
    # The first epoch of each process includes tracing and compiling; leave it out where possible.
    rates = [r["images_per_second"] for r in rows[1:]] or [r["images_per_second"] for r in rows]
    source = data.source
    validation = ("test split (no holdout: the best epoch is chosen on the test split, so best.keras's "
                  "test accuracy is optimistic)") if not config.holdout else (
                  f"holdout: {config.holdout} images drawn from train under seed {config.seed}")  # fmt: skip
    return {
        "model": config.model,
        "test": test,
        "best_epoch": checkpoints.best_epoch,
        "best_val_accuracy": checkpoints.best if math.isfinite(checkpoints.best) else None,
        "last_epoch": rows[-1] if rows else None,
        "epochs_run": len(rows),
        "resumed_from_epoch": resumed_from,
        "images_per_second": round(statistics.median(rates), 1) if rates else None,
        "wall_seconds": round(history.wall_seconds(), 1),
        "validation": validation,
        "dataset": {"name": source.name, "kind": source.kind, "location": str(source.location),
                    "bundled_sample": config.sample, "class_names": list(source.class_names),
                    "counts": dict(source.counts), "source_counts": data.full_counts},  # fmt: skip
        "stats": {"origin": stats_origin(stats, source.name), "images": stats.images, "mean": list(stats.mean),
                  "std": list(stats.std)},  # fmt: skip
        "strategy": {"name": placement.name, "replicas": placement.replicas, "devices": list(placement.devices)},
        "precision": config.precision,
        # What ran, where it differs from what was asked (config): jit is off for several CPU
        # replicas, one step per call under multi-worker.
        "runtime": {"jit": compiled.jit, "steps_per_execution": compiled.steps_per_execution,
                    "cpu_kernels": onednn_state()},  # fmt: skip
        "config": config.to_json(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
