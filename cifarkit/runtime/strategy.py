"""Which ``tf.distribute`` strategy a training run uses, chosen by name.

- ``auto``: every GPU through :class:`MirroredStrategy` when there are several; one GPU through
  :class:`OneDeviceStrategy`, whose distributed datasets prefetch each batch onto the GPU while
  the previous step runs (the uint8 batches of on-device augmentation arrive ahead of time);
  without a GPU the default strategy (no distribution overhead at all);
- ``one-device``: the first GPU, or the CPU;
- ``mirrored``: one replica per GPU, or per logical CPU device when there is no GPU (tests split
  the CPU into two logical devices to exercise the code path without hardware);
- ``multi-worker``: :class:`MultiWorkerMirroredStrategy` over the cluster ``$TF_CONFIG`` describes.

The global batch (``--batch-size``) is split evenly across replicas; Keras distributes the
datasets itself when ``fit`` runs under the strategy's scope.

On Keras's JAX backend the same names choose ``keras.distribution`` data parallelism
(:mod:`cifarkit.runtime.jax_parallel`): ``mirrored`` replicates the model on every GPU (or every
CPU device JAX was given), ``auto`` does so where there are several GPUs, ``multi-worker`` joins
the processes of the cluster ``$TF_CONFIG`` describes into one JAX cluster and replicates over
all their devices. On PyTorch a run has one device (the first GPU, else the CPU), ``auto`` and
``one-device`` name it, and the other strategies are refused in one line.

Each worker of a multi-worker run reads its own part of the data: on TensorFlow, tf.data's
auto-sharding with the policy each reader sets (whole shard files where a split has enough of
them, :func:`cifarkit.readers.reader.shard_policy`) over the ``workers`` input pipelines; on JAX,
each process's slice of every global batch (:class:`cifarkit.readers.feed.Feed`).

A multi-worker strategy has to exist before TensorFlow runs its first op (it configures the
collective ops of the runtime), so training creates the strategy before it reads any data.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from . import jax_parallel
from .jax_parallel import DataParallel, cluster_process
from .lazy import keras, tf

if TYPE_CHECKING:
    from ..metadata.tf_config import TFConfig

STRATEGIES = ("auto", "one-device", "mirrored", "multi-worker")
TF_CONFIG = "TF_CONFIG"
# Task types that take part in synchronous multi-worker training (an evaluator does not).
_TRAINING_TASKS = ("chief", "worker")


@dataclass
class Placement:
    """A strategy and what the trainer needs to know about it."""

    strategy: Any  # tf.distribute.Strategy
    name: str  # the resolved name: default, one-device, mirrored, multi-worker
    replicas: int
    devices: tuple[str, ...]
    is_chief: bool = True  # only the chief writes the run folder
    task: str = ""  # "worker:1" in a multi-worker cluster, "" otherwise
    workers: int = 1  # processes that each read their own part of the data (input pipelines)
    worker_index: int = 0  # this process's number among them (the chief's is 0)

    def check_batch(self, batch_size: int) -> int:
        """The per-replica batch; the global batch must split evenly so every replica does the same work."""
        if batch_size < self.replicas or batch_size % self.replicas:
            raise UsageError(
                f"--batch-size must be a multiple of the {self.replicas} replicas of the "
                f"{self.name} strategy. Received: batch_size={batch_size}"
            )
        return batch_size // self.replicas

    def fitting(self):
        """The context ``fit`` runs in: a JAX distribution's scope, as Keras distributes batches
        and steps only while it is current; nothing on TensorFlow, whose Keras distributes
        under the strategy the model was built in."""
        return self.strategy.scope() if isinstance(self.strategy, DataParallel) else contextlib.nullcontext()


def read_tf_config() -> TFConfig:
    """``$TF_CONFIG`` parsed and checked: a cluster with workers and this process's task in it."""
    from ..metadata.tf_config import parse_tf_config

    raw = os.environ.get(TF_CONFIG)
    if not raw:
        raise UsageError(
            f"--strategy multi-worker needs ${TF_CONFIG} describing the cluster and this "
            'task, e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
            '"task": {"type": "worker", "index": 0}}'
        )
    try:
        config = parse_tf_config(raw, TF_CONFIG)
    except UsageError as exc:
        why = str(exc).removeprefix(f"${TF_CONFIG}: ")
        raise UsageError(
            f"${TF_CONFIG} is not a valid cluster description ({why}). Received: {TF_CONFIG}={raw[:200]!r}"
        ) from None
    kind, index = config.task.type, config.task.index
    if kind not in _TRAINING_TASKS:
        raise UsageError(f"${TF_CONFIG} task type must be chief or worker for training. Received: type={kind!r}")
    if not 0 <= index < len(config.members):
        raise UsageError(
            f"${TF_CONFIG} task index is outside the {kind} list of {len(config.members)}. Received: index={index}"
        )
    return config


