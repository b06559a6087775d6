#!/usr/bin/env python3
"""Benchmark the photo input pipeline: cifarkit's training batches against the textbook tf.data
pipeline and torchvision's ImageFolder + DataLoader, per core and per second.

The script makes (or takes, --tree) a class-per-folder tree of photo-sized JPEGs (400-560 x
300-420, about 50 KB: scripts/bench_photo_tree.py's tree, hard links to a few hundred distinct
files, so the bytes come from the page cache), exports it once with `cifarkit export --format
tfrecord`, and times whole passes of training batches (--batch, float32, drop_remainder) for two
recipes:

  paper at 227      resize 256, random crop, flip (cifarkit also: PCA colour jitter), normalise
    cifarkit tree       the batches `cifarkit train --recipe paper --crop 227 --augment-on host`
    cifarkit tfrecord   fits on: cifarkit.training.inputs.run_inputs, from the tree and the export
    textbook            from_tensor_slices(paths) -> shuffle -> map(read_file -> decode_jpeg ->
                        resize 256x256 -> random_crop -> random_flip_left_right -> normalise,
                        num_parallel_calls=AUTOTUNE) -> batch -> prefetch(AUTOTUNE)
    torchvision         ImageFolder + DataLoader(num_workers=2): Resize(256), RandomCrop(227),
                        RandomHorizontalFlip, ToTensor, Normalize (scripts/bench_photo_torch.py)
  inception at 224  random-resized crop (8-100% of the area, aspect 3/4-4/3), flip, normalise
    cifarkit tree, cifarkit tfrecord: `cifarkit train --recipe inception`, as above
    textbook            read_file -> decode_jpeg -> sample_distorted_bounding_box -> slice ->
                        resize 224 -> flip -> normalise, in the same map
    torchvision         RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize

--floors adds, for the paper recipe, what any pipeline of it must spend, as contenders of their
own: the files read; read and decoded (decode_jpeg); read, decoded and resized to 256x256 (float,
as the textbook leaves it); and cifarkit's own decode stage (each file's central square decoded
and resized to 256, uint8 batches, before the batched crop, flip, colour and normalisation). The
textbook's CPU per image over a floor's is the most any pipeline that does that much could gain.

Each contender runs one untimed warm-up pass (graphs, XLA, thread pools, worker processes), then
the contenders take turns for --repeats passes; the medians are reported. Per pass: wall
images/s, and the CPU seconds every process of the contender spent (this process's for the
tf.data ones, the DataLoader's main process and workers for torchvision), per 1,000 images:
images per CPU second is images/s per busy core. Ratios are to the textbook tf.data pipeline of
the same recipe; the target is cifarkit >= 1.5x the textbook per core. On a shared machine the
CPU figures hold up; the wall figures (and "cores", CPU over wall) move with the load, which is
printed at the start and the end.

    python scripts/bench_photo_pipeline.py --torch-python /tmp/torchvenv/bin/python   # ~3-4 min on 2 cores
    python scripts/bench_photo_pipeline.py --images 256 --repeats 1          # smoke test, ~1 min
    python scripts/bench_photo_pipeline.py --tree ~/photos --recipes paper

torch stays out of the project's environment: give --torch-python a Python that has torch and
torchvision (python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch torchvision
pillow); without it the torchvision rows are skipped, and said so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_export import _commit  # noqa: E402
from bench_photo_torch import MEAN, STD  # noqa: E402  (scripts beside this one)
from bench_photo_tree import _load, make_distinct, make_tree  # noqa: E402
from bench_pipeline import time_pass  # noqa: E402

CROPS = {"paper": 227, "inception": 224}
TARGET = 1.5  # cifarkit's images per CPU second over the textbook's
TEXTBOOK = "textbook tf.data"


@dataclass
class Contender:
    name: str
    recipe: str
    run: object  # () -> (images, wall seconds, CPU seconds) of one pass
    passes: list = field(default_factory=list)  # (images, wall, cpu) of each timed pass

    def median(self, what: str) -> float:
        """Median images/s ("rate") or CPU seconds per 1,000 images ("cpu") over the passes."""
        if what == "rate":
            return statistics.median(n / wall for n, wall, _ in self.passes)
        return statistics.median(1000 * cpu / n for n, _, cpu in self.passes)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def tf_pass(ds):
    """A pass of a tf.data pipeline: the batches' images, wall and this process's CPU seconds
    (every thread of tf.data's pools is in it)."""
    cpu = own_cpu()
    seconds, count = time_pass(ds)
    return count, seconds, own_cpu() - cpu


def tree_files(tree: Path) -> tuple[list[str], list[int]]:
    """Every file of a class-per-folder tree and its class's index (folders in name order)."""
    paths, labels = [], []
    folders = sorted(entry.path for entry in os.scandir(tree) if entry.is_dir())
    for label, folder in enumerate(folders):
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            paths.append(entry.path)
            labels.append(label)
    return paths, labels


def textbook(tree: Path, recipe: str, batch: int, seed: int = 0):
    """The textbook tf.data pipeline for ``recipe``, one image at a time in a parallel map."""
    import tensorflow as tf

    crop = CROPS[recipe]
    mean, std = tf.constant(MEAN), tf.constant(STD)
    whole_image = tf.constant([0.0, 0.0, 1.0, 1.0], shape=[1, 1, 4])

    def paper(contents):
        image = tf.image.resize(tf.io.decode_jpeg(contents, channels=3), [256, 256])
        return tf.image.random_crop(image, [crop, crop, 3])

    def inception(contents):
        image = tf.io.decode_jpeg(contents, channels=3)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=whole_image,
            min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        return tf.image.resize(tf.slice(image, begin, size), [crop, crop])

    cut = paper if recipe == "paper" else inception

    def load(path, label):
        image = tf.image.random_flip_left_right(cut(tf.io.read_file(path)))
        return (image / 255.0 - mean) / std, label

    paths, labels = tree_files(tree)
    ds = tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths), seed=seed)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def train_inputs(data_path: Path, recipe: str, batch: int, work: Path, stats=None):
    """The training batches `cifarkit train` fits on (its plan, data and inputs, built by the same
    functions), and the statistics the recipe normalises with (computed on the first source)."""
    from cifarkit.readers.stats import stats_for
    from cifarkit.runtime.strategy import make_strategy
    from cifarkit.training.config import resolve
    from cifarkit.training.inputs import run_inputs
    from cifarkit.training.plan import TrainConfig
    from cifarkit.training.run_data import open_run_data

    config = TrainConfig(
        model="alexnet",
        workdir=str(work / "run"),
        data=str(data_path),
        recipe=recipe,
        crop=CROPS[recipe] if recipe == "paper" else None,
        batch_size=batch,
        augment_on="host",
        eval_split="train",  # a tree has no test split; validation is not timed
    )
    plan = resolve(config)
    data = open_run_data(plan)
    if stats is None:
        stats = stats_for(data.source, "train", image_size=data.image_size)
    steps = data.source.counts["train"] // batch
    return run_inputs(plan, data, stats, make_strategy("auto"), steps, 0).train, stats


