"""TensorFlow settings that are read once, when TensorFlow is loaded, so cifarkit makes them first.

oneDNN kernels on x86 CPUs: TensorFlow's x86 wheels switch them on by default only on CPUs with
AVX-512 neural-network extensions (VNNI, BF16, AMX); everywhere else its own Eigen kernels run,
and their convolution gradients are slow. On the 2-core AVX2 machine of docs/BENCHMARKS.md a
training step of ``alexnet-cifar`` spent 4x as long in ``Conv2DBackpropInput`` as in the forward
convolution, and took 1.8x as long as the same step with oneDNN. cifarkit's commands therefore
turn oneDNN on, unless ``TF_ENABLE_ONEDNN_OPTS`` is already set (``=0`` keeps TensorFlow's own
kernels). Results can differ from Eigen's in the last bits (a different summation order).

TensorFlow's start-up banners on the command line: while it loads, TensorFlow writes lines
straight to the process's stderr (oneDNN is on, no CUDA driver, which CPU instructions it was
built for), before its logging is set up, so ``TF_CPP_MIN_LOG_LEVEL`` cannot hide them; its
first look for a GPU adds a ``cuInit`` error on machines without one. A command that fails
would print them above its one-line error, and ``cifarkit train`` above its progress bars. The
commands therefore import TensorFlow with those known lines filtered out (anything else it
prints is passed on) and set ``TF_CPP_MIN_LOG_LEVEL=2`` (errors only), unless the user has set
``TF_CPP_MIN_LOG_LEVEL``: then TensorFlow prints exactly what it would print anyway.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import platform
import sys
import tempfile
from pathlib import Path

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
LOG_LEVEL_VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
QUIET_LOG_LEVEL = "2"  # TensorFlow's C++ errors only, no info or warning lines

# What TensorFlow 2.x writes to stderr on every start, whatever the log level (substrings).
STARTUP_BANNERS = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "oneDNN custom operations are on",
    "Could not find cuda drivers on your machine",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions:",
    "failed call to cuInit",
)


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


# x86's AVX-512 BF16 and AMX, Arm's BF16 extension: bfloat16 products in hardware.
BFLOAT16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_has_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether the CPU computes in bfloat16 natively; None where that cannot be told (not Linux).

    Without it oneDNN emulates bfloat16, and mixed precision runs far slower than float32: a
    training step of ``alexnet-cifar`` took 19x as long on the AVX2 machine of docs/BENCHMARKS.md.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            flags.update(value.split())
    return bool(flags & BFLOAT16_CPU_FLAGS) if flags else None


def quiet_tensorflow_startup() -> None:
    """For the command line: keep TensorFlow's start-up banners and info lines off the terminal.

    Takes effect when TensorFlow is first imported (commands that never need it stay fast), and
    not at all if the user set ``TF_CPP_MIN_LOG_LEVEL`` or TensorFlow is already loaded.
    """
    if "tensorflow" in sys.modules or LOG_LEVEL_VARIABLE in os.environ:
        return
    os.environ[LOG_LEVEL_VARIABLE] = QUIET_LOG_LEVEL
    if not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as Python would, once, and loads it with its banners filtered."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # one import only; also stops find_spec below finding us
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):  # anything else a loader offers (resources, source) is the real one's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr(STARTUP_BANNERS):
            self._loader.exec_module(module)
            # Looking for GPUs logs too (cuInit). It only lists physical devices, so memory
            # growth, logical devices and thread pools can still be configured afterwards.
            module.config.list_physical_devices()
        module.__loader__ = module.__spec__.loader = self._loader


@contextlib.contextmanager
def filtered_stderr(banners: tuple[str, ...]):
    """Collect what is written to file descriptor 2 (by C++ code as well as Python), then pass
    on every line that contains none of ``banners``; everything if the block raised."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    failed = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            failed = True
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = [line for line in lines if failed or not any(banner in line for banner in banners)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
