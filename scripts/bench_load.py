#!/usr/bin/env python3
"""``cifarkit.load`` against the plain reader a user would write, on one TFRecord export, side by
side in one process: images/s and CPU seconds per 1,000 images of full passes over a split.

Contenders (each a ``tf.data.Dataset`` of batches of (uint8 image, int64 label)):

- ``cifarkit.load``: ``cifarkit.load(EXPORT, split, batch_size=B)``;
- ``plain``: ``TFRecordDataset(shards) -> map(parse_single_example + decode_png, parallel) ->
  batch -> prefetch``, the textbook reader with TFDS's feature keys;
- ``tfds.load``: TFDS's own reader on the same folder (an export is a TFDS dataset folder), when
  tensorflow_datasets is installed.

Passes rotate through the contenders (one warm-up pass each first); the figures are medians.

    python scripts/bench_load.py --export /tmp/cifar10-tfrecord --repeats 5

Without ``--export`` the real archive (``~/.cache/cifarkit-real/cifar-10-python.tar.gz``) is
exported once to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARCHIVE = Path("~/.cache/cifarkit-real/cifar-10-python.tar.gz").expanduser()


def _export(tmp: str) -> Path:
    out = Path(tmp) / "cifar10"
    argv = [sys.executable, "-m", "cifarkit", "export", "--source", str(ARCHIVE), "--no-verify"]
    subprocess.run([*argv, "--format", "tfrecord", "--out", str(out), "--quiet"], check=True)
    return out


def plain_reader(export: Path, split: str, batch_size: int):
    import tensorflow as tf

    shards = sorted(str(p) for p in export.rglob(f"*-{split}.tfrecord-*"))
    features = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64)}

    def parse(record):
        example = tf.io.parse_single_example(record, features)
        return tf.io.decode_png(example["image"], channels=3), example["label"]

    ds = tf.data.TFRecordDataset(shards).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def contenders(export: Path, split: str, batch_size: int) -> dict:
    import cifarkit

    made = {
        "cifarkit.load": lambda: cifarkit.load(export, split, batch_size=batch_size, verify=False),
        "plain": lambda: plain_reader(export, split, batch_size),
    }
    try:
        import tensorflow_datasets as tfds

        info = json.loads(next(export.rglob("dataset_info.json")).read_text())
        folder = next(export.rglob("dataset_info.json")).parent

        def tfds_load():
            builder = tfds.builder_from_directory(str(folder))
            return builder.as_dataset(split=split, batch_size=batch_size, as_supervised=True)

        if info.get("name"):
            made["tfds.load"] = tfds_load
    except ImportError:
        pass
    return made


def one_pass(make) -> tuple[int, float, float]:
    start, cpu = time.perf_counter(), time.process_time()
    images = sum(int(y.shape[0]) for _, y in make())
    return images, time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path)
    parser.add_argument("--split", default="train")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        export = args.export or _export(tmp)
        made = contenders(export, args.split, args.batch_size)
        results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in made}
        for make in made.values():
            one_pass(make)  # warm-up: graph tracing, file cache
        for round_ in range(args.repeats):
            names = list(made)
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                results[name].append(one_pass(made[name]))
    rate = {name: statistics.median(n / wall for n, wall, _ in runs) for name, runs in results.items()}
    cpu = {name: statistics.median(1000 * c / n for n, _, c in runs) for name, runs in results.items()}
    print(f"{'contender':<14} {'images/s':>9} {'/ plain':>8} {'CPU s/1k img':>13} {'/ plain':>8}   images/s per pass")
    for name, runs in results.items():
        passes = " ".join(f"{n / wall:,.0f}" for n, wall, _ in runs)
        print(
            f"{name:<14} {rate[name]:>9,.0f} {rate[name] / rate['plain']:>7.2f}x {cpu[name]:>13.3f} "
            f"{cpu[name] / cpu['plain']:>7.2f}x   {passes}"
        )
    # The target: at least 1.0x each other reader's images/s, at most 1.0x its CPU per image.
    for name in (n for n in results if n != "cifarkit.load"):
        print(
            f"cifarkit.load / {name}: {rate['cifarkit.load'] / rate[name]:.2f}x images/s, "
            f"{cpu['cifarkit.load'] / cpu[name]:.2f}x CPU per image"
        )
    print(f"{results['plain'][0][0]:,} images a pass; load {os.getloadavg()[0]:.1f} (1-min average at the end)")


if __name__ == "__main__":
    main()
