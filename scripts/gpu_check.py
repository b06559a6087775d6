#!/usr/bin/env python3
"""GPU check: train the paper AlexNet at 227x227 and alexnet-cifar on one GPU, with cifarkit's
device augmentation (the Augmentation layer) fed uint8 batches by cifarkit.readers.feed, on Keras's JAX
and PyTorch backends, without TensorFlow.

For each backend, model and precision (float32, mixed_bfloat16) it trains a fixed number of
steps and reports images/s, the share of the loop's time spent waiting for input, the first
step's time (compilation), the loss over the steps (does it fall), accuracy on held-out test
images (float32 runs) and peak GPU memory. It writes OUT/GPU.md and OUT/gpu-check.json, after
every phase, so a run cut short still leaves what it measured.

Where it runs: a copy of this repository on a machine with Python 3.12, JAX and/or PyTorch with
CUDA, no TensorFlow and no network. Keras and the small packages it needs beyond numpy, h5py,
rich, absl-py, ml-dtypes and packaging travel as wheels in .whl/ (git-ignored), fetched
beforehand where there is a network, with the data in .gpu/:

    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \\
        keras==3.15.1 namex==0.1.0 optree==0.20.0 typing_extensions
    mkdir -p .gpu && cp ../shared/data/cifar10-jpeg.tar.gz .gpu/

and on the machine:

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:$PWD python3 scripts/gpu_check.py --data .gpu/cifar10-jpeg.tar.gz --out docs

``--data`` takes the JPEG tree as a tar (train/<class>/*.jpg, test/<class>/*.jpg; decoded on all
cores in a few seconds) or any CIFAR-10 archive cifarkit reads. ``--simulate`` runs the same code
paths on a CPU at tiny sizes (the bundled sample written out as a JPEG tar, batch 4, a few steps,
AlexNet at 67x67); CI runs it in an environment without TensorFlow. Each backend runs in its own
subprocess (Keras fixes its backend at import) with its own time limit, and each run in it is
guarded, so one failure still leaves the rest in the report.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # a copy of the repository, not an installed package

BACKENDS = ("jax", "torch")
PRECISIONS = ("float32", "mixed_bfloat16")
MOMENTUM = 0.9
PAPER_BATCH = 128  # the batch the learning rates below are meant for (Krizhevsky et al., section 5)
# (model, recipe, model options, SGD learning rate): the trainer's defaults (lr 0.01 for the
# paper's network, 0.05 for the 32x32 ones, momentum 0.9), the paper's two towers, and He init
# because the paper's N(0, 0.01) needs thousands of steps to leave the first plateau
# (docs/RESULTS.md); a few hundred steps should show the loss falling.
RUNS = (("alexnet", "paper", {"groups": 2, "init": "he"}, 0.01), ("alexnet-cifar", "cifar", {}, 0.05))
# Seconds a run needs at least (compilation included); a run that would not fit is skipped.
RUN_SECONDS = {"alexnet": 75, "alexnet-cifar": 40}
LOSS_WINDOW = 0.1  # "the loss falls": mean of the last 10% of steps below that of the first 10%
DECODE_CHUNK = 2000  # JPEGs per worker task


@dataclass(frozen=True)
class Sizes:
    batch: int
    steps: int  # timed steps
    warmup: int  # untimed steps first: compilation, cuDNN autotuning
    eval_images: int
    alexnet_crop: int  # the paper recipe's crop (227; the smallest AlexNet input, 67, to simulate)
    budget: float  # seconds for the whole check
    train_images: int | None = None  # None: all


GPU = Sizes(batch=PAPER_BATCH, steps=300, warmup=10, eval_images=2000, alexnet_crop=227, budget=450)
SIMULATE = Sizes(batch=4, steps=4, warmup=1, eval_images=8, alexnet_crop=67, budget=900, train_images=64)


def say(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Data: uint8 arrays from the JPEG tar (or a CIFAR archive), written once for the backends


def _decode(blobs: list[bytes]):
    import numpy as np
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")) for blob in blobs])


def read_jpeg_tar(path: Path) -> dict | None:
    """{split: (images, labels)} and class names from train/<class>/*.jpg members; None if the
    tar holds no such tree. Labels follow the sorted class folders (CIFAR-10's own order)."""
    import numpy as np

    members: dict[str, list[tuple[str, bytes]]] = {}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 3 and parts[2].lower().endswith((".jpg", ".jpeg")):
                members.setdefault(parts[0], []).append((parts[1], tar.extractfile(member).read()))
    if "train" not in members:
        return None
    classes = sorted({name for entries in members.values() for name, _ in entries})
    splits = {}
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        for split, entries in members.items():
            blobs = [blob for _, blob in entries]
            chunks = [blobs[i : i + DECODE_CHUNK] for i in range(0, len(blobs), DECODE_CHUNK)]
            images = np.concatenate(list(pool.map(_decode, chunks)))
            splits[split] = (images, np.array([classes.index(name) for name, _ in entries], np.int32))
    return {"splits": splits, "classes": classes}


def read_cifar_archive(path: Path) -> dict:
    import numpy as np

    from cifarkit.sources import open_source

    dataset = open_source(path, verify=False)
    splits = {}
    for split in dataset.splits:
        batch = dataset.take(split, 0, dataset.count(split))
        splits[split] = (np.asarray(batch.images), np.asarray(batch.labels, np.int32))
    return {"splits": splits, "classes": list(dataset.class_names)}


def sample_as_jpeg_tar(out: Path) -> Path:
    """The bundled CIFAR-10 sample written as a JPEG tar, so --simulate decodes JPEGs too."""
    from PIL import Image

    data = read_cifar_archive(ROOT / "cifarkit" / "sample" / "cifar-10-sample-python.tar.gz")
    path = out / "sample-jpeg.tar"
    with tarfile.open(path, "w") as tar:
        for split, (images, labels) in data["splits"].items():
            for index, (image, label) in enumerate(zip(images, labels)):
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="JPEG", quality=95)
                info = tarfile.TarInfo(f"{split}/{data['classes'][label]}/{index:05d}.jpg")
                info.size = buffer.tell()
                buffer.seek(0)
                tar.addfile(info, buffer)
    return path


def _shuffled(images, labels):
    import numpy as np

    order = np.random.default_rng(0).permutation(len(labels))
    return images[order], labels[order]


def prepare_data(path: Path, work: Path) -> dict:
    import numpy as np

    start = time.perf_counter()
    data = read_jpeg_tar(path) if tarfile.is_tarfile(path) else None
    source = "JPEG tree (decoded with Pillow on every core)"
    if data is None:
        data, source = read_cifar_archive(path), "CIFAR archive (cifarkit.sources)"
    # One fixed shuffle, so that a prefix (--simulate's images, the held-out images) is a sample
    # of every class rather than the first class folder of the tar.
    (train_x, train_y), (test_x, test_y) = (_shuffled(*data["splits"][split]) for split in ("train", "test"))
    np.savez(work / "data.npz", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
    return {
        "path": str(path),
        "read_as": source,
        "train": int(len(train_y)),
        "test": int(len(test_y)),
        "classes": data["classes"],
        "seconds": round(time.perf_counter() - start, 2),
    }


# --------------------------------------------------------------------------------------------
# One backend, in its own process


def backend_info(backend: str, simulate: bool) -> dict:
    """Versions and the device Keras will use; a GPU is required unless simulating."""
    import keras

    info = {"keras": keras.__version__, "backend": keras.backend.backend()}
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        precision = getattr(jax.config, "jax_default_matmul_precision", "?")  # None: XLA's default (TF32 allowed)
        info.update(
            jax=jax.__version__, device=f"{device.platform}: {device.device_kind}", matmul_precision=str(precision)
        )
        has_gpu = device.platform == "gpu"
    else:
        import torch

        has_gpu = torch.cuda.is_available()
        info.update(
            torch=torch.__version__,
            cuda=torch.version.cuda,
            device=torch.cuda.get_device_name(0) if has_gpu else "cpu",
            tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            tf32_cudnn=torch.backends.cudnn.allow_tf32,
        )
    if not has_gpu and not simulate:
        raise RuntimeError(f"{backend} sees no GPU ({info['device']})")
    return info


def peak_memory(backend: str) -> int | None:
    try:
        if backend == "jax":
            import jax

            return jax.devices()[0].memory_stats().get("peak_bytes_in_use")
        import torch

        return torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001  (a figure some platforms do not keep)
        return None


def build(model_name: str, recipe_name: str, options: dict, crop: int, lr: float):
    """uint8 images -> Augmentation (the recipe on the device) -> the network, compiled for SGD."""
    import keras

    from cifarkit.augment.layer import Augmentation
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.models import create_model
    from cifarkit.readers.stats import bundled_stats

    recipe = get_recipe(recipe_name, crop if recipe_name == "paper" else None)
    network = create_model(model_name, num_classes=10, input_shape=(recipe.crop, recipe.crop, 3), **options)
    inputs = keras.Input((32, 32, 3), dtype="uint8", name="uint8_image")
    views = Augmentation(recipe, bundled_stats("cifar10"), seed=0, name="preprocess")(inputs)
    model = keras.Model(inputs, network(views), name=model_name.replace("-", "_"))
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=MOMENTUM),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def train_steps(model, stream, feed, steps: int, batch: int) -> dict:
    """``steps`` training steps from the stream; the time of each, and the consumer's waiting."""
    import numpy as np

    losses, times = [], []
    waited = feed.stats.wait_seconds
    start = time.perf_counter()
    for _ in range(steps):
        step = time.perf_counter()
        images, labels = next(stream)
        losses.append(float(model.train_on_batch(images, labels)))  # a float: the step has finished
        times.append(time.perf_counter() - step)
    seconds = time.perf_counter() - start
    waited = feed.stats.wait_seconds - waited
    window = max(1, int(steps * LOSS_WINDOW))
    first, last = float(np.mean(losses[:window])), float(np.mean(losses[-window:]))
    return {
        "images_per_second": round(steps * batch / seconds, 1),
        "seconds": round(seconds, 3),
        "step_ms_median": round(1000 * float(np.median(times)), 2),
        "step_ms_p90": round(1000 * float(np.percentile(times, 90)), 2),
        "input_wait_seconds": round(waited, 4),
        "input_wait_share": round(waited / seconds, 4),
        "loss_first": round(first, 4),
        "loss_last": round(last, 4),
        "loss_falls": last < first,
        "losses": [round(x, 4) for x in losses],
    }


def one_run(backend: str, spec: tuple, precision: str, sizes: Sizes, data) -> dict:
    import keras
    import numpy as np

    from cifarkit.readers.feed import Feed

    model_name, recipe_name, options, lr = spec
    lr *= sizes.batch / PAPER_BATCH  # the rates are for batches of 128; --simulate's 4 would diverge
    keras.mixed_precision.set_global_policy(precision)
    keras.utils.set_random_seed(0)
    try:
        model = build(model_name, recipe_name, options, sizes.alexnet_crop, lr)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    train_x, train_y = data["train_x"][: sizes.train_images], data["train_y"][: sizes.train_images]
    feed = Feed(train_x, train_y, batch_size=sizes.batch, seed=0)
    result = {
        "model": model_name,
        "precision": precision,
        "batch": sizes.batch,
        "lr": lr,
        "options": options,
        "input": f"{model.get_layer('preprocess').recipe.crop}x{model.get_layer('preprocess').recipe.crop}",
        "parameters": int(model.count_params()),
    }
    with feed.epochs(None) as stream:
        start = time.perf_counter()
        images, labels = next(stream)
        result["first_loss"] = round(float(model.train_on_batch(images, labels)), 4)
        result["first_step_seconds"] = round(time.perf_counter() - start, 2)
        train_steps(model, stream, feed, sizes.warmup - 1, sizes.batch) if sizes.warmup > 1 else None
        result.update(train_steps(model, stream, feed, sizes.steps, sizes.batch), warmup_steps=sizes.warmup)
    if precision == "float32" and sizes.eval_images:
        test_x, test_y = data["test_x"][: sizes.eval_images], data["test_y"][: sizes.eval_images]
        logits = model.predict(test_x, batch_size=min(250, len(test_y)), verbose=0)
        result["test_accuracy"] = round(float(np.mean(np.argmax(logits, axis=1) == test_y)), 4)
        result["test_images"] = int(len(test_y))
    result["peak_memory_bytes"] = peak_memory(backend)
    keras.backend.clear_session()
    return result


def child(backend: str, work: Path, sizes: Sizes, deadline: float, simulate: bool) -> None:
    """Every run on one backend; the results file is rewritten after each, so a kill loses one."""
    sys.modules["tensorflow"] = None  # the path under test must not lean on TensorFlow
    import numpy as np

    out = work / f"backend-{backend}.json"
    report: dict = {"runs": []}
    try:
        report["info"] = backend_info(backend, simulate)
    except Exception as exc:  # noqa: BLE001
        report["error"] = f"{type(exc).__name__}: {exc}"
        out.write_text(json.dumps(report, indent=1))
        return
    say(f"{backend}: {report['info']}")
    data = dict(np.load(work / "data.npz"))
    for spec in RUNS:
        for precision in PRECISIONS:
            name = f"{backend} {spec[0]} {precision}"
            if not simulate and time.time() + RUN_SECONDS[spec[0]] > deadline:
                report["runs"].append({"model": spec[0], "precision": precision, "skipped": "not enough time left"})
                say(f"{name}: skipped, not enough time left")
            else:
                say(f"{name}: training")
                try:
                    result = one_run(backend, spec, precision, sizes, data)
                    say(
                        f"{name}: {result['images_per_second']:,.0f} images/s, waiting "
                        f"{result['input_wait_share']:.1%}, "
                        f"loss {result['loss_first']:.3f} -> {result['loss_last']:.3f}"
                    )
                except Exception as exc:  # noqa: BLE001  (recorded; the next run still goes)
                    result = {
                        "model": spec[0],
                        "precision": precision,
                        "error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()[-4000:],
                    }
                    say(f"{name}: FAILED {result['error']}")
                report["runs"].append(result)
            out.write_text(json.dumps(report, indent=1))


# --------------------------------------------------------------------------------------------
# The parent: data, then each backend in a subprocess, then the report


def environment(commit: str | None) -> dict:
    from importlib import metadata

    versions = {}
    for package in ("numpy", "keras", "jax", "jaxlib", "torch", "pillow", "h5py", "optree"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    gpu = None
    try:
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        gpu = subprocess.run(query, capture_output=True, text=True, timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "gpu": gpu,
        "versions": versions,
        "commit": commit,
        "tensorflow_installed": _installed("tensorflow"),
    }


def _installed(package: str) -> bool:
    from importlib.util import find_spec

    return find_spec(package) is not None


def run_backend(backend: str, work: Path, args, deadline: float) -> dict:
    """The backend's subprocess, killed at ``deadline``; what it recorded, plus how it ended."""
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        backend,
        "--work",
        str(work),
        "--deadline",
        str(deadline),
    ] + (["--simulate"] if args.simulate else [])
    env = {**os.environ, "KERAS_BACKEND": backend, "PYTHONUNBUFFERED": "1"}
    start = time.time()
    try:
        done = subprocess.run(command, env=env, timeout=max(1.0, deadline - start))
        ended = f"exit code {done.returncode}"
    except subprocess.TimeoutExpired:
        ended = f"killed at its time limit ({deadline - start:.0f} s)"
    results = work / f"backend-{backend}.json"
    report = json.loads(results.read_text()) if results.is_file() else {"runs": [], "error": "no results written"}
    report.update(ended=ended, seconds=round(time.time() - start, 1))
    return report


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu-check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "GPU.md").write_text(render(report))


def _fmt_bytes(value) -> str:
    return "" if value is None else f"{value / 2**30:.1f} GiB"


def _run_row(backend: str, run: dict) -> str:
    name = f"| {backend} | {run['model']} | {run['precision']} |"
    if "images_per_second" not in run:
        why = run.get("skipped") or run.get("error", "no result")
        return f"{name} {why.splitlines()[0][:160]} |" + " |" * 8
    accuracy = f"{run['test_accuracy']:.1%} ({run['test_images']:,})" if "test_accuracy" in run else ""
    falls = "yes" if run["loss_falls"] else "**no**"
    return (
        f"{name} {run['input']}, batch {run['batch']} | **{run['images_per_second']:,.0f}** | "
        f"{run['step_ms_median']:.1f} / {run['step_ms_p90']:.1f} | {run['input_wait_share']:.1%} | "
        f"{run['first_step_seconds']:.1f} | {run['first_loss']:.3f}; {run['loss_first']:.3f} -> "
        f"{run['loss_last']:.3f} ({falls}) | "
        f"{accuracy} | {_fmt_bytes(run.get('peak_memory_bytes'))} |"
    )


def _speedups(report: dict) -> list[str]:
    lines = []
    for backend, result in report.get("backends", {}).items():
        runs = {(r["model"], r["precision"]): r for r in result.get("runs", []) if "images_per_second" in r}
        for model, *_ in RUNS:
            full, mixed = runs.get((model, "float32")), runs.get((model, "mixed_bfloat16"))
            if full and mixed:
                ratio = mixed["images_per_second"] / full["images_per_second"]
                lines.append(f"- {backend}, {model}: mixed_bfloat16 runs at {ratio:.2f}x the images/s of float32.")
    return lines


NOTES = [
    "Reading the table:",
    "- images/s and step times are over the timed steps, from taking a batch off the feed to the loss "
    "being back on the host; 'waiting for input' is the share of that time the loop spent blocked on the "
    "feed's queue (near zero: the input keeps up).",
    "- 'first step' is the first call of `train_on_batch`: building the train function and, on JAX, "
    "compiling it with XLA. Keras's PyTorch backend runs eagerly (no compilation).",
    "- float32 means each framework's default float32 arithmetic: XLA's default precision on JAX (which "
    "may use TF32 on tensor cores), PyTorch with TF32 for cuDNN convolutions but not for matmuls.",
    "- held-out accuracy: the centre view of the first test images (in a fixed shuffled order), after "
    "the warm-up and timed steps; float32 runs only.",
    "- peak GPU memory on JAX is the process's peak so far (JAX keeps no per-run peak); on PyTorch, "
    "the allocator's peak so far.",
]


def render(report: dict) -> str:
    env, data = report.get("environment", {}), report.get("data", {})
    sizes = report.get("sizes", {})
    lines = [
        "# GPU check",
        "",
        f"`scripts/gpu_check.py` ({'simulated on a CPU' if report.get('simulate') else 'on a GPU'}), "
        f"{report.get('started', '')}, {report.get('elapsed_seconds', '?')} s in all. Written by the script; "
        "see its docstring for how to run it.",
        "",
        f"    python3 {report.get('command', '?')}",
        "",
        "What ran: each backend in its own process, without TensorFlow. A model is uint8 images -> the "
        "recipe's `Augmentation` layer (random windows, flips, PCA jitter, normalisation on the device) -> "
        f"the network, trained with SGD (momentum {MOMENTUM}) by `train_on_batch` on batches from "
        "`cifarkit.readers.feed` (uint8, shuffled per epoch, prepared on a background thread). "
        f"{sizes.get('warmup', '?')} untimed steps first (the first one compiles), then {sizes.get('steps', '?')} "
        "timed steps; each step ends when its loss reaches the host, so step times include the host's share.",
        "",
        "## Machine",
        "",
        f"- GPU: {env.get('gpu') or 'none found by nvidia-smi'}; {env.get('cpus')} CPUs; Python {env.get('python')}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in env.get('versions', {}).items() if v)}; "
        f"TensorFlow installed: {env.get('tensorflow_installed')}",
        f"- cifarkit commit: {env.get('commit') or 'unknown'}",
        f"- data: {data.get('train', '?')} training and {data.get('test', '?')} test images from "
        f"`{Path(data.get('path', '?')).name}`, read as {data.get('read_as', '?')} in {data.get('seconds', '?')} s"
        + (f" (FAILED: {data['error']})" if "error" in data else ""),
        "",
    ]
    for backend, result in report.get("backends", {}).items():
        info = result.get("info", {})
        lines.append(
            f"- {backend}: {info.get('device', '?')}; {result.get('ended', '')}, {result.get('seconds', '?')} s"
            + (f"; {result['error']}" if "error" in result else "")
            + (f"; matmul precision {info['matmul_precision']}" if "matmul_precision" in info else "")
            + (f"; TF32 matmul {info['tf32_matmul']}, cuDNN {info['tf32_cudnn']}" if "tf32_matmul" in info else "")
        )
    lines += [
        "",
        "## Results",
        "",
        "| backend | model | precision | input | images/s | step ms median / p90 | waiting for input | "
        "first step s | loss: step 1; first -> last 10% of timed steps | held-out accuracy | peak GPU memory |",
        "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for backend, result in report.get("backends", {}).items():
        lines += [_run_row(backend, run) for run in result.get("runs", [])]
    lines += ["", *(_speedups(report) or ["- no float32 / mixed pair finished"]), "", *NOTES, ""]
    return "\n".join(lines)


def parent(args) -> int:
    sizes = SIMULATE if args.simulate else GPU
    if args.steps:
        sizes = Sizes(**{**asdict(sizes), "steps": args.steps})
    start = time.time()
    deadline = start + (args.budget or sizes.budget)
    report = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "simulate": args.simulate,
        "sizes": asdict(sizes),
        "command": " ".join(sys.argv),
        "environment": environment(args.commit),
        "backends": {},
    }
    say(f"environment: {report['environment']}")
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        work = Path(folder)
        try:
            data_path = args.data or sample_as_jpeg_tar(work)
            report["data"] = prepare_data(Path(data_path), work)
            say(f"data: {report['data']}")
        except Exception as exc:  # noqa: BLE001  (nothing can train without data; the report says why)
            report["data"] = {"path": str(args.data), "error": f"{type(exc).__name__}: {exc}"}
            say(f"data FAILED: {traceback.format_exc()}")
        write_report(report, args.out)
        backends = [b for b in args.backends.split(",") if b] if "error" not in report["data"] else []
        for index, backend in enumerate(backends):
            # Later backends keep a share of the time, so a slow first one cannot starve them.
            left = len(backends) - index - 1
            share = deadline - (deadline - time.time()) * left / (left + 1) if not args.simulate else deadline
            say(f"{backend}: starting, {share - time.time():.0f} s allowed")
            report["backends"][backend] = run_backend(backend, work, args, share)
            report["elapsed_seconds"] = round(time.time() - start, 1)
            write_report(report, args.out)
    say(f"done in {time.time() - start:.0f} s; wrote {args.out / 'GPU.md'} and {args.out / 'gpu-check.json'}")
    ok = report["backends"] and all(
        r.get("runs") and all("images_per_second" in x for x in r["runs"]) for r in report["backends"].values()
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        help="cifar10-jpeg.tar.gz or a CIFAR-10 archive (default with --simulate: the bundled sample)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where GPU.md and gpu-check.json go")
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, in order (default jax,torch)")
    parser.add_argument("--simulate", action="store_true", help="CPU, tiny sizes: the same code paths")
    parser.add_argument("--steps", type=int, help="timed steps per run (default 300; 4 with --simulate)")
    parser.add_argument("--budget", type=float, help="seconds for the whole check (default 450)")
    parser.add_argument("--commit", help="the cifarkit commit, for the report (a copy may have no .git)")
    parser.add_argument("--render", type=Path, help="only write GPU.md again from this gpu-check.json (into --out)")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.work, SIMULATE if args.simulate else GPU, args.deadline, args.simulate)
        return 0
    if args.render:
        write_report(json.loads(args.render.read_text()), args.out)
        return 0
    if not args.simulate and args.data is None:
        parser.error("--data is required without --simulate")
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
