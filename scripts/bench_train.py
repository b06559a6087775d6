#!/usr/bin/env python3
"""Training throughput of cifarkit's trainer against a plain ``model.fit`` on numpy arrays.

Same network (``--model``, by default ``alexnet-cifar`` at ``--width``), same batch, same real
images. The figure of record is images per CPU-second (training throughput per unit of the
machine used, so runs on a busy or a bigger machine compare); the ratio to the plain fit is
printed beside it, with no target. Each
contender runs in its own process, because TensorFlow fixes some settings when it loads:

  plain             a plain Keras script: the model, ``compile`` with Keras defaults
                    (``steps_per_execution=1``, ``jit_compile="auto"``), ``fit(x, y,
                    batch_size=128)`` on float32 numpy arrays standardised up front; TensorFlow as
                    installed (this is the baseline of the ratio)
  plain-onednn      the same script with ``TF_ENABLE_ONEDNN_OPTS=1``: shows how much of the gain
                    is TensorFlow's oneDNN kernels alone (a reference row, not a contender)
  cifarkit          what ``cifarkit train`` runs: the process set up as the CLI does
                    (``cifarkit.runtime.tensorflow.prefer_onednn``), the trainer's compiled model
                    (``compile_for_training``: ``steps_per_execution=8``, no XLA on CPU) fed by
                    ``cifarkit.readers.pipeline.train_batches`` with the evaluation transform
                    (no augmentation, so both sides do the same arithmetic)
  cifarkit-augment  the same with the recipe's real augmentation (random crop + flip on the host)

Each process trains one warm-up epoch (tracing, compiling, pipeline start) and then ``--epochs``
timed epochs over ``--images`` images, and reports the median images/s and the images per
CPU-second it used. Processes run interleaved, one round after another (plain, plain-onednn,
cifarkit, cifarkit-augment, plain, ...), so a slow phase of a noisy machine hits every
contender; the ratio is taken per round against that round's plain run, and medians are
reported.

Each epoch is also split in two: the seconds outside the training steps (from the epoch's start
to its first step, where Keras replaces the dataset iterator, and from its last step to its end)
and the images/s within the steps. In TensorFlow 2.21 deleting an autotuned tf.data iterator
waits for the autotuning thread's next wake-up (5.11 s, 10.23 s, 20.47 s, ... after the iterator
was made), so a plain fit loses seconds at every epoch boundary; cifarkit's pipelines run without
autotuning (``cifarkit.data.without_autotune``) and lose none. How much the plain fit loses
depends on where its epoch ends in that schedule, so it changes with ``--images``.

    python scripts/bench_train.py --images 5120 --epochs 2 --rounds 5 --width 0.5 [--data PATH]
    python scripts/bench_train.py --model whitenet --batch 1024 --images 10240 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REAL_ARCHIVE = Path.home() / ".cache" / "cifarkit-real" / "cifar-10-python.tar.gz"
DEFAULT_BATCH = 128
DEFAULT_MODEL = "alexnet-cifar"
CONTENDERS = ("plain", "plain-onednn", "cifarkit", "cifarkit-augment")
BASELINE = "plain"
ONEDNN = "TF_ENABLE_ONEDNN_OPTS"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall and CPU time per epoch, and how much of it lies outside the training steps: from
        the epoch's start to its first step (where Keras replaces the dataset iterator), and from
        the last step to the epoch's end."""

        def __init__(self):
            super().__init__()
            self.seconds, self.cpu, self.boundary = [], [], []

        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.cpu_start = time.perf_counter(), _cpu_seconds()
            self.first_step = self.last_step = None

        def on_train_batch_begin(self, batch, logs=None):
            if self.first_step is None:
                self.first_step = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.last_step = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # epoch-end metrics have synchronised the step
            end = time.perf_counter()
            self.seconds.append(end - self.start)
            self.cpu.append(_cpu_seconds() - self.cpu_start)
            self.boundary.append((self.first_step - self.start) + (end - self.last_step))

    return EpochTimer()


def _result(timer, images: int) -> dict:
    seconds, cpu, boundary = timer.seconds[1:], timer.cpu[1:], timer.boundary[1:]  # the first epoch is the warm-up
    steps_only = [s - b for s, b in zip(seconds, boundary)]
    return {
        "images_per_second": images / statistics.median(seconds),
        "images_per_cpu_second": images / statistics.median(cpu),
        "boundary_seconds": statistics.median(boundary),
        "step_images_per_second": images / statistics.median(steps_only),
    }


