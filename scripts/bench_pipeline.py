#!/usr/bin/env python3
"""Benchmark cifarkit's input pipeline against the usual per-image tf.data pipeline.

Three contenders read the same uint8 CIFAR-10 training images from memory and produce training
batches of 128 for the paper recipe (resize to 256, random 227x227 crop, flip, PCA colour
jitter, mean subtraction; float32 output):

  per-image      the usual pipeline: from_tensor_slices -> shuffle -> map(resize 256 ->
                 random_crop 227 -> random_flip_left_right -> PCA jitter -> subtract mean,
                 num_parallel_calls=AUTOTUNE) -> batch(128) -> prefetch
  cifarkit-host  cifarkit.readers.pipeline.train_batches(augment_on="host"): shuffled indices, one
                 gather and one crop_and_resize per batch, jitter and mean on the whole batch
  cifarkit-device-host-cost
                 train_batches(augment_on="device"): what the host still does when the
                 accelerator augments (shuffle and ship uint8 batches)

Each contender is timed over whole passes of --images images after one warm-up pass (tf.data
graph building and thread pools excluded); contenders are interleaved and repeated, and the
medians are reported with the ratios. Batches are consumed as tensors (no copy to numpy).

    python ../shared/data/make_cifar10_archive.py ~/.cache/cifarkit-real/cifar-10-python.tar.gz
    python scripts/bench_pipeline.py --source ~/.cache/cifarkit-real/cifar-10-python.tar.gz --no-verify
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DEFAULT_ARCHIVE = Path.home() / ".cache" / "cifarkit-real" / "cifar-10-python.tar.gz"
BATCH = 128
TARGETS = {"cifarkit-host": 2.0, "cifarkit-device-host-cost": 20.0}


def per_image_pipeline(images, labels, stats, crop: int, seed: int):
    """The textbook pipeline, one image at a time in ``map``."""
    import tensorflow as tf

    mean = tf.constant(stats.mean, tf.float32)
    values = tf.constant(stats.eigenvalues, tf.float32)
    vectors = tf.constant(stats.eigenvectors, tf.float32)

    def augment(image, label):
        image = tf.image.resize(tf.cast(image, tf.float32) / 255.0, [256, 256])
        image = tf.image.random_crop(image, [crop, crop, 3])
        image = tf.image.random_flip_left_right(image)
        alpha = tf.random.normal([3], stddev=0.1)
        image = image + tf.linalg.matvec(vectors, alpha * values)
        return image - mean, label

    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.shuffle(len(labels), seed=seed)
    ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def time_pass(ds) -> tuple[float, int]:
    start = time.perf_counter()
    count = 0
    for images, _ in ds:
        count += int(images.shape[0])
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--images", type=int, default=10_240, help="images per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--crop", type=int, default=227)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import tensorflow as tf

    from cifarkit import data
    from cifarkit.augment.recipes import get_recipe, train_transform
    from cifarkit.readers import pipeline
    from cifarkit.readers.stats import stats_for

    source = data.open_data(args.source, verify=not args.no_verify)
    images, labels = source.arrays["train"]
    images, labels = images[: args.images], labels[: args.images]
    source.arrays["train"] = (images, labels)
    source.counts["train"] = len(labels)
    stats = stats_for(data.open_data(args.source, verify=not args.no_verify))
    recipe = get_recipe("paper", args.crop)
    transform = train_transform(recipe, stats)

    contenders = {
        "per-image": lambda: per_image_pipeline(images, labels, stats, args.crop, seed=0),
        "cifarkit-host": lambda: pipeline.train_batches(source, "train", transform, batch_size=BATCH, seed=0),
        "cifarkit-device-host-cost": lambda: pipeline.train_batches(
            source, "train", None, batch_size=BATCH, seed=0, augment_on="device"
        ),
    }
    built = {name: make() for name, make in contenders.items()}
    for ds in built.values():  # warm-up: graph building, thread pools, first allocations
        time_pass(ds)
    rates: dict[str, list[float]] = {name: [] for name in built}
    for repeat in range(args.repeats):
        for name, ds in built.items():
            seconds, count = time_pass(ds)
            rates[name].append(count / seconds)
            print(f"  run {repeat + 1}: {name:<26} {count / seconds:>10,.0f} images/s", flush=True)

    medians = {name: statistics.median(r) for name, r in rates.items()}
    base = medians["per-image"]
    print(
        f"\nTF {tf.__version__}, {os.cpu_count()} cores, batch {BATCH}, crop {args.crop}, "
        f"{len(labels):,} images a pass, median of {args.repeats}"
    )
    print(f"{'contender':<28}{'images/s':>12}{'vs per-image':>14}{'per-round':>11}  target")
    for name, rate in medians.items():
        target = TARGETS.get(name)
        # Each round runs the contenders back to back, so a round's ratio sees the same load.
        per_round = statistics.median(r / b for r, b in zip(rates[name], rates["per-image"]))
        verdict = "" if target is None else f">= {target:g}x {'PASS' if rate / base >= target else 'SHORT'}"
        print(f"{name:<28}{rate:>12,.0f}{rate / base:>13.2f}x{per_round:>10.2f}x  {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"medians": medians, "runs": rates, "images": len(labels)}, indent=2))


if __name__ == "__main__":
    main()
