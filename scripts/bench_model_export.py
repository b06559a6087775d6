"""Size and single-image latency of a run's model in every exported form (docs/RESULTS.md).

    python scripts/bench_model_export.py RUN [--images 300]

RUN is a run folder (its model: last.keras, or the best.keras it chose on a holdout) and what
`cifarkit export-model RUN ...` wrote into RUN/exported/. Each form is called on one uint8
test-sized image at a time (real CIFAR-10 test images when the run's data is the python archive,
else random pixels), after a warm-up; prints the median and the 90th percentile in milliseconds,
and the size on disk.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def timings(call, images: np.ndarray, warmup: int = 20) -> list[float]:
    for image in images[:warmup]:
        call(image[None])
    seconds = []
    for image in images:
        start = time.perf_counter()
        call(image[None])
        seconds.append(time.perf_counter() - start)
    return seconds


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=int, default=300)
    args = parser.parse_args()

    import tensorflow as tf

    from cifarkit.evaluation.evaluate import scorer
    from cifarkit.modelio.exported import open_exported
    from cifarkit.modelio.keras_file import load_model
    from cifarkit.modelio.model_path import resolve_model_path

    images = np.random.default_rng(0).integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    model_file = resolve_model_path(args.run)[0]
    forms = {model_file.name: model_file}
    exported = args.run / "exported"
    for path in sorted(exported.iterdir()):
        if path.suffix == ".tflite":
            forms[path.name] = path
        elif path.is_dir() and not path.name.endswith("-eval-test"):
            forms[f"{path.name} (SavedModel)"] = path
    print(f"tensorflow {tf.__version__}, {args.images} single-image calls each")
    rows = []
    for name, path in forms.items():
        model = load_model(path) if path.suffix == ".keras" else open_exported(path)
        _, call = scorer(model)
        seconds = np.array(timings(call, images)) * 1000
        rows.append(
            {
                "form": name,
                "bytes": size(path),
                "median_ms": float(np.median(seconds)),
                "p90_ms": float(np.percentile(seconds, 90)),
            }
        )
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