def model_options(args) -> dict:
    """``--width`` is alexnet-cifar's option; other models train at their registered size."""
    return {"width": args.width} if args.model == DEFAULT_MODEL else {}


def build_cifarkit(args, *, augment: bool):
    """What ``cifarkit train`` builds: (compiled Keras model, batched dataset, steps per epoch, note)."""
    from cifarkit.runtime.tensorflow import prefer_onednn

    prefer_onednn()  # what `cifarkit train` does before TensorFlow loads
    from cifarkit.augment.recipes import eval_transform, train_transform
    from cifarkit.readers.pipeline import train_batches
    from cifarkit.readers.stats import stats_for
    from cifarkit.runtime.strategy import make_strategy
    from cifarkit.training import TrainConfig, compile_for_training, open_run_data, resolve

    config = resolve(
        TrainConfig(
            model=args.model,
            workdir="unused",
            data=str(args.data),
            verify=False,
            batch_size=args.batch,
            limit_train=args.images,
            model_options=model_options(args),
            # Unset in bench_train's own runs: the model's defaults, as `cifarkit train` takes them.
            optimizer=getattr(args, "optimizer", None),
            precision=getattr(args, "precision", None),
        )
    )
    run_data = open_run_data(config)
    stats = stats_for(run_data.source, "train")
    steps = run_data.source.counts["train"] // args.batch
    compiled = compile_for_training(config, make_strategy("auto"), run_data, stats, steps)
    recipe = config.recipe
    if augment:
        transform = train_transform(recipe, stats)
    else:
        centre = eval_transform(recipe, stats)
        transform = lambda images, seed: centre(images)  # noqa: E731
    ds = train_batches(run_data.source, "train", transform, batch_size=args.batch, seed=0, augment_on=config.augment_on)
    note = (
        f"steps_per_execution={compiled.steps_per_execution}, jit={config.jit}, augment_on={config.augment_on}, "
        f"{config.optimizer}, {config.precision}"
    )
    return compiled.train_model, ds, steps, note


def run_cifarkit(args, *, augment: bool) -> dict:
    model, ds, steps, note = build_cifarkit(args, augment=augment)
    timer = epoch_timer()
    model.fit(ds, epochs=1 + args.epochs, callbacks=[timer], verbose=0, shuffle=False)
    return _result(timer, steps * args.batch) | {"note": note}