def is_chief_task(config: TFConfig) -> bool:
    """The chief writes checkpoints and reports: the "chief" task, or worker 0 when there is none."""
    kind, index = config.task.type, config.task.index
    if "chief" in config.cluster:
        return kind == "chief"
    return kind == "worker" and index == 0


class NoStrategy:
    """What the trainer asks of a strategy, on a backend without ``tf.distribute``: one device."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def keras_backend() -> str:
    """The Keras backend this process runs (imports Keras, and with the TensorFlow backend TensorFlow)."""
    return keras.backend.backend()


def make_strategy(name: str = "auto") -> Placement:
    """The strategy called ``name`` (see the module docstring), with its replica count."""
    if name not in STRATEGIES:
        raise UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}. Received: strategy={name!r}")
    backend = keras_backend()
    if backend == "jax":
        return _jax_placement(name)
    if backend != "tensorflow":
        if name not in ("auto", "one-device"):
            raise UsageError(
                f"--strategy {name} is TensorFlow's tf.distribute; the {backend} backend trains on one "
                "device (--strategy auto or one-device), or run with KERAS_BACKEND=tensorflow or jax"
            )
        return Placement(NoStrategy(), "one-device" if name == "one-device" else "default", 1, (first_device(),))
    if name == "multi-worker":
        config = read_tf_config()  # checked before TensorFlow is imported: a clear error, fast
        return _cluster_placement(tf.distribute.MultiWorkerMirroredStrategy(), config)

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "auto":
        if len(gpus) > 1:
            return _mirrored(gpus)
        if gpus:
            return Placement(tf.distribute.OneDeviceStrategy(gpus[0]), "one-device", 1, (gpus[0],))
        device = tf.config.list_logical_devices("CPU")[0].name
        return Placement(tf.distribute.get_strategy(), "default", 1, (device,))
    if name == "one-device":
        device = gpus[0] if gpus else tf.config.list_logical_devices("CPU")[0].name
        return Placement(tf.distribute.OneDeviceStrategy(device), "one-device", 1, (device,))
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return _mirrored(devices, on_cpu=not gpus)


def _mirrored(devices: list[str], on_cpu: bool = False) -> Placement:
    # NCCL, the default all-reduce between GPUs, has no CPU implementation: CPU replicas reduce
    # through one device instead.
    ops = tf.distribute.ReductionToOneDevice() if on_cpu else None
    strategy = tf.distribute.MirroredStrategy(devices, cross_device_ops=ops)
    return Placement(strategy, "mirrored", strategy.num_replicas_in_sync, tuple(devices))


def _cluster_placement(strategy, config: TFConfig) -> Placement:
    """A multi-worker placement: every worker reads its own part of the data, the chief writes."""
    _, workers, index = cluster_process(config)
    task = f"{config.task.type}:{config.task.index}"
    return Placement(
        strategy,
        "multi-worker",
        strategy.num_replicas_in_sync,
        (task,),
        is_chief=is_chief_task(config),
        task=task,
        workers=workers,
        worker_index=index,
    )


def _jax_placement(name: str) -> Placement:
    """The strategy called ``name`` on the JAX backend (see the module docstring)."""
    if name == "multi-worker":
        config = read_tf_config()
        coordinator, workers, index = cluster_process(config)
        jax_parallel.join_cluster(coordinator, workers, index)  # before JAX runs anything
        return _cluster_placement(DataParallel(jax_parallel.devices()), config)
    if name == "mirrored" or (name == "auto" and len(jax_parallel.accelerators()) > 1):
        devices = jax_parallel.devices()
        return Placement(DataParallel(devices), "mirrored", len(devices), tuple(devices))
    return Placement(NoStrategy(), "one-device" if name == "one-device" else "default", 1, (first_device(),))


def gpu_visible() -> bool:
    """Whether the Keras backend sees a GPU."""
    backend = keras_backend()
    if backend == "jax":
        import jax

        return any(device.platform == "gpu" for device in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return bool(tf.config.list_physical_devices("GPU"))


def first_device() -> str:
    """The device a JAX or PyTorch run trains on, by the backend's own name for it."""
    if keras_backend() == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}:{device.id}"
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"
