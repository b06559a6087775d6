#!/usr/bin/env python3
"""Where ``cifarkit train``'s memory goes: the peak resident memory of each phase of a run.

Runs the CLI in this process with its phases wrapped (reading the data, the statistics, building
and compiling the models, the input pipelines, ``fit`` with its validation passes, checkpoints
and backups, the final report's model loads and evaluations); at each phase's start the kernel's
high-water mark is reset (``/proc/self/clear_refs``, Linux), so each line shows that phase's own
peak and the memory left resident after it. Every training call into the compiled step also
prints its seconds, CPU seconds and resident memory.

    python scripts/profile_train_memory.py train alexnet --epochs 1 --limit-train 256 --batch-size 32 \\
        --eval-split 'test[:64]' --data ~/.cache/cifarkit-real/cifar-10-python.tar.gz --no-verify -w /tmp/run

The arguments are ``cifarkit``'s own. Put another checkout first on ``PYTHONPATH`` to profile it.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
import time
from pathlib import Path

_phases: list[list] = [["run", 0.0, time.perf_counter()]]  # [name, peak MB so far, start]


def _status(key: str) -> float:
    return int(re.search(key + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def _enter(name: str) -> None:
    _phases[-1][1] = max(_phases[-1][1], _status("VmHWM"))
    _reset_peak()
    _phases.append([name, 0.0, time.perf_counter()])


def _leave() -> None:
    name, peak, start = _phases.pop()
    peak = max(peak, _status("VmHWM"))
    indent = "  " * len(_phases)
    print(
        f"[memory] {indent}{name}: peak {peak:,.0f} MB, then {_status('VmRSS'):,.0f} MB resident, "
        f"{time.perf_counter() - start:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    _phases[-1][1] = max(_phases[-1][1], peak)
    _reset_peak()


def wrap(module: str, attribute: str, label=None) -> None:
    owner = importlib.import_module(module)
    *path, name = attribute.split(".")
    for part in path:
        owner = getattr(owner, part)
    function = getattr(owner, name)

    @functools.wraps(function)
    def phase(*args, **kwargs):
        _enter(label(args, kwargs) if callable(label) else label or attribute)
        try:
            return function(*args, **kwargs)
        finally:
            _leave()

    setattr(owner, name, phase)


def time_steps() -> None:
    from cifarkit.training import callbacks

    begin, end = callbacks.Progress.on_train_batch_begin, callbacks.Progress.on_train_batch_end
    started = []

    def on_begin(self, batch, logs=None):
        started.append((time.perf_counter(), time.process_time()))
        return begin(self, batch, logs)

    def on_end(self, batch, logs=None):
        wall, cpu = started[-1]
        print(
            f"[memory]   call ending at step {batch + 1}: {time.perf_counter() - wall:.2f} s, "
            f"{time.process_time() - cpu:.2f} CPU-s, {_status('VmRSS'):,.0f} MB resident",
            file=sys.stderr,
            flush=True,
        )
        return end(self, batch, logs)

    callbacks.Progress.on_train_batch_begin, callbacks.Progress.on_train_batch_end = on_begin, on_end


def main() -> None:
    from cifarkit.runtime.tensorflow import prefer_onednn

    prefer_onednn()  # as the CLI does, before TensorFlow loads
    for name in ("open_run_data", "compile_for_training", "run_inputs", "final_report"):
        wrap("cifarkit.training.loop", name)
    wrap("cifarkit.readers.stats", "stats_for")
    wrap("cifarkit.training.report", "load_model")
    wrap(
        "cifarkit.training.report",
        "evaluate_model",
        lambda args, kwargs: f"evaluate_model(ten_crop={kwargs.get('ten_crop', False)}, tta={kwargs.get('tta')})",
    )
    wrap("keras", "Model.fit", "fit")
    wrap("keras", "Model.evaluate", "validation")
    wrap("cifarkit.training.callbacks", "Checkpoints.on_epoch_end", "checkpoints")
    wrap("cifarkit.training.callbacks", "RunBackup.on_epoch_end", "backup")
    time_steps()
    from cifarkit.cli import main as cli

    sys.argv = ["cifarkit", *sys.argv[1:]]
    try:
        cli()
    finally:
        _phases[0][1] = max(_phases[0][1], _status("VmHWM"))
        print(f"[memory] the run's peak after start-up: {_phases[0][1]:,.0f} MB", file=sys.stderr)


if __name__ == "__main__":
    main()
