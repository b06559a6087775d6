#!/usr/bin/env python3
"""Benchmark squaring photo-sized JPEGs for the pipeline: full decode then square, against the
fused read that decodes only the central square (cifarkit.readers.image_decode.decode_squared).

The script makes N JPEGs (smooth scenes with a little noise, 480x360 to 800x600, quality 90, as
scripts/bench_export.py's photo case) and holds their bytes in memory, so the figures are decode
and resize alone, not the disk. Each way runs as a tf.data map over all N, one image at a time
(num_parallel_calls=1: the cost per image, not how many cores there are), interleaved
(full, fused, full, ...) so a busy machine slows both; the median images/s of the repeats and
the ratio are printed, and the best run of each (the least disturbed on a busy machine). Both
ways give the same pixels (tests/test_image_decode.py).

    python scripts/bench_photo_read.py --photos 300 --size 32 --repeats 5
    python scripts/bench_photo_read.py --photos 300 --size 32 --repeats 5 --sizes 600x1200,1200x600
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


PHOTO_SIZES = "360x480,600x800,450x600,480x640,640x480,800x600"  # (height x width): landscape and portrait


def make_jpegs(count: int, sizes: list[tuple[int, int]]) -> list[bytes]:
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = rng.uniform(0, 6.28, 3)
        channels = [127 + 100 * np.sin(x / rng.uniform(40, 120) + y / rng.uniform(40, 120) + p) for p in phase]
        image = np.clip(np.stack(channels, -1) + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def rate(ds, count: int) -> float:
    start = time.perf_counter()
    for _ in ds:
        pass
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=300)
    parser.add_argument("--size", type=int, default=32, help="the square side the pipeline asks for")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", default=PHOTO_SIZES, help="photo sizes, HxW, comma-separated, used in turn")
    args = parser.parse_args()

    import tensorflow as tf

    from cifarkit.readers.image_decode import decode_squared
    from cifarkit.readers.squaring import resize_shorter_centre

    sizes = [tuple(int(n) for n in size.split("x")) for size in args.sizes.split(",")]
    jpegs = make_jpegs(args.photos, sizes)
    contents = tf.data.Dataset.from_tensor_slices(jpegs)
    ways = {
        "full decode + square": contents.map(
            lambda c: resize_shorter_centre(tf.io.decode_jpeg(c, channels=3), args.size), num_parallel_calls=1
        ),
        "fused decode-and-crop": contents.map(lambda c: decode_squared(c, args.size), num_parallel_calls=1),
    }
    for ds in ways.values():  # trace and warm up once, untimed
        rate(ds.take(4), 4)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, ds in ways.items():
            rates[name].append(rate(ds, args.photos))
    megabytes = sum(map(len, jpegs)) / 1e6
    print(
        f"{args.photos} JPEGs ({megabytes:.1f} MB, HxW {args.sizes}) to {args.size}x{args.size}, "
        f"{args.repeats} repeats, one image at a time"
    )
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, median in medians.items():
        print(
            f"  {name:24s} median {median:7.1f} images/s, best {max(rates[name]):7.1f}  "
            f"(runs: {', '.join(f'{v:.0f}' for v in rates[name])})"
        )
    full, fused = rates["full decode + square"], rates["fused decode-and-crop"]
    # The best run is the least disturbed one: on a busy machine it is the steadier estimate.
    print(
        f"  fused / full: {statistics.median(fused) / statistics.median(full):.2f}x of the medians, "
        f"{max(fused) / max(full):.2f}x of the best runs"
    )


if __name__ == "__main__":
    main()
