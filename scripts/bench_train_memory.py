#!/usr/bin/env python3
"""Peak memory and step time of ``cifarkit train alexnet``: two versions side by side, and a plain
``model.fit`` of the same network and batch.

  before  ``cifarkit train`` of another commit (``--before``, extracted with ``git archive`` into
          a temporary folder put first on ``PYTHONPATH``)
  after   ``cifarkit train`` of this checkout, or of the commit ``--after`` names
  plain   a plain Keras script: the registry's ``alexnet``, SGD with momentum 0.9, ``fit`` on the
          same images resized to 227x227 up front (float32 in [0, 1]); TensorFlow as installed

Each run is a fresh process; its peak resident memory is the kernel's (``ru_maxrss`` from
``wait4``), which counts everything: TensorFlow, the data, training, the checkpoints, the final
report's evaluations (ten-crop included). The step time is the last epoch's training seconds (the
first also traces and compiles) over its steps, and its CPU seconds are the whole process's over
all steps, since the machine may be shared. One process runs at a time; rounds alternate the
contenders, and the load average is printed beside each run.

    python scripts/bench_train_memory.py --before 3b112f5 --batch 32 --batch 128 --images 256 --epochs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = Path("~/.cache/cifarkit-real/cifar-10-python.tar.gz").expanduser()
EVAL_SPLIT = "test[:64]"
CONTENDERS = ("before", "after", "plain")
GB = 1e9

PLAIN = """
import json, sys, time
import keras, numpy as np, tensorflow as tf
from cifarkit.data import open_data
from cifarkit.models import create_model
data, images, batch, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
x, y = open_data(data, verify=False).arrays["train"]
x = tf.image.resize(x[:images].astype("float32") / 255.0, [227, 227]).numpy()
keras.utils.set_random_seed(0)
model = create_model("alexnet", num_classes=10)
model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
seconds = []
class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): seconds.append(time.perf_counter() - self.start)
model.fit(x, y[:images], batch_size=batch, epochs=epochs, callbacks=[Timer()], verbose=0)
print(json.dumps({"epoch_seconds": seconds}))
"""


def _run(argv: list[str], checkout: Path) -> tuple[subprocess.CompletedProcess, float, float, float]:
    """(the finished process, peak RSS in bytes, CPU seconds, wall seconds): its own, from wait4.
    It runs in ``checkout``, first on its path (``python -m`` puts the working folder before
    ``PYTHONPATH``)."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, cwd=checkout)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        done = subprocess.CompletedProcess(argv, proc.returncode, out.read().decode(), err.read().decode())
    return done, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, time.perf_counter() - start


def train_argv(args, batch: int, workdir: Path) -> list[str]:
    options = {
        "--epochs": args.epochs,
        "--limit-train": args.images,
        "--batch-size": batch,
        "--eval-split": EVAL_SPLIT,
        "--data": args.data,
        "--workdir": workdir,
    }
    return [sys.executable, "-m", "cifarkit", "train", "alexnet", "--no-verify"] + [
        str(part) for pair in options.items() for part in pair
    ]


def run_train(args, checkout: Path, batch: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-train-memory-") as scratch:
        done, peak, cpu, wall = _run(train_argv(args, batch, Path(scratch) / "run"), checkout)
        if done.returncode:
            raise SystemExit(f"{checkout}: train failed: {done.stderr.strip()[-600:]}")
        with open(Path(scratch) / "run" / "history.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    said = [line for line in done.stderr.splitlines() if line.startswith("memory:")]
    return figures(args, batch, [float(r["train_seconds"]) for r in rows], peak, cpu, wall, said[0] if said else "")


def run_plain(args, batch: int) -> dict:
    argv = [sys.executable, "-c", PLAIN, str(args.data), str(args.images), str(batch), str(args.epochs)]
    done, peak, cpu, wall = _run(argv, ROOT)
    if done.returncode:
        raise SystemExit(f"plain fit failed: {done.stderr.strip()[-600:]}")
    return figures(args, batch, json.loads(done.stdout.splitlines()[-1])["epoch_seconds"], peak, cpu, wall, "")


def figures(args, batch: int, epoch_seconds: list[float], peak: float, cpu: float, wall: float, said: str) -> dict:
    steps = args.images // batch
    return {
        "peak_gb": peak / GB,
        "step_seconds": epoch_seconds[-1] / steps,
        "cpu_seconds_per_step": cpu / (steps * args.epochs),
        "wall_seconds": wall,
        "said": said,
    }


def extract(commit: str, into: Path) -> Path:
    into.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the commit to compare with (any git revision)")
    parser.add_argument("--after", help="a commit to measure instead of the checkout as it is")
    parser.add_argument("--batch", type=int, action="append", help="batch size; repeatable (default: 32)")
    parser.add_argument("--images", type=int, default=256, help="training images (default: 256)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs; the last one is timed (default: 2)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders")
    parser.add_argument("--data", type=Path, default=ARCHIVE)
    args = parser.parse_args()
    batches = args.batch or [32]
    names = [n for n in CONTENDERS if n in args.only.split(",")]
    label = {
        name: _short(getattr(args, name)) if getattr(args, name) else "this checkout" for name in ("before", "after")
    }
    print(
        f"alexnet, {args.images} training images, {args.epochs} epochs, eval {EVAL_SPLIT}; before = "
        f"{label['before']}, after = {label['after']}; {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-train-memory-") as scratch:
        trees = {"before": extract(args.before, Path(scratch) / "before")}
        trees["after"] = extract(args.after, Path(scratch) / "after") if args.after else ROOT
        for batch in batches:
            for round_ in range(1, args.rounds + 1):
                for name in names:
                    load = os.getloadavg()[0]
                    result = run_plain(args, batch) if name == "plain" else run_train(args, trees[name], batch)
                    print(
                        f"batch {batch:>4} [{round_}/{args.rounds}] {name:<7} peak {result['peak_gb']:5.2f} GB  "
                        f"{result['step_seconds']:6.2f} s/step (last epoch)  {result['cpu_seconds_per_step']:6.2f} "
                        f"CPU-s/step (whole process)  {result['wall_seconds']:6.1f} s wall  load {load:.1f} before",
                        flush=True,
                    )
                    if result["said"]:
                        print(f"    it said: {result['said']}", flush=True)


def _short(revision: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", revision], capture_output=True, text=True, check=True
    ).stdout.strip()


if __name__ == "__main__":
    main()