class TorchContender:
    """scripts/bench_photo_torch.py in ``python``, asked for one pass at a time."""

    def __init__(self, python: str, tree: Path, batch: int, workers: int, log: Path):
        script = Path(__file__).resolve().parent / "bench_photo_torch.py"
        command = [python, str(script), str(tree), "--batch", str(batch), "--workers", str(workers)]
        self.log, self.stderr = log, open(log, "w")
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise RuntimeError(log.read_text().strip().splitlines()[-1:] or ["no output"])
        self.version = json.loads(line)["ready"]

    def run(self, recipe: str):
        self.proc.stdin.write(recipe + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the torchvision contender stopped:\n{self.log.read_text()[-3000:]}")
        answer = json.loads(line)
        return answer["images"], answer["wall"], answer["cpu"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.stderr.close()


def export_tree(tree: Path, out: Path) -> float:
    """`cifarkit export --format tfrecord` of the tree; its wall seconds."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "cifarkit", "export", "--source", str(tree), "--format", "tfrecord"]
    done = subprocess.run([*command, "--out", str(out), "--quiet"], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"export failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def contenders(args, tree: Path, export: Path | None, work: Path, torch) -> list[Contender]:
    out, stats = [], None
    for recipe in args.recipes.split(","):
        cifarkit_tree, stats = train_inputs(tree, recipe, args.batch, work, stats)
        out.append(Contender("cifarkit tree", recipe, lambda ds=cifarkit_tree: tf_pass(ds)))
        if export is not None:
            records, _ = train_inputs(export, recipe, args.batch, work, stats)
            out.append(Contender("cifarkit tfrecord", recipe, lambda ds=records: tf_pass(ds)))
        plain = textbook(tree, recipe, args.batch)
        out.append(Contender(TEXTBOOK, recipe, lambda ds=plain: tf_pass(ds)))
        if torch is not None:
            out.append(Contender(f"torchvision w={args.torch_workers}", recipe, lambda r=recipe: torch.run(r)))
    return out


def measure(runners: list[Contender], repeats: int) -> None:
    for c in runners:  # warm-up, untimed
        c.run()
    for repeat in range(repeats):
        for c in runners:
            c.passes.append(c.run())
            n, wall, cpu = c.passes[-1]
            print(
                f"  pass {repeat + 1}: {c.recipe:<9} {c.name:<18} {n / wall:>7,.0f} images/s "
                f"{1000 * cpu / n:>6.2f} CPU s/1k ({cpu / wall:.2f} cores)",
                flush=True,
            )


def floors(tree: Path, batch: int) -> list[Contender]:
    """The paper recipe's floors (--floors): each a pipeline that stops after one more stage."""
    import tensorflow as tf

    from cifarkit.readers.image_decode import decode_files

    paths, labels = tree_files(tree)
    auto = tf.data.AUTOTUNE

    def files():
        return tf.data.Dataset.from_tensor_slices((paths, labels)).shuffle(len(paths), seed=0)

    def decoded(path):
        return tf.io.decode_jpeg(tf.io.read_file(path), channels=3)

    stages = {
        "floor: read": files().map(lambda p, y: (tf.strings.length(tf.io.read_file(p)), y), num_parallel_calls=auto),
        "floor: +decode": files().map(lambda p, y: (tf.shape(decoded(p)), y), num_parallel_calls=auto),
        "floor: +resize 256": files().map(
            lambda p, y: (tf.image.resize(decoded(p), [256, 256]), y), num_parallel_calls=auto
        ),
        "cifarkit: square": decode_files(paths, labels, None, 256, shuffle=True, seed=0),
    }
    batched = {name: ds.batch(batch).prefetch(auto) for name, ds in stages.items()}
    return [Contender(name, "paper", lambda ds=ds: tf_pass(ds)) for name, ds in batched.items()]


def report(runners: list[Contender]) -> list[dict]:
    print(
        f"\n{'recipe':<10}{'contender':<20}{'images/s':>9}{'CPU s/1k':>10}{'cores':>7}"
        f"{'wall vs tb':>11}{'per core vs tb':>15}  target (per core)"
    )
    rows = []
    for c in runners:
        base = next(b for b in runners if b.recipe == c.recipe and b.name == TEXTBOOK)
        rate, cpu = c.median("rate"), c.median("cpu")
        wall_ratio, core_ratio = rate / base.median("rate"), base.median("cpu") / cpu
        verdict = ""
        if c.name.startswith("floor") or c.name.startswith("cifarkit:"):
            verdict = "(a stage: the most any pipeline doing this much gains)"
        elif c.name.startswith("cifarkit"):
            verdict = f">= {TARGET:g}x {'PASS' if core_ratio >= TARGET else 'SHORT'}"
        print(
            f"{c.recipe:<10}{c.name:<20}{rate:>9,.0f}{cpu:>10.2f}{rate * cpu / 1000:>7.2f}"
            f"{wall_ratio:>10.2f}x{core_ratio:>14.2f}x  {verdict}"
        )
        rows.append({"recipe": c.recipe, "contender": c.name, "images_per_s": rate, "cpu_s_per_1k": cpu})
        rows[-1].update(wall_ratio=wall_ratio, core_ratio=core_ratio, passes=c.passes)
    return rows


def start_torch(args, tree: Path, work: Path):
    if not args.torch_python:
        print("torchvision: skipped (no --torch-python given)")
        return None
    try:
        torch = TorchContender(args.torch_python, tree, args.batch, args.torch_workers, work / "torch.stderr")
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"torchvision: skipped ({args.torch_python} cannot run it: {exc})")
        return None
    print(f"torchvision: {torch.version}, {args.torch_workers} DataLoader workers")
    return torch


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, help="a class-per-folder photo tree (default: make one)")
    parser.add_argument("--images", type=int, default=2048, help="files of the tree made (without --tree)")
    parser.add_argument("--distinct", type=int, default=300, help="distinct JPEGs the tree made links to")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--recipes", default="paper,inception")
    parser.add_argument("--no-tfrecord", action="store_true", help="skip the TFRecord export's rows")
    parser.add_argument("--floors", action="store_true", help="also time the paper recipe's stages (see above)")
    parser.add_argument("--torch-python", help="a Python with torch and torchvision (its own venv)")
    parser.add_argument("--torch-workers", type=int, default=2)
    parser.add_argument("--tmp", help="where to make the tree and the export (default: the system's temp folder)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="cifarkit-photo-pipeline-", dir=args.tmp))
    torch = None
    try:
        tree = args.tree or work / "tree"
        if not args.tree:
            make_tree(tree, args.images, make_distinct(work / "distinct", args.distinct), args.classes)
        export = None if args.no_tfrecord else work / "export"
        if export is not None:
            print(f"exported the tree to TFRecord in {export_tree(tree, export):.1f} s")
        torch = start_torch(args, tree, work)
        runners = contenders(args, tree, export, work, torch)
        if args.floors and "paper" in args.recipes.split(","):
            runners += floors(tree, args.batch)
        import tensorflow as tf

        files = len(tree_files(tree)[0])
        print(
            f"cifarkit {_commit()}, TF {tf.__version__}, {os.cpu_count()} cores, {files:,} files, batch {args.batch}, "
            f"median of {args.repeats} passes after a warm-up; load {_load()}",
            flush=True,
        )
        measure(runners, args.repeats)
        rows = report(runners)
        print(f"load (1, 5, 15 min) at the end: {_load()}")
        if args.json:
            args.json.write_text(json.dumps({"files": files, "batch": args.batch, "rows": rows}, indent=2))
    finally:
        if torch is not None:
            torch.close()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
