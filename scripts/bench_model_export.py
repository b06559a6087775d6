"""Size and single-image latency of a run's model in every exported form (docs/RESULTS.md).

    python scripts/bench_model_export.py RUN [--images 300] [--data cifar-10-python.tar.gz]

RUN is a run folder (its model: last.keras, or the best.keras it chose on a holdout) and what
`cifarkit export-model RUN ...` wrote into RUN/exported/. Each form is called on one uint8
test-sized image at a time (real CIFAR-10 test images when the run's data is the python archive,
else random pixels), after a warm-up; prints the median and the 90th percentile in milliseconds,
and the size on disk. An ``.onnx`` file runs in ONNX Runtime (cifarkit itself does not run one).
``--data``: also each form's top-1 and top-5 on that data's test split, through the same calls
in batches (for ONNX the only accuracy; the others' are ``cifarkit evaluate``'s).
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


def onnx_scorer(path: Path):
    """(input size, uint8 batch -> probabilities) of an ONNX export, in ONNX Runtime."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    side = session.get_inputs()[0].shape[1]
    return side, lambda images: session.run(["probabilities"], {"images": np.asarray(images)})[0]


def accuracy(call, images: np.ndarray, labels: np.ndarray, batch: int = 250) -> tuple[float, float]:
    """(top-1, top-5) over ``images``, ``batch`` at a time."""
    probabilities = np.concatenate([call(images[i : i + batch]) for i in range(0, len(images), batch)])
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    return float(np.mean(top5[:, 0] == labels)), float(np.mean((top5 == labels[:, None]).any(axis=1)))


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--data", type=Path, help="data whose test split each form is scored on")
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
        if path.suffix in (".tflite", ".onnx"):
            forms[path.name] = path
        elif path.is_dir() and not path.name.endswith("-eval-test"):
            forms[f"{path.name} (SavedModel)"] = path
    print(f"tensorflow {tf.__version__}, {args.images} single-image calls each")
    test = None
    if args.data is not None:
        from cifarkit.data import load_numpy

        test = load_numpy(args.data, "test", verify=False)
    rows = []
    for name, path in forms.items():
        if path.suffix == ".onnx":
            _, call = onnx_scorer(path)
        else:
            _, call = scorer(load_model(path) if path.suffix == ".keras" else open_exported(path))
        seconds = np.array(timings(call, images)) * 1000
        rows.append(
            {
                "form": name,
                "bytes": size(path),
                "median_ms": float(np.median(seconds)),
                "p90_ms": float(np.percentile(seconds, 90)),
            }
        )
        if test is not None:
            rows[-1]["top1"], rows[-1]["top5"] = accuracy(call, *test)
        print(json.dumps(rows[-1]))


if __name__ == "__main__":
    main()
