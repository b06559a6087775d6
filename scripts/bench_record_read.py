#!/usr/bin/env python3
"""Reading a TFRecord export, two versions of cifarkit side by side: one pass of ``cifarkit.load``
over a split, and ``cifarkit info`` (which decodes every record), each in a fresh process.

The record checks of a version (framing walked, each record parsed once per process) are paid
here and nowhere else on the honest path, so this is where they show. Rounds alternate the two
versions; the figures are medians of wall time per round and their ratio.

    python scripts/bench_record_read.py --export /tmp/cifar10-tfrecord --before /tmp/before --repeats 5

``--before`` is a checkout of the other version (``git worktree add /tmp/before <commit>``); it
is put first on ``PYTHONPATH``. Without ``--export`` the real archive
(``~/.cache/cifarkit-real/cifar-10-python.tar.gz``) is exported once to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARCHIVE = Path("~/.cache/cifarkit-real/cifar-10-python.tar.gz").expanduser()

LOAD_PASS = (
    "import sys, cifarkit\n"
    "ds = cifarkit.load(sys.argv[1], split=sys.argv[2], batch_size=1024, verify=False)\n"
    "n = sum(int(y.shape[0]) for _, y in ds)\n"
    "print(n)\n"
)


def _run(checkout: Path, argv: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout), TF_CPP_MIN_LOG_LEVEL="3")
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=checkout)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{checkout}: {' '.join(argv[:3])} failed: {done.stderr.strip()[-400:]}")
    return seconds


def contenders(export: Path, split: str) -> dict[str, list[str]]:
    return {
        "load-pass": [sys.executable, "-c", LOAD_PASS, str(export), split],
        "info": [sys.executable, "-m", "cifarkit", "info", "--source", str(export), "--no-verify"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path)
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    tmp = None
    export = args.export
    if export is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench-record-read-")
        export = Path(tmp.name) / "cifar10-tfrecord"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "cifarkit",
                "export",
                "--source",
                str(ARCHIVE),
                "--no-verify",
                "--format",
                "tfrecord",
                "--out",
                str(export),
                "--quiet",
            ],
            check=True,
        )
    sides = {"before": args.before.resolve(), "after": ROOT}
    times: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.repeats):
        for name, argv in contenders(export, args.split).items():
            for side, checkout in sides.items() if round_ % 2 == 0 else reversed(sides.items()):
                times.setdefault((name, side), []).append(_run(checkout, argv))
    print(
        f"{'contender':<10} {'before (median)':>16} {'after (median)':>15} {'after/before':>13}   per round before | "
        "after"
    )
    for name in contenders(export, args.split):
        before, after = times[(name, "before")], times[(name, "after")]
        mb, ma = statistics.median(before), statistics.median(after)
        rounds = " ".join(f"{t:.2f}" for t in before) + " | " + " ".join(f"{t:.2f}" for t in after)
        print(f"{name:<10} {mb:>15.2f}s {ma:>14.2f}s {ma / mb:>12.2f}x   {rounds}")
    print(f"load {os.getloadavg()[0]:.1f} (1-min average at the end)")


if __name__ == "__main__":
    main()
