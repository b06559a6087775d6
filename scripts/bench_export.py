#!/usr/bin/env python3
"""Benchmark `cifarkit export` against the usual single-process converters, on real CIFAR-10.

Four contenders, each run as its own subprocess on the same archive:

  cifarkit-jpg       cifarkit export --format jpg       (all cores)
  baseline-jpg       tarfile + pickle + imageio.v2.imwrite, one image at a time, one process
  cifarkit-tfrecord  cifarkit export --format tfrecord  (all cores)
  baseline-tfrecord  pickle + tf.io.encode_png + tf.train.Example + one tf.io.TFRecordWriter
  cifarkit-parquet   cifarkit export --format parquet   (all cores; Hugging Face's layout)
  cifarkit-webdataset  cifarkit export --format webdataset  (all cores; tar shards, DALI's index)
  cifarkit-arrayrecord  cifarkit export --format arrayrecord  (all cores; TFDS's array_record shards)

Time is the wall time of the whole subprocess, from start to exit (imports, reading and
decompressing the archive, encoding, writing): what a user waits for. Runs are interleaved
(c-jpg, b-jpg, c-tfr, b-tfr, c-jpg, ...) so slow phases of a noisy machine hit every contender,
and medians are reported. Output folders are removed (and synced) between runs, untimed.

Memory: each contender runs inside a small wrapper process that reports, when the job is done,
its own peak resident set (the main process) and the largest peak among the processes it
reaped (cifarkit's worker processes); wait4() gives the CPU time (user and system) of the whole
process tree. Forked workers count the pages they share copy-on-write with the main process in
their resident set, so a worker's figure is an upper bound on what it adds.
With --sample-interval the tree's total PSS (shared pages divided among the processes sharing
them, i.e. the memory the job really occupies) is also sampled from /proc.

Photo trees (--photos N): N photo-sized JPEGs (smooth synthetic scenes of 480x360 to 800x600,
quality 90, made by the script) exported to TFRecord with --encoding auto (the files' own bytes)
and --encoding png (decoded and re-encoded), each run timed as a subprocess; figures are wall
time and bytes of records. Needs no archive.

    python scripts/bench_export.py --photos 300

Reading back (--read-back parquet): the archive exported once, then read whole, each reader in
its own subprocess: Hugging Face's ``datasets.load_dataset("parquet", data_dir=...)`` (its Arrow
cache built, then every image decoded to a numpy array) and ``cifarkit.load_numpy``.
``--read-back webdataset``: the webdataset library over each split's brace pattern, images
decoded to uint8 arrays, and ``cifarkit.load_numpy``.
``--read-back arrayrecord``: Grain's sampler (a global shuffle) and loader over TFDS's data
source, batches of 1,000 decoded, and ``cifarkit.load_numpy``.

    python scripts/bench_export.py --read-back parquet --repeats 2

Needs the real archive (see ../shared/data/README.md):

    python ../shared/data/make_cifar10_archive.py ~/.cache/cifarkit-real/cifar-10-python.tar.gz
    python scripts/bench_export.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DEFAULT_ARCHIVE = Path.home() / ".cache" / "cifarkit-real" / "cifar-10-python.tar.gz"
BUILD_HINT = "python ../shared/data/make_cifar10_archive.py ~/.cache/cifarkit-real/cifar-10-python.tar.gz"
IMAGES = 60_000
CONTENDERS = (
    "cifarkit-jpg",
    "baseline-jpg",
    "cifarkit-tfrecord",
    "baseline-tfrecord",
    "cifarkit-parquet",
    "cifarkit-webdataset",
    "cifarkit-arrayrecord",
)
PAIRS = (("jpg", "cifarkit-jpg", "baseline-jpg", 6.0), ("tfrecord", "cifarkit-tfrecord", "baseline-tfrecord", 5.0))
MEMORY_TARGET_MB = 400.0  # MB = 10**6 bytes
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))


# --- the contenders (run inside the wrapper process) -------------------------------------------


def run_cifarkit(archive: str, out: str, fmt: str) -> int:
    """`cifarkit export`, exactly as the console script runs it."""
    from cifarkit.cli import main

    sys.argv = ["cifarkit", "export", "--source", archive, "--no-verify", "--format", fmt, "--out", out, "--quiet"]
    try:
        main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def _baseline_batches(archive: str):
    """Yield (split, images HWC uint8, labels) per batch, plus the class names first."""
    import pickle
    import tarfile

    import numpy as np

    with tarfile.open(archive, "r:gz") as tar:
        batches = {}
        meta = None
        for member in tar:
            name = member.name.rsplit("/", 1)[-1]
            if name == "batches.meta":
                meta = pickle.load(tar.extractfile(member), encoding="bytes")
            elif name in TRAIN_BATCHES or name == "test_batch":
                batches[name] = pickle.load(tar.extractfile(member), encoding="bytes")
    yield [n.decode() for n in meta[b"label_names"]]
    for name in (*TRAIN_BATCHES, "test_batch"):
        entry = batches.pop(name)
        images = np.asarray(entry[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        yield ("test" if name == "test_batch" else "train"), images, entry[b"labels"]


def run_baseline_jpg(archive: str, out: str) -> int:
    """What a typical converter script does: one process, imageio.imwrite per image."""
    import imageio.v2 as imageio

    batches = _baseline_batches(archive)
    names = next(batches)
    counters = {"train": 0, "test": 0}
    for split in counters:
        for name in names:
            os.makedirs(os.path.join(out, split, name), exist_ok=True)
    for split, images, labels in batches:
        for image, label in zip(images, labels):
            index = counters[split]
            counters[split] += 1
            imageio.imwrite(os.path.join(out, split, names[label], f"{index}.jpg"), image)
    return 0


def run_baseline_tfrecord(archive: str, out: str) -> int:
    """The TensorFlow tutorial way: tf.io.encode_png + tf.train.Example + one TFRecordWriter."""
    import tensorflow as tf

    os.makedirs(out, exist_ok=True)
    batches = _baseline_batches(archive)
    next(batches)
    counters = {"train": 0, "test": 0}
    with tf.io.TFRecordWriter(os.path.join(out, "cifar10.tfrecord")) as writer:
        for split, images, labels in batches:
            for image, label in zip(images, labels):
                index = counters[split]
                counters[split] += 1
                png = tf.io.encode_png(image).numpy()
                example = tf.train.Example(
                    features=tf.train.Features(
                        feature={
                            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[png])),
                            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
                            "id": tf.train.Feature(
                                bytes_list=tf.train.BytesList(value=[f"{split}_{index:05d}".encode()])
                            ),
                        }
                    )
                )
                writer.write(example.SerializeToString())
    return 0


def contender_main(name: str, archive: str, out: str, result: str) -> int:
    if name == "cifarkit-jpg":
        code = run_cifarkit(archive, out, "jpg")
    elif name == "cifarkit-tfrecord":
        code = run_cifarkit(archive, out, "tfrecord")
    elif name == "cifarkit-parquet":
        code = run_cifarkit(archive, out, "parquet")
    elif name == "cifarkit-webdataset":
        code = run_cifarkit(archive, out, "webdataset")
    elif name == "cifarkit-arrayrecord":
        code = run_cifarkit(archive, out, "arrayrecord")
    elif name == "baseline-jpg":
        code = run_baseline_jpg(archive, out)
    elif name == "baseline-tfrecord":
        code = run_baseline_tfrecord(archive, out)
    else:
        raise SystemExit(f"unknown contender {name}")
    # Linux reports ru_maxrss in KiB. RUSAGE_CHILDREN: the largest peak among reaped descendants.
    usage = {
        "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    Path(result).write_text(json.dumps(usage))
    return code


# --- measuring -----------------------------------------------------------------------------------


def _mb(kib: float) -> float:
    return kib * 1024 / 1e6


def _tree(root: int) -> list[int]:
    """The pids of root and all its descendants (scans /proc; no /proc/<pid>/children needed)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(parents.get(pid, ()))
    return found


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class PssSampler(threading.Thread):
    """Samples the summed PSS of a process tree every `interval` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float):
        super().__init__(daemon=True)
        self.pid, self.interval, self.peak_kib = pid, interval, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            self.peak_kib = max(self.peak_kib, sum(_pss_kib(p) for p in _tree(self.pid)))


def run_once(name: str, archive: Path, out: Path, logs: Path, sample_interval: float) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    os.sync()  # the previous run's writeback and deletions must not land on this one's clock
    result = logs / f"{name}.json"
    result.unlink(missing_ok=True)
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--contender",
        name,
        "--archive",
        str(archive),
        "--out",
        str(out),
        "--result",
        str(result),
    ]
    with open(logs / f"{name}.stdout", "w") as stdout, open(logs / f"{name}.stderr", "w") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        sampler = None
        if sample_interval > 0:
            sampler = PssSampler(proc.pid, sample_interval)
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if sampler is not None:
        sampler.done.set()
        sampler.join()
    if proc.returncode != 0 or not result.is_file():
        tail = (logs / f"{name}.stderr").read_text()[-3000:]
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{tail}")
    counted = _count_output(name, out)
    shutil.rmtree(out, ignore_errors=True)
    inner = json.loads(result.read_text())
    return {
        "wall": wall,
        "main_kib": inner["self_kib"],
        "children_kib": inner["children_kib"],
        "tree_kib": usage.ru_maxrss,
        "user": usage.ru_utime,  # CPU seconds of the whole tree (children are reaped into it)
        "sys": usage.ru_stime,
        "pss_kib": sampler.peak_kib if sampler else None,
        "files": counted,
    }


def _count_output(name: str, out: Path) -> int:
    """Images written: files in a JPEG tree; records are not parsed (size only, as a sanity check)."""
    if name.endswith("jpg"):
        return sum(1 for p in out.rglob("*.jpg"))
    return (
        sum(p.stat().st_size for p in out.rglob("*tfrecord*"))
        + sum(p.stat().st_size for p in out.rglob("*.parquet"))
        + sum(p.stat().st_size for p in out.rglob("*.tar"))
        + sum(p.stat().st_size for p in out.rglob("*.array_record-*"))
    )


# --- reporting -----------------------------------------------------------------------------------


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def _commit() -> str:
    """The cifarkit checkout's commit (with '+changes' when the package has uncommitted edits), if a git checkout."""
    import cifarkit

    root = Path(cifarkit.__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "cifarkit"], cwd=root, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "not a git checkout"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def _machine(tmp: Path) -> list[str]:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    model = ram = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
                break
    except OSError:
        pass
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        f"cores:      {cores} (usable: {usable}); {model}",
        f"memory:     {ram}",
        f"load avg:   {load} (at start)",
        f"python:     {platform.python_version()} ({platform.platform()})",
        f"versions:   cifarkit {_version('cifarkit')}, tensorflow {_version('tensorflow')}, numpy {_version('numpy')}, "
        f"pillow {_version('pillow')}, imageio {_version('imageio')}",
        f"cifarkit:   {_commit()}",
        f"output dir: {tmp}",
    ]


