#!/usr/bin/env python3
"""Benchmark exporting a class-per-folder photo tree at scale: wall, images/s, peak memory, and the
reading floor beside it.

The script makes (or takes, --tree) a tree ROOT/<class>/<name>.jpg of N photo-sized JPEGs: a few
hundred distinct ones (--distinct; smooth scenes with a little noise, 400-560 x 300-420, quality
90, about 50 KB) made once, and hard links to them, so a 100,000-file tree costs a few MB of disk
and its bytes come from the page cache (the figures are of the converter, not of the disk).
Classes (--classes, 1,000 as ImageNet's) get the files in turn.

Per N: the floor, then each contender (--only, in the order given) in a fresh process of its own:

  floor     the reading floor (:func:`reading_floor`): list the tree, read every file's bytes and
            check it as any converter that promises readable output must (Pillow opens it and
            decodes it at 1/8 scale, which still reads all its entropy-coded data), on as many
            processes as the export uses; also the bytes alone, without the check
  cifarkit  `cifarkit export --source ROOT --format tfrecord --out OUT --quiet --workers W` (extra
            options after --)
  tfds      the conversion a TFDS user writes instead: a GeneratorBasedBuilder over the same tree
            (tfds.features.Image from each path, tfds.features.ClassLabel from its folder),
            download_and_prepare in one process, TFRecord (scripts/bench_tfds_builder.py)
  beam      cifarkit's export with --runner beam (Beam's DirectRunner, W processes); skipped, in
            one line, where apache_beam does not import

Each reports its own peak RSS and the largest among the processes it reaped (the workers); its
process tree's PSS is sampled every 0.25 s. Each output is then read back by TFDS in another
process and its count per class compared with the tree's (--no-read-back skips it); each other
contender's wall, CPU and memory are printed over the TFDS builder's.

    python scripts/bench_photo_tree.py --sizes 10000,100000
    python scripts/bench_photo_tree.py --sizes 10000 --only cifarkit,tfds
    python scripts/bench_photo_tree.py --sizes 20000 --only cifarkit -- --shard-size 64MB
    python scripts/bench_photo_tree.py --big          # adds 1,000,000 where the disk allows
    python scripts/bench_photo_tree.py --sizes 1000000 --small --only cifarkit --no-floor

--small makes the distinct JPEGs a fifth of each side (80-112 x 60-84, about 3 KB): a million of
them export to about 3 GB where photo-sized ones take about 53 GB; the listing, and so the main
process's memory, is the same.

The machine's load average is printed at the start and the end of each run: on a shared machine
the wall times move with it, the memory figures do not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_export import PssSampler, _commit, _mb  # noqa: E402  (a script beside this one)

DEFAULT_SIZES = (10_000, 100_000)
BIG = 1_000_000
MB = 1e6


def make_distinct(folder: Path, count: int, seed: int = 0, scale: float = 1.0) -> list[Path]:
    """``count`` distinct photo-like JPEGs of 400-560 x 300-420 (landscape and portrait), each side
    times ``scale``."""
    import io

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        long, short = int(rng.integers(400, 561) * scale), int(rng.integers(300, 421) * scale)
        h, w = (short, long) if i % 3 else (long, short)
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        phase = rng.uniform(0, 6.28, 3)
        channels = [127 + 100 * np.sin(x / rng.uniform(30, 90) + y / rng.uniform(30, 90) + p) for p in phase]
        image = np.clip(np.stack(channels, -1) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=90)
        path = folder / f"photo_{i:04d}.jpg"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def make_tree(root: Path, count: int, distinct: list[Path], classes: int) -> None:
    """ROOT/<class>/img_<n>.jpg, ``count`` files in turn over ``classes`` folders, each a hard link
    to one of ``distinct`` (a copy where the file system has no hard links)."""
    names = [f"n{c:08d}" for c in range(min(classes, count))]
    for name in names:
        (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(count):
        target = root / names[i % len(names)] / f"img_{i:08d}.jpg"
        try:
            os.link(distinct[i % len(distinct)], target)
        except OSError:
            shutil.copyfile(distinct[i % len(distinct)], target)


def _files(root: Path) -> list[str]:
    return [entry.path for folder in sorted(os.scandir(root), key=lambda e: e.name) for entry in os.scandir(folder)]


def _read(paths: list[str]) -> int:
    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            total += len(handle.read())
    return total


def _read_and_check(paths: list[str]) -> int:
    """Each file's bytes read and the file checked: Pillow decodes it at 1/8 scale (every byte of
    its entropy-coded data is still read), as a converter that refuses damaged files must."""
    import io

    from PIL import Image

    total = 0
    for path in paths:
        with open(path, "rb") as handle:
            data = handle.read()
        with Image.open(io.BytesIO(data)) as image:
            image.draft(image.mode, (max(1, image.width // 8), max(1, image.height // 8)))
            image.load()
        total += len(data)
    return total


def _cpu() -> float:
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime


def reading_floor(root: Path, workers: int, check: bool = True, chunk: int = 500) -> tuple[float, float, int, int]:
    """Seconds (wall, and CPU of this process and its workers) to list ``root`` and read (and
    check) every file on ``workers`` processes; the number of files and their bytes."""
    import multiprocessing

    start, cpu = time.perf_counter(), _cpu()
    paths = _files(root)
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    work = _read_and_check if check else _read
    pool = multiprocessing.get_context("fork").Pool(workers)
    total = sum(pool.imap_unordered(work, chunks))
    pool.close()
    pool.join()  # reaped: their CPU time is in RUSAGE_CHILDREN
    return time.perf_counter() - start, _cpu() - cpu, len(paths), total


CONTENDERS = ("cifarkit", "tfds", "beam")
NEEDS = {"cifarkit": "cifarkit", "tfds": "tensorflow_datasets", "beam": "apache_beam"}


def contender(kind: str, tree: str, out: str, result: str, extra: list[str]) -> int:
    """One conversion of ``tree`` into ``out``: `cifarkit export` as the console script runs it
    (``beam``: with --runner beam, Beam's DirectRunner by default), or TFDS's builder
    (``download_and_prepare`` in this process); then this process's peak RSS and that of the
    largest process it reaped (Linux reports KiB)."""
    code = 0
    if kind == "tfds":
        import bench_tfds_builder
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()  # as cifarkit runs --quiet
        bench_tfds_builder.build(tree, out)
    else:
        from cifarkit.cli import main

        runner = ["--runner", "beam"] if kind == "beam" else []
        sys.argv = ["cifarkit", "export", "--source", tree, "--format", "tfrecord", "--out", out, "--quiet"]
        sys.argv += [*runner, *extra]
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    usage = {
        "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        # TFDS's one child is `uname -p` (platform.processor()), whose peak is the builder's own RSS
        # when it forked: no worker's
        "children_kib": None if kind == "tfds" else resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    Path(result).write_text(json.dumps(usage))
    return code


def verify(tree: str, out: str, result: str) -> int:
    """Read ``out`` back with TFDS and compare it with the tree (:func:`bench_tfds_builder.read_back`)."""
    import bench_tfds_builder

    Path(result).write_text(json.dumps(bench_tfds_builder.check_output(tree, out)))
    return 0


def _env(code: str | None) -> dict:
    """The environment with ``code`` (--code, an older checkout) first on the import path."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [code, os.environ.get("PYTHONPATH")])))


def _subprocess(argv: list[str], log: Path, code: str | None, sample: bool = False):
    """Runs this script with ``argv`` in a fresh process: its wall seconds, rusage and peak PSS."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    with open(log, "w") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stderr, stderr=subprocess.STDOUT, env=_env(code))
        sampler = PssSampler(proc.pid, 0.25)
        if sample:
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    sampler.done.set()
    if sample:
        sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv[:2])} failed:\n{log.read_text()[-3000:]}")
    return wall, usage, sampler.peak_kib


def available(kind: str, code: str | None) -> bool:
    """Whether the contender's library imports here (in a fresh process, as the contender runs)."""
    probe = subprocess.run([sys.executable, "-c", f"import {NEEDS[kind]}"], capture_output=True, env=_env(code))
    return probe.returncode == 0


def run_contender(kind: str, tree: Path, work: Path, args, extra: list[str]) -> dict:
    out, result = work / f"out-{kind}", work / f"{kind}-result.json"
    shutil.rmtree(out, ignore_errors=True)
    result.unlink(missing_ok=True)
    os.sync()  # the previous run's writeback must not land on this one's clock
    argv = ["--contender", kind, str(tree), str(out), str(result), "--", *extra]
    wall, usage, pss_kib = _subprocess(argv, work / f"{kind}.log", args.code, sample=True)
    inner = json.loads(result.read_text())
    shards = sorted(p.stat().st_size for p in out.rglob("*.tfrecord-*"))
    row = {
        "kind": kind,
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "main_mb": _mb(inner["self_kib"]),
        "worker_mb": math.nan if inner["children_kib"] is None else _mb(inner["children_kib"]),
        "pss_mb": _mb(pss_kib),
        "shards": len(shards),
        "shard_mb": (shards[0] / MB, shards[-1] / MB) if shards else (0.0, 0.0),
        "read_back": "not read",
    }
    if not args.no_read_back:
        back_file = work / f"{kind}-read-back.json"
        _subprocess(["--verify", str(tree), str(out), str(back_file)], work / f"{kind}-read-back.log", args.code)
        back = json.loads(back_file.read_text())
        row["read_back"] = f"{back['n']:,} {'ok' if back['match'] else 'MISMATCH'}"
    shutil.rmtree(out, ignore_errors=True)
    return row


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def floor(tree: Path, args) -> dict:
    """The reading floor of ``tree`` (:func:`reading_floor`, bytes alone and checked), or only its count."""
    if args.no_floor:
        files = sum(1 for folder in os.scandir(tree) if folder.is_dir() for _ in os.scandir(folder))
        return {"n": files, "bytes": 0, "read": math.nan, "check": math.nan, "cpu": math.nan}
    read, _, files, total = reading_floor(tree, args.workers, check=False)
    check, cpu = reading_floor(tree, args.workers, check=True)[:2]
    return {"n": files, "bytes": total, "read": read, "check": check, "cpu": cpu}


def bench(n: int, work: Path, distinct: list[Path], args, kinds: list[str]) -> None:
    """The floor and each contender on a tree of ``n`` files, printed as they finish."""
    tree = Path(args.tree) if args.tree else work / f"tree-{n}"
    if not args.tree:
        start = time.perf_counter()
        make_tree(tree, n, distinct, args.classes)
        print(f"made {n:,} files in {time.perf_counter() - start:.1f} s (hard links)", flush=True)
    fl = floor(tree, args)
    measured = f"{fl['bytes'] / MB:,.0f} MB; floor on {args.workers} processes: read {fl['read']:.1f} s"
    measured += f", read and check {fl['check']:.1f} s ({fl['cpu']:.1f} CPU s)"
    measured = "floor not measured" if args.no_floor else measured
    print(f"\n{fl['n']:,} files, {measured}\n{HEADER}", flush=True)
    rows = {}
    for kind in kinds:
        before = _load()
        extra = [] if kind == "tfds" else ["--workers", str(args.workers), *args.extra]
        rows[kind] = run_contender(kind, tree, work, args, extra)
        rows[kind]["load"] = f"{before} -> {_load()}"
        print(report(rows[kind], fl), flush=True)
    if "tfds" in rows:
        for kind in (k for k in rows if k != "tfds"):
            print(ratios(rows[kind], rows["tfds"]))
    if not args.tree and not args.keep:
        shutil.rmtree(tree, ignore_errors=True)


def _peak(row: dict) -> float:
    return row["main_mb"] if math.isnan(row["worker_mb"]) else max(row["main_mb"], row["worker_mb"])


def ratios(row: dict, tfds: dict) -> str:
    return (
        f"{row['kind']} / tfds: wall {row['wall'] / tfds['wall']:.2f}x, CPU {row['cpu'] / tfds['cpu']:.2f}x,"
        f" PSS {row['pss_mb'] / tfds['pss_mb']:.2f}x, largest process's peak RSS {_peak(row) / _peak(tfds):.2f}x"
    )


LABELS = {"cifarkit": "cifarkit export", "tfds": "TFDS builder", "beam": "cifarkit, Beam Direct"}
HEADER = (
    f"{'contender':<22} {'wall s':>8} {'images/s':>9} {'cpu s':>7} {'main MB':>8} {'worker MB':>9} {'PSS MB':>7}"
    f" {'/check':>7} {'cpu/chk':>7} {'shards':>6} {'shard MB':>11} {'read back':>13}  load before -> after"
)


def report(row: dict, fl: dict) -> str:
    n, wall, (lo, hi) = fl["n"], row["wall"], row["shard_mb"]
    worker = "-" if math.isnan(row["worker_mb"]) else f"{row['worker_mb']:.0f}"
    return (
        f"{LABELS[row['kind']]:<22} {wall:>8.1f} {n / wall:>9,.0f} {row['cpu']:>7.1f} {row['main_mb']:>8.0f}"
        f" {worker:>9} {row['pss_mb']:>7.0f} {wall / fl['check']:>6.2f}x {row['cpu'] / fl['cpu']:>6.2f}x"
        f" {row['shards']:>6} {lo:>5.0f}-{hi:<5.0f} {row['read_back']:>13}  {row['load']}"
    )


def contenders(only: str, code: str | None) -> list[str]:
    """The contenders asked for, in the order given, less those whose library does not import here
    (each said in one line)."""
    kinds = [k.strip() for k in only.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(CONTENDERS))
    if unknown:
        raise SystemExit(f"--only: unknown contender {', '.join(unknown)}; choose from {', '.join(CONTENDERS)}")
    found = []
    for kind in kinds:
        if available(kind, code):
            found.append(kind)
        else:
            extra = " (pip install 'cifarkit[beam]')" if kind == "beam" else ""
            print(f"{kind}: skipped, {NEEDS[kind]} does not import here{extra}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="tree sizes N, comma-separated")
    parser.add_argument("--big", action="store_true", help=f"also N={BIG:,} where the disk allows")
    parser.add_argument("--tree", help="export this tree instead of making one (--sizes is ignored)")
    parser.add_argument("--distinct", type=int, default=300, help="distinct JPEGs the tree links to")
    parser.add_argument("--small", action="store_true", help="distinct JPEGs a fifth of each side (~3 KB)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--only", default=",".join(CONTENDERS), help="contenders, comma-separated, in this order")
    parser.add_argument("--no-floor", action="store_true", help="contenders only (the floor is the same for any code)")
    parser.add_argument("--no-read-back", action="store_true", help="do not read each output back with TFDS")
    parser.add_argument("--code", help="export with the cifarkit package in this folder (an older checkout)")
    parser.add_argument("--keep", action="store_true", help="keep the trees made (under --tmp)")
    parser.add_argument("--tmp", default=None, help="where to make the trees (default: the system's temp folder)")
    parser.add_argument("--contender", nargs=4, metavar=("KIND", "TREE", "OUT", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("--verify", nargs=3, metavar=("TREE", "OUT", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="after --: more `cifarkit export` options (cifarkit and beam)")
    args = parser.parse_args()
    if args.contender:
        return contender(*args.contender, args.extra)
    if args.verify:
        return verify(*args.verify)

    sizes = [int(s) for s in args.sizes.split(",")] if not args.tree else [0]
    work = Path(tempfile.mkdtemp(prefix="cifarkit-photo-tree-", dir=args.tmp))
    if args.big and shutil.disk_usage(work).free > 20e9:  # a million links: ~1 GB of directory entries
        sizes.append(BIG)
    code = f"the package in {args.code}" if args.code else _commit()
    print(f"cifarkit {code}, {os.cpu_count()} cores, {args.workers} workers; load {_load()} at start")
    kinds = contenders(args.only, args.code)
    try:
        distinct = (
            [] if args.tree else make_distinct(work / "distinct", args.distinct, scale=0.2 if args.small else 1.0)
        )
        if distinct:
            size = sum(p.stat().st_size for p in distinct) / len(distinct)
            print(f"{len(distinct)} distinct JPEGs, {size / 1e3:.0f} KB on average, {args.classes} classes")
        for n in sizes:
            bench(n, work, distinct, args, kinds)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(LEGEND)
    return 0


LEGEND = """
cifarkit export: `cifarkit export --format tfrecord --workers W`; TFDS builder: scripts/bench_tfds_builder.py,
download_and_prepare in one process; cifarkit, Beam Direct: `--runner beam`, Beam's DirectRunner on W processes.
main MB: peak RSS of the contender's own process; worker MB: the largest peak RSS among the processes it
started (counting pages shared copy-on-write); PSS MB: the peak of its process tree's summed PSS, sampled
every 0.25 s. Floor: list the tree and read every file (read), and decode each at 1/8 scale (check: what a
converter that refuses damaged files must do; TFDS's Image feature copies a path's bytes unchecked);
/check, cpu/chk: wall and CPU over the checked floor's. read back: the examples TFDS reads from the output,
ok when each class's count is the tree's. MB = 10**6 bytes."""


if __name__ == "__main__":
    sys.exit(main())
