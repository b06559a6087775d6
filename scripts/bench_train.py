"""Training throughput of cifarkit's trainer against a plain ``model.fit`` on numpy arrays.

Same network (``alexnet-cifar`` at ``--width``), same batch (128), same images. Augmentation is
*excluded from both* for the ratio: the cifarkit path runs its tf.data pipeline with the recipe's
evaluation transform (uint8 batches gathered from memory, standardised on the host), the plain
path gets the same images already standardised as float32 numpy arrays. The cifarkit path with
its real augmentation (random crop + flip, on the host) is measured as well, so its cost shows.

cifarkit path: ``cifarkit.train.compile_for_training`` (the trainer's own model, optimizer, loss,
metrics, ``steps_per_execution``), ``cifarkit.pipeline.train_batches``, ``fit`` on the dataset;
with and without ``--jit``. Plain path: ``keras`` defaults (``steps_per_execution=1``,
``jit_compile="auto"``), ``fit(x, y, batch_size=128)``.

Each measurement is one epoch over ``--images`` images; the first epoch (tracing, compiling,
pipeline warm-up) is dropped and the median of the next ``--repeats`` epochs is reported.

    python scripts/bench_train.py --images 10240 --repeats 3 --width 0.5 [--data PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REAL_ARCHIVE = Path.home() / ".cache" / "cifarkit-real" / "cifar-10-python.tar.gz"
BATCH = 128
MODEL = "alexnet-cifar"


def epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # epoch-end metrics have synchronised the step
            self.seconds.append(time.perf_counter() - self.start)

    return EpochTimer()


def images_per_second(timer, images: int) -> float:
    return images / statistics.median(timer.seconds[1:])


def cifarkit_path(args, data_path: Path, *, jit: bool, augment: bool) -> float:
    from cifarkit.pipeline import train_batches
    from cifarkit.recipes import eval_transform, get_recipe, train_transform
    from cifarkit.stats import stats_for
    from cifarkit.strategy import make_strategy
    from cifarkit.train import TrainConfig, compile_for_training, open_run_data, resolve

    config = resolve(TrainConfig(model=MODEL, workdir="unused", data=str(data_path), verify=False, batch_size=BATCH,
                                 limit_train=args.images, model_options={"width": args.width}, jit=jit,
                                 augment_on="host"))  # fmt: skip
    data = open_run_data(config)
    stats = stats_for(data.source, "train")
    steps = data.source.counts["train"] // BATCH
    compiled = compile_for_training(config, make_strategy("auto"), data, stats, steps)
    recipe = get_recipe(config.recipe)
    if augment:
        transform = train_transform(recipe, stats)
    else:
        centre = eval_transform(recipe, stats)
        transform = lambda images, seed: centre(images)  # noqa: E731
    ds = train_batches(data.source, "train", transform, batch_size=BATCH, seed=0, augment_on="host")
    timer = epoch_timer()
    compiled.train_model.fit(ds, epochs=1 + args.repeats, callbacks=[timer], verbose=0, shuffle=False)
    return images_per_second(timer, steps * BATCH)


def plain_path(args, data_path: Path) -> tuple[float, str]:
    import keras
    import numpy as np

    from cifarkit.data import open_data
    from cifarkit.models import create_model
    from cifarkit.stats import stats_for

    source = open_data(data_path, verify=False)
    images, labels = source.arrays["train"]
    images, labels = images[: args.images], labels[: args.images]
    stats = stats_for(source, "train")
    # The same standardisation the recipe applies, done once up front, as a plain script would.
    x = ((images.astype(np.float32) / 255.0 - np.float32(stats.mean)) / np.float32(stats.std)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = create_model(MODEL, num_classes=len(source.class_names), width=args.width)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])  # fmt: skip
    timer = epoch_timer()
    model.fit(x, labels, batch_size=BATCH, epochs=1 + args.repeats, callbacks=[timer], verbose=0)
    steps = len(labels) // BATCH + (len(labels) % BATCH > 0)
    return images_per_second(timer, len(labels)) if steps else 0.0, f"jit_compile={model.jit_compile}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10_240, help="training images per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    parser.add_argument("--width", type=float, default=0.5, help="alexnet-cifar width multiplier")
    parser.add_argument("--data", type=Path, default=None, help=f"CIFAR-10 source (default: {REAL_ARCHIVE} if present)")
    args = parser.parse_args()
    if args.images < BATCH or args.repeats < 1:
        sys.exit(f"--images must be at least {BATCH} and --repeats at least 1")
    data_path = args.data or REAL_ARCHIVE
    if not data_path.exists():
        sys.exit(f"{data_path}: no such dataset; pass --data")

    import tensorflow as tf

    device = "GPU" if tf.config.list_physical_devices("GPU") else f"CPU ({tf.config.threading.get_inter_op_parallelism_threads() or 'all'} threads)"
    print(f"{MODEL} width {args.width}, batch {BATCH}, {args.images:,} images/epoch, median of {args.repeats} "
          f"epochs after a warm-up epoch, on {device}; data {data_path}")  # fmt: skip
    plain, plain_note = plain_path(args, data_path)
    rows = [("plain keras fit(numpy), no augmentation", plain, plain_note)]
    for jit in (False, True):
        rate = cifarkit_path(args, data_path, jit=jit, augment=False)
        rows.append((f"cifarkit trainer, no augmentation, jit={'on' if jit else 'off'}", rate, "steps_per_execution=8"))
    rate = cifarkit_path(args, data_path, jit=False, augment=True)
    rows.append(("cifarkit trainer, crop+flip on host, jit=off", rate, "steps_per_execution=8"))
    width = max(len(r[0]) for r in rows)
    for name, rate, note in rows:
        print(f"{name:<{width}}  {rate:>8,.0f} images/s  {rate / plain:5.2f}x plain  ({note})")


if __name__ == "__main__":
    main()
