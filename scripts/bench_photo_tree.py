#!/usr/bin/env python3
"""Benchmark exporting a class-per-folder photo tree at scale: wall, images/s, peak memory, and the
reading floor beside it.

The script makes (or takes, --tree) a tree ROOT/<class>/<name>.jpg of N photo-sized JPEGs: a few
hundred distinct ones (--distinct; smooth scenes with a little noise, 400-560 x 300-420, quality
90, about 50 KB) made once, and hard links to them, so a 100,000-file tree costs a few MB of disk
and its bytes come from the page cache (the figures are of the converter, not of the disk).
Classes (--classes, 1,000 as ImageNet's) get the files in turn.

Per N, each in its own process:

  floor    the reading floor (:func:`reading_floor`): list the tree, read every file's bytes and
           check it as any converter that promises readable output must (Pillow opens it and
           decodes it at 1/8 scale, which still reads all its entropy-coded data), on as many
           processes as the export uses; also the bytes alone, without the check
  export   `cifarkit export --source ROOT --format tfrecord --out OUT --quiet` (extra options
           after --), run inside a wrapper that reports its own peak RSS (the main process) and
           the largest peak among the processes it reaped (the workers); the whole tree's PSS is
           sampled every 0.25 s (shared pages divided among the processes sharing them)

    python scripts/bench_photo_tree.py --sizes 10000,100000
    python scripts/bench_photo_tree.py --sizes 20000 -- --shard-size 64MB
    python scripts/bench_photo_tree.py --big          # adds 1,000,000 where the disk allows

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


def make_distinct(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` distinct photo-like JPEGs of 400-560 x 300-420 (landscape and portrait)."""
    import io

    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        long, short = int(rng.integers(400, 561)), int(rng.integers(300, 421))
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


def contender(tree: str, out: str, result: str, extra: list[str]) -> int:
    """`cifarkit export`, as the console script runs it, then this process's peak RSS and that of
    the largest process it reaped (Linux reports KiB)."""
    from cifarkit.cli import main

    sys.argv = ["cifarkit", "export", "--source", tree, "--format", "tfrecord", "--out", out, "--quiet", *extra]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    usage = {
        "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    Path(result).write_text(json.dumps(usage))
    return code


def run_export(tree: Path, out: Path, work: Path, extra: list[str], code: str | None = None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    result = work / "export-result.json"
    result.unlink(missing_ok=True)
    command = [sys.executable, str(Path(__file__).resolve()), "--contender", str(tree), str(out), str(result)]
    with open(work / "export.stderr", "w") as stderr:
        start = time.perf_counter()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [code, os.environ.get("PYTHONPATH")])))
        proc = subprocess.Popen([*command, "--", *extra], stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        sampler = PssSampler(proc.pid, 0.25)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    sampler.done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0 or not result.is_file():
        raise SystemExit(f"export failed:\n{(work / 'export.stderr').read_text()[-3000:]}")
    inner = json.loads(result.read_text())
    shards = sorted(p.stat().st_size for p in out.glob("*.tfrecord-*"))
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "main_mb": _mb(inner["self_kib"]),
        "worker_mb": _mb(inner["children_kib"]),
        "pss_mb": _mb(sampler.peak_kib),
        "shards": len(shards),
        "shard_mb": (shards[0] / MB, shards[-1] / MB) if shards else (0.0, 0.0),
        "bytes": sum(shards),
    }


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def bench(n: int, work: Path, distinct: list[Path], args, extra: list[str]) -> dict:
    tree = Path(args.tree) if args.tree else work / f"tree-{n}"
    if not args.tree:
        start = time.perf_counter()
        make_tree(tree, n, distinct, args.classes)
        print(f"  made {n:,} files in {time.perf_counter() - start:.1f} s (hard links)", flush=True)
    load_before = _load()
    if args.no_floor:
        floor_read = floor_check = floor_cpu = math.nan
        files, total = sum(1 for folder in os.scandir(tree) for _ in os.scandir(folder)), 0
    else:
        floor_read, _, files, total = reading_floor(tree, args.workers, check=False)
        floor_check, floor_cpu = reading_floor(tree, args.workers, check=True)[:2]
    export = run_export(tree, work / "out", work, ["--workers", str(args.workers), *extra], args.code)
    shutil.rmtree(work / "out", ignore_errors=True)
    if not args.tree and not args.keep:
        shutil.rmtree(tree, ignore_errors=True)
    return {
        "n": files,
        "bytes": total,
        "floor_read": floor_read,
        "floor_check": floor_check,
        "floor_cpu": floor_cpu,
        "load": f"{load_before} -> {_load()}",
        **export,
    }


