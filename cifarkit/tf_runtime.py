"""TensorFlow settings that are read once, when TensorFlow is loaded, so cifarkit makes them first.

oneDNN kernels on x86 CPUs: TensorFlow's x86 wheels switch them on by default only on CPUs with
AVX-512 neural-network extensions (VNNI, BF16, AMX); everywhere else its own Eigen kernels run,
and their convolution gradients are slow. On the 2-core AVX2 machine of docs/BENCHMARKS.md a
training step of ``alexnet-cifar`` spent 4x as long in ``Conv2DBackpropInput`` as in the forward
convolution, and took 1.8x as long as the same step with oneDNN. cifarkit's commands therefore
turn oneDNN on, unless ``TF_ENABLE_ONEDNN_OPTS`` is already set (``=0`` keeps TensorFlow's own
kernels). Results can differ from Eigen's in the last bits (a different summation order).
"""

from __future__ import annotations

import os
import platform
import sys

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"


def prefer_onednn() -> None:
    """Ask for oneDNN's CPU kernels on x86, unless the user chose, or TensorFlow is already loaded."""
    if "tensorflow" in sys.modules:  # too late: the choice was made when it loaded
        return
    if platform.machine().lower() in ("x86_64", "amd64"):
        os.environ.setdefault(ONEDNN_VARIABLE, "1")


def onednn_state() -> str:
    """For reports: what the process asked TensorFlow for."""
    value = os.environ.get(ONEDNN_VARIABLE)
    return "TensorFlow's default for this CPU" if value is None else f"{ONEDNN_VARIABLE}={value}"