def run_plain(args) -> dict:
    import keras
    import numpy as np

    from cifarkit.data import open_data
    from cifarkit.models import create_model
    from cifarkit.readers.stats import stats_for

    source = open_data(args.data, verify=False)
    images, labels = source.arrays["train"]
    images, labels = images[: args.images], labels[: args.images]
    stats = stats_for(source, "train")
    # The same standardisation the recipe applies, done once up front, as a plain script would.
    x = ((images.astype(np.float32) / 255.0 - np.float32(stats.mean)) / np.float32(stats.std)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = create_model(args.model, num_classes=len(source.class_names), **model_options(args))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    timer = epoch_timer()
    model.fit(x, labels, batch_size=args.batch, epochs=1 + args.epochs, callbacks=[timer], verbose=0)
    return _result(timer, len(labels)) | {"note": f"jit_compile={model.jit_compile}"}


def run_one(args) -> None:
    """Inside a contender's process: train, then write the figures as JSON."""
    if args.contender == "cifarkit" or args.contender == "cifarkit-augment":
        result = run_cifarkit(args, augment=args.contender == "cifarkit-augment")
    else:
        result = run_plain(args)
    result[ONEDNN] = os.environ.get(ONEDNN)
    Path(args.result).write_text(json.dumps(result))


def launch(args, name: str, result: Path) -> dict:
    env = dict(os.environ)
    env.pop(ONEDNN, None)  # the plain script runs TensorFlow as installed
    if name == "plain-onednn":
        env[ONEDNN] = "1"
    command = [
        sys.executable,
        __file__,
        "--contender",
        name,
        "--result",
        str(result),
        "--data",
        str(args.data),
        "--images",
        str(args.images),
        "--epochs",
        str(args.epochs),
        "--width",
        str(args.width),
        "--model",
        args.model,
        "--batch",
        str(args.batch),
    ]
    proc = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5120, help="training images per epoch (default: 5120)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per process, after one warm-up epoch")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default: 5)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registry model (default: {DEFAULT_MODEL})")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"batch size (default: {DEFAULT_BATCH})")
    parser.add_argument("--width", type=float, default=0.5, help="alexnet-cifar width multiplier (default: 0.5)")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders (default: all)")
    parser.add_argument("--data", type=Path, default=REAL_ARCHIVE, help=f"CIFAR-10 source (default: {REAL_ARCHIVE})")
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        return run_one(args)
    if args.images < args.batch or args.epochs < 1 or args.rounds < 1:
        sys.exit("--images must be at least --batch, --epochs and --rounds at least 1")
    if not args.data.exists():
        sys.exit(f"{args.data}: no such dataset; pass --data (see ../shared/data/README.md)")
    names = [n for n in CONTENDERS if n in args.only.split(",")]
    if BASELINE not in names:
        names.insert(0, BASELINE)

    import tempfile

    size = f" width {args.width}" if model_options(args) else ""
    print(
        f"{args.model}{size}, batch {args.batch}, {args.images:,} images/epoch, {args.epochs} timed epochs "
        f"after a warm-up epoch per process, {args.rounds} interleaved rounds; data {args.data}",
        flush=True,
    )
    runs: dict[str, list[dict]] = {n: [] for n in names}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.rounds + 1):
            for name in names:
                figures = launch(args, name, Path(tmp) / f"{name}-{round_}.json")
                runs[name].append(figures)
                print(
                    f"  [{round_}/{args.rounds}] {name:<17} {figures['images_per_second']:7.1f} images/s  "
                    f"{figures['images_per_cpu_second']:6.1f} images/CPU-s  {figures['boundary_seconds']:5.2f} s "
                    f"outside steps/epoch  {figures['step_images_per_second']:6.1f} images/s within steps  "
                    f"({figures['note']}; "
                    f"{ONEDNN}={figures[ONEDNN]})",
                    flush=True,
                )
    base = [r["images_per_second"] for r in runs[BASELINE]]
    base_steps = [r["step_images_per_second"] for r in runs[BASELINE]]
    print(
        f"\n{'contender':<17} {'images/s':>9} {'min-max':>13} {'img/CPU-s':>10} {'ratio of medians':>17} "
        f"{'median ratio':>13} {'s outside steps':>16} {'within steps':>13} {'ratio':>6}"
    )
    ratios = {}  # name -> (median per-round ratio over whole epochs, the same within the steps)
    for name in names:
        rates = [r["images_per_second"] for r in runs[name]]
        per_cpu = statistics.median(r["images_per_cpu_second"] for r in runs[name])
        boundary = statistics.median(r["boundary_seconds"] for r in runs[name])
        steps = [r["step_images_per_second"] for r in runs[name]]
        ratios[name] = (
            statistics.median(a / b for a, b in zip(rates, base)),
            statistics.median(a / b for a, b in zip(steps, base_steps)),
        )
        print(
            f"{name:<17} {statistics.median(rates):9.1f} {min(rates):6.0f}-{max(rates):<6.0f} {per_cpu:10.1f} "
            f"{statistics.median(rates) / statistics.median(base):16.2f}x {ratios[name][0]:12.2f}x "
            f"{boundary:16.2f} {statistics.median(steps):13.1f} {ratios[name][1]:5.2f}x"
        )
    if "cifarkit" in ratios:
        # Both, because the plain fit's loss at epoch boundaries depends on the epoch's length.
        ratio, step_ratio = ratios["cifarkit"]
        per_cpu = {n: statistics.median(r["images_per_cpu_second"] for r in runs[n]) for n in (BASELINE, "cifarkit")}
        print(
            f"\nimages per CPU-second: cifarkit {per_cpu['cifarkit']:.1f}, plain model.fit {per_cpu[BASELINE]:.1f}; "
            f"cifarkit against plain (medians of per-round ratios): {ratio:.2f}x over whole epochs, "
            f"{step_ratio:.2f}x within the steps"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
