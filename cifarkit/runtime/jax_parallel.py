"""Data parallelism on Keras's JAX backend, through ``keras.distribution`` (no TensorFlow).

:class:`DataParallel` puts :class:`keras.distribution.DataParallel` behind what the trainer asks of
a ``tf.distribute`` strategy (``scope()`` and ``num_replicas_in_sync``): the variables built in
its scope are replicated on every device of a one-axis mesh, each global batch is split along
that axis, and the gradients are reduced across the devices inside the compiled step, so a step
computes the loss and gradient of the whole global batch, as one device would.

Keras distributes the batches and steps only while the distribution is current, so ``fit``
runs inside :meth:`DataParallel.scope` too (:meth:`cifarkit.runtime.strategy.Placement.fitting`).
Several processes (``--strategy multi-worker``) first join one JAX cluster
(:func:`join_cluster`, ``keras.distribution.initialize``); each then feeds its own slice of every
global batch (:class:`cifarkit.readers.feed.Feed` ``part``/``parts``), which Keras assembles into
the global batch (``jax.make_array_from_process_local_data``), so Keras's own sharding of input
(tf.data only) stays off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import UsageError
from .lazy import keras

if TYPE_CHECKING:
    from ..metadata.tf_config import TFConfig

# Task types of a cluster that train, in the order they are numbered: TensorFlow numbers the
# chief 0 and the workers after it (multi_worker_util.id_in_cluster); JAX processes the same.
CLUSTER_ORDER = ("chief", "worker")


class DataParallel:
    """``keras.distribution.DataParallel`` over ``devices`` (Keras's names: "gpu:0", "cpu:1")."""

    def __init__(self, devices: list[str]):
        # Keras's input sharding handles tf.data only; the feed hands each process its slice.
        self.distribution = keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        self.num_replicas_in_sync = len(devices)

    def scope(self):
        return self.distribution.scope()


def devices() -> list[str]:
    """Every device of Keras's default kind: the GPUs (or TPUs), else the CPU devices (one,
    unless ``XLA_FLAGS=--xla_force_host_platform_device_count=N``); all processes' once joined."""
    return list(keras.distribution.list_devices())


def accelerators() -> list[str]:
    """The GPUs or TPUs, without falling back to the CPU."""
    return [name for name in devices() if not name.startswith("cpu")]


def cluster_process(config: TFConfig) -> tuple[str, int, int]:
    """(the coordinator's address, the number of processes, this process's number) of the cluster
    ``$TF_CONFIG`` describes: the chief, or else worker 0, coordinates on its own address."""
    members = [address for kind in CLUSTER_ORDER for address in config.cluster.get(kind, [])]
    kind, index = config.task.type, config.task.index
    before = len(config.cluster.get("chief", [])) if kind == "worker" else 0
    return members[0], len(members), before + index


def join_cluster(coordinator: str, processes: int, process: int) -> None:
    """Join the JAX cluster (before JAX runs anything); a coordinator that cannot be reached, or
    a process started after JAX ran, is one line."""
    try:
        keras.distribution.initialize(coordinator, processes, process)
    except (RuntimeError, ValueError) as exc:  # jaxlib's XlaRuntimeError is a RuntimeError
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"process {process} of {processes} could not join the JAX cluster coordinated at {coordinator}: {why}"
        ) from None