def report(runs: dict[str, list[dict]], repeats: int, sampled: bool) -> list[str]:
    lines = [
        "",
        f"{'contender':<19}{'median s':>9}{'min s':>8}{'max s':>8}{'images/s':>10}{'user s':>8}{'sys s':>7}"
        f"{'main MB':>9}{'child MB':>9}" + (f"{'tree PSS MB':>12}" if sampled else ""),
    ]
    medians = {}
    for name, results in runs.items():
        walls = [r["wall"] for r in results]
        medians[name] = med = statistics.median(walls)
        user = statistics.median(r["user"] for r in results)
        system = statistics.median(r["sys"] for r in results)
        main = max(r["main_kib"] for r in results)
        children = max(r["children_kib"] for r in results)
        child_col = f"{_mb(children):>9.0f}" if children else f"{'-':>9}"
        line = (
            f"{name:<19}{med:>9.2f}{min(walls):>8.2f}{max(walls):>8.2f}{IMAGES / med:>10,.0f}{user:>8.1f}{system:>7.1f}"
            f"{_mb(main):>9.0f}{child_col}"
        )
        if sampled:
            line += f"{_mb(max(r['pss_kib'] for r in results)):>12.0f}"
        lines.append(line)
    lines += [
        "",
        f"median of {repeats} run(s) each, interleaved; user/sys: median CPU seconds of the whole process tree.",
        "main MB: peak RSS of the main process. child MB: the largest peak RSS among its child processes (for",
        "cifarkit its workers, whose RSS counts the pages they share copy-on-write with the main process; for the",
        "TensorFlow baseline a `uname -p` forked during `import tensorflow`, which inherits the parent's pages).",
        "MB = 10**6 bytes."
        + (" tree PSS MB: peak of the summed PSS of the whole process tree (sampled)." if sampled else ""),
        "",
    ]
    for fmt, ours, theirs, target in PAIRS:
        if ours in medians and theirs in medians:
            ratio = medians[theirs] / medians[ours]
            paired = statistics.median(b["wall"] / c["wall"] for c, b in zip(runs[ours], runs[theirs]))
            verdict = "PASS" if ratio >= target else "SHORT"
            lines.append(
                f"{fmt:<9} cifarkit is {ratio:.2f}x the baseline (ratio of medians; median of per-round ratios "
                f"{paired:.2f}x), target >= {target:.0f}x: {verdict}"
            )
    for name, results in runs.items():
        if name.startswith("cifarkit"):
            peak = _mb(max(max(r["main_kib"], r["children_kib"]) for r in results))
            verdict = "PASS" if peak <= MEMORY_TARGET_MB else "SHORT"
            lines.append(
                f"{name:<18} peak RSS of any one process {peak:.0f} MB (target <= {MEMORY_TARGET_MB:.0f} MB): {verdict}"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--archive", type=Path, default=DEFAULT_ARCHIVE, help=f"cifar-10-python.tar.gz (default: {DEFAULT_ARCHIVE})"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per contender (default: 3)")
    parser.add_argument("--only", default=",".join(CONTENDERS), help="comma-separated contenders (default: all four)")
    parser.add_argument(
        "--tmp",
        type=Path,
        default=Path(tempfile.gettempdir()),
        help="where outputs are written (default: the system temp dir)",
    )
    parser.add_argument(
        "--sample-interval",
        type=float,
        default=0.0,
        help="also sample the process tree's total PSS every this many seconds (default: off; adds a little load)",
    )
    parser.add_argument("--json", type=Path, help="also write every run's figures to this file")
    # Internal: run one contender inside the wrapper process.
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--photos", type=int, default=0, help="photo-tree case: this many JPEGs, auto vs png")
    parser.add_argument("--read-back", choices=tuple(READERS), help="time each client reading an export back")
    parser.add_argument("--reader", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.photos:
        return photo_bench(args.photos, args.repeats, args.tmp)
    if args.reader:
        return READERS[args.read_back][args.reader](args.out)
    if args.read_back:
        return read_bench(args.read_back, args.archive.expanduser(), args.repeats, args.tmp)

    if args.contender:
        return contender_main(args.contender, str(args.archive), args.out, args.result)

    archive = args.archive.expanduser()
    if not archive.is_file():
        print(
            f"error: {archive} not found. Build the real CIFAR-10 archive first (see ../shared/data/README.md):\n"
            f"    {BUILD_HINT}",
            file=sys.stderr,
        )
        return 1
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown or not names or args.repeats < 1:
        parser.error(f"--only takes some of {', '.join(CONTENDERS)}; --repeats must be >= 1")

    work = Path(tempfile.mkdtemp(prefix="cifarkit-bench-", dir=args.tmp))
    logs = work / "logs"
    logs.mkdir()
    print("Export benchmark:", " ".join([Path(sys.executable).name, *sys.argv]))
    print(f"archive:    {archive} ({archive.stat().st_size / 1e6:.1f} MB)")
    for line in _machine(work):
        print(line)
    # Read the archive once so every run finds it in the page cache, the first one included.
    with open(archive, "rb") as handle:
        while handle.read(1 << 24):
            pass
    commit = _commit()
    runs: dict[str, list[dict]] = {n: [] for n in names}
    try:
        for repeat in range(args.repeats):
            for name in names:
                r = run_once(name, archive, work / "out", logs, args.sample_interval)
                runs[name].append(r)
                size = f"{r['files']:,} files" if name.endswith("jpg") else f"{r['files'] / 1e6:.1f} MB of records"
                pss = f", tree PSS {_mb(r['pss_kib']):.0f} MB" if r["pss_kib"] is not None else ""
                print(
                    f"  [{repeat + 1}/{args.repeats}] {name:<18} {r['wall']:7.2f} s  (user {r['user']:5.1f} s, sys "
                    f"{r['sys']:5.1f} s)"
                    f"  main {_mb(r['main_kib']):4.0f} MB  child {_mb(r['children_kib']):4.0f} MB{pss}  ({size})",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for line in report(runs, args.repeats, args.sample_interval > 0):
        print(line)
    if _commit() != commit:
        print(f"warning: the cifarkit checkout changed during the benchmark ({commit} -> {_commit()})")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    return 0


def _make_photos(root: Path, count: int) -> int:
    """``count`` JPEG photos in two classes: smooth gradients and shapes with a little noise, which
    compress like photographs (a few hundred KB at 800x600), not like random pixels."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = ((360, 480), (600, 800), (450, 600), (480, 640))
    for i in range(count):
        h, w = sizes[i % len(sizes)]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = rng.uniform(0, 6.28, 3)
        channels = [127 + 100 * np.sin(x / rng.uniform(40, 120) + y / rng.uniform(40, 120) + p) for p in phase]
        image = np.stack(channels, -1) + rng.normal(0, 6, (h, w, 3))
        folder = root / "train" / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"{i:05d}.jpg", quality=90)
    return sum(p.stat().st_size for p in root.rglob("*.jpg"))


def photo_bench(count: int, repeats: int, tmp: Path) -> int:
    work = Path(tempfile.mkdtemp(prefix="cifarkit-photos-", dir=tmp))
    try:
        source_bytes = _make_photos(work / "photos", count)
        print(f"photo tree: {count} JPEGs, {source_bytes / 1e6:.1f} MB; {os.cpu_count()} CPUs")
        for repeat in range(repeats):
            for encoding in ("auto", "png"):
                out = work / f"out-{encoding}"
                start = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "cifarkit",
                        "export",
                        "--source",
                        str(work / "photos"),
                        "--format",
                        "tfrecord",
                        "--encoding",
                        encoding,
                        "--out",
                        str(out),
                        "--quiet",
                    ],
                    check=True,
                    stdout=subprocess.DEVNULL,
                )
                wall = time.perf_counter() - start
                size = sum(p.stat().st_size for p in out.glob("*.tfrecord-*"))
                print(
                    f"  [{repeat + 1}/{repeats}] --encoding {encoding:<4} {wall:6.2f} s  {size / 1e6:7.1f} MB of "
                    "records"
                )
                shutil.rmtree(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _read_datasets(out: str) -> int:
    """Hugging Face's own reader: the Arrow cache built from the files, then every image decoded."""
    import datasets
    import numpy as np

    cache = os.path.join(os.path.dirname(out), "hf-cache")  # built anew for each run
    loaded = datasets.load_dataset("parquet", data_dir=out, cache_dir=cache)
    count = 0
    for split in loaded.values():
        for batch in split.with_format("numpy").iter(batch_size=1000):
            count += len(np.stack(batch["image"]))
    return 0 if count == IMAGES else 1


def _read_cifarkit(out: str) -> int:
    import cifarkit

    (x, _), (t, _) = cifarkit.load_numpy(out)
    return 0 if len(x) + len(t) == IMAGES else 1


def _read_webdataset(out: str) -> int:
    """The webdataset library, as a PyTorch user reads the shards: each split's brace pattern
    (from cifarkit_info.json), every image decoded to a uint8 array."""
    import json

    import webdataset as wds

    patterns = {s: e["pattern"] for s, e in json.loads(Path(out, "cifarkit_info.json").read_text())["splits"].items()}
    count = 0
    for pattern in patterns.values():
        shards = wds.WebDataset(os.path.join(out, pattern), shardshuffle=False)
        count += sum(image.shape == (32, 32, 3) for image, _ in shards.decode("rgb8").to_tuple("png", "cls"))
    return 0 if count == IMAGES else 1


def _read_grain(out: str) -> int:
    """Grain over TFDS's data source, as a JAX user reads the shards: every record at random (a
    global shuffle), batches of 1,000 decoded to uint8 arrays, in this process."""
    import grain.python as grain
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(out)
    count = 0
    for split in builder.info.splits:
        source = builder.as_data_source(split)
        sampler = grain.IndexSampler(len(source), grain.NoSharding(), shuffle=True, num_epochs=1, seed=0)
        loader = grain.DataLoader(data_source=source, sampler=sampler, operations=[grain.Batch(1000)], worker_count=0)
        count += sum(len(batch["image"]) for batch in loader)
    return 0 if count == IMAGES else 1


READERS = {
    "parquet": {"datasets": _read_datasets, "cifarkit": _read_cifarkit},
    "webdataset": {"webdataset": _read_webdataset, "cifarkit": _read_cifarkit},
    "arrayrecord": {"grain": _read_grain, "cifarkit": _read_cifarkit},
}


def read_bench(fmt: str, archive: Path, repeats: int, tmp: Path) -> int:
    """Export once (untimed), then each reader of ``fmt`` in turn, each run a subprocess."""
    work = Path(tempfile.mkdtemp(prefix="cifarkit-read-", dir=tmp))
    out = work / "export"
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cifarkit",
                "export",
                "-s",
                str(archive),
                "--no-verify",
                "-f",
                fmt,
                "-o",
                str(out),
                "-q",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        print(f"read back {fmt}: {IMAGES:,} images, {size / 1e6:.1f} MB exported; {os.cpu_count()} CPUs")
        for repeat in range(repeats):
            for reader in READERS[fmt]:
                shutil.rmtree(work / "hf-cache", ignore_errors=True)
                start = time.perf_counter()
                command = [sys.executable, __file__, "--read-back", fmt, "--reader", reader, "--out", str(out)]
                subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall = time.perf_counter() - start
                print(f"  [{repeat + 1}/{repeats}] {reader:<9} {wall:6.2f} s  {IMAGES / wall:8,.0f} images/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