def report(row: dict) -> str:
    n, wall = row["n"], row["wall"]
    lo, hi = row["shard_mb"]
    return (
        f"{n:>9,} {wall:>8.1f} {n / wall:>9,.0f} {row['cpu']:>7.1f} {row['main_mb']:>8.0f} {row['worker_mb']:>9.0f}"
        f" {row['pss_mb']:>8.0f} {row['floor_read']:>7.1f} {row['floor_check']:>8.1f} {row['floor_cpu']:>7.1f}"
        f" {wall / row['floor_check']:>6.2f}x {row['cpu'] / row['floor_cpu']:>6.2f}x"
        f" {row['shards']:>6} {lo:>6.0f}-{hi:<6.0f}  {row['load']}"
    )


HEADER = (
    f"{'images':>9} {'wall s':>8} {'images/s':>9} {'cpu s':>7} {'main MB':>8} {'worker MB':>9} {'PSS MB':>8}"
    f" {'read s':>7} {'check s':>8} {'cpu s':>7} {'/floor':>7} {'cpu/fl':>7}"
    f" {'shards':>6} {'shard MB':>13}  load (1 min avg) before -> after"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="tree sizes N, comma-separated")
    parser.add_argument("--big", action="store_true", help=f"also N={BIG:,} where the disk allows")
    parser.add_argument("--tree", help="export this tree instead of making one (--sizes is ignored)")
    parser.add_argument("--distinct", type=int, default=300, help="distinct JPEGs the tree links to")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--no-floor", action="store_true", help="export only (the floor is the same for any code)")
    parser.add_argument("--code", help="export with the cifarkit package in this folder (an older checkout)")
    parser.add_argument("--keep", action="store_true", help="keep the trees made (under --tmp)")
    parser.add_argument("--tmp", default=None, help="where to make the trees (default: the system's temp folder)")
    parser.add_argument("--contender", nargs=3, metavar=("TREE", "OUT", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument("extra", nargs="*", help="after --: more `cifarkit export` options")
    args = parser.parse_args()
    if args.contender:
        return contender(*args.contender, args.extra)

    sizes = [int(s) for s in args.sizes.split(",")] if not args.tree else [0]
    work = Path(tempfile.mkdtemp(prefix="cifarkit-photo-tree-", dir=args.tmp))
    if args.big and shutil.disk_usage(work).free > 20e9:  # a million links: ~1 GB of directory entries
        sizes.append(BIG)
    code = f"the package in {args.code}" if args.code else _commit()
    print(f"cifarkit {code}, {os.cpu_count()} cores, {args.workers} workers; load {_load()} at start")
    try:
        distinct = [] if args.tree else make_distinct(work / "distinct", args.distinct)
        if distinct:
            size = sum(p.stat().st_size for p in distinct) / len(distinct)
            print(f"{len(distinct)} distinct JPEGs, {size / 1e3:.0f} KB on average, {args.classes} classes")
        rows = []
        for n in sizes:
            rows.append(bench(n, work, distinct, args, args.extra))
            print(HEADER if len(rows) == 1 else "", report(rows[-1]), sep="\n" if len(rows) == 1 else "", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(
        "main MB: peak RSS of the export's main process; worker MB: the largest peak RSS among its workers\n"
        "(counting pages shared copy-on-write with the main process); PSS MB: the peak of the whole tree's\n"
        "summed PSS. read s: list the tree and read every file's bytes; check s: and decode each at 1/8\n"
        "scale (the reading floor), its wall and CPU seconds; /floor, cpu/fl: the export's over the floor's.\n"
        "MB = 10**6 bytes."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
