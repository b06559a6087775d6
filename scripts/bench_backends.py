#!/usr/bin/env python3
"""Images/s of one CPU training step of the trainer's model on each Keras backend, side by side.

The model is what ``cifarkit train alexnet-cifar -m width=0.5 --augment-on device`` trains:
uint8 images -> the cifar recipe's Augmentation layer -> alexnet-cifar at width 0.5 -> logits,
SGD with momentum and weight decay, compiled by cifarkit.training.compile_for_training with each
backend's defaults (TensorFlow: no XLA on a CPU; JAX: jit; PyTorch: eager, one step per call).
Batches of 128 uint8 images come from cifarkit.readers.feed (the bundled sample's 200 training images).
Each backend runs in its own process (Keras fixes its backend at import), JAX and PyTorch with
TensorFlow blocked; after ``--warmup`` untimed steps, ``--rounds`` rounds of ``--steps`` steps
are timed (each step ends when its loss is on the host), and the median round is reported.

    python scripts/bench_backends.py [--backends tensorflow,jax,torch] [--rounds 5 --steps 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 128
WIDTH = 0.5


def child(backend: str, warmup: int, rounds: int, steps: int) -> dict:
    import keras
    import numpy as np

    from cifarkit.readers.feed import Feed
    from cifarkit.readers.stats import stats_for
    from cifarkit.runtime.strategy import make_strategy
    from cifarkit.training import TrainConfig, compile_for_training, open_run_data, resolve

    sample = ROOT / "cifarkit" / "sample" / "cifar-10-sample-python.tar.gz"
    config = resolve(
        TrainConfig(
            model="alexnet-cifar",
            workdir="/tmp/bench-backends",
            data=str(sample),
            model_options={"width": WIDTH},
            batch_size=BATCH,
            augment_on="device",
            steps_per_execution=1,
        )
    )
    data = open_run_data(config)
    stats = stats_for(data.source, "train")
    compiled = compile_for_training(config, make_strategy("auto"), data, stats, steps=1)
    images, labels = data.source.arrays["train"]
    batches = Feed(images, labels, batch_size=BATCH, seed=0).epochs()
    model = compiled.train_model
    for _ in range(warmup):
        model.train_on_batch(*next(batches))
    rates = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            float(np.asarray(model.train_on_batch(*next(batches))[0]))  # the loss on the host
        rates.append(steps * BATCH / (time.perf_counter() - start))
    batches.close()
    return {
        "backend": backend,
        "keras": keras.__version__,
        "jit": compiled.jit,
        "rates": rates,
        "images_per_second": statistics.median(rates),
        "threads": os.cpu_count(),
    }


def run(backend: str, args) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONPATH": str(ROOT)}
    child_argv = [__file__, "--child", backend, "--warmup", str(args.warmup), "--rounds", str(args.rounds)]
    child_argv += ["--steps", str(args.steps)]
    code = (
        "import sys\n"
        + ("sys.modules['tensorflow'] = None\n" if backend != "tensorflow" else "")
        + f"sys.argv = {child_argv!r}\n"
        + f"import runpy; runpy.run_path({__file__!r}, run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        return {"backend": backend, "error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(lines[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="tensorflow,jax,torch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.warmup, args.rounds, args.steps)))
        return 0
    results = [run(backend, args) for backend in args.backends.split(",")]
    print(
        f"alexnet-cifar width {WIDTH}, batch {BATCH}, uint8 -> device augmentation -> network, "
        f"median of {args.rounds} rounds of {args.steps} steps"
    )
    print("| backend | jit | images/s (median) | rounds |")
    print("|---|---|---:|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['backend']} | | failed: {r['error']} | |")
        else:
            print(
                f"| {r['backend']} | {r['jit']} | {r['images_per_second']:,.0f} | "
                f"{', '.join(f'{x:,.0f}' for x in r['rates'])} |"
            )
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
