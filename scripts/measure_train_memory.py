#!/usr/bin/env python3
"""The resident memory of a long command over time, and what its log said: ``cifarkit train`` on a
large export, for one.

Runs the command after ``--`` with its stdout and stderr going to a log file (--log), as under a
scheduler or ``nohup``; samples the summed RSS of it and all its descendants from /proc every
--interval seconds into a CSV trace (seconds, rss_mb); and, past --limit seconds, stops it with
SIGINT (SIGTERM, then SIGKILL, if it has not ended --grace seconds later). Then prints, over the
run up to the stop: the peak, the median, the RSS at each quarter of it, the slope of a
least-squares line through its second half (MB a minute), how many progress lines the log got
(the last one quoted), and the images the run saw where the log says (``batch B`` in the start
line, the last ``epoch E/N: step S/T`` line, and the ``epoch E/N:`` lines of finished epochs).

    python scripts/measure_train_memory.py --csv trace.csv --log train.log --limit 900 -- \\
        cifarkit train alexnet --data /tmp/mem100k/export -w /tmp/mem100k/run-alexnet

RSS is each process's resident pages, so pages forked children share are counted in each.
"""

from __future__ import annotations

import argparse
import csv
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_export import _tree  # noqa: E402  (a script beside this one)

STEP = re.compile(r"^epoch (\d+)/\d+: step ([\d,]+)/([\d,]+),", re.M)
EPOCH_END = re.compile(r"^epoch (\d+)/\d+: (?!step )", re.M)
PROGRESS = re.compile(r"^epoch \d+/\d+: |images/s|ETA ")
BATCH = re.compile(r"\bbatch (\d+) on ")


def rss_mb(root: int) -> float:
    """The summed VmRSS of ``root`` and its descendants, in MB (10^6 bytes)."""
    kib = 0
    for pid in _tree(root):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue  # it ended between the listing and the read
        found = re.search(r"^VmRSS:\s+(\d+)", status, re.M)
        kib += int(found.group(1)) if found else 0
    return kib * 1024 / 1e6


def run(argv: list[str], log: Path, trace: Path, interval: float, limit: float, grace: float):
    """(samples [(seconds, MB)] up to the stop, the seconds it was stopped at or None, exit code)."""
    samples, stopped_at, signals = [], None, [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]
    with open(log, "wb") as out, open(trace, "w", newline="") as table:
        writer = csv.writer(table, lineterminator="\n")
        writer.writerow(["seconds", "rss_mb"])
        start = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        next_signal = start + limit
        while proc.poll() is None:
            now = time.monotonic()
            seconds, mb = now - start, rss_mb(proc.pid)
            if not mb:
                continue  # it ended after poll()
            writer.writerow([f"{seconds:.1f}", f"{mb:.1f}"])
            table.flush()
            if stopped_at is None:
                samples.append((seconds, mb))
            if now >= next_signal and signals:
                proc.send_signal(signals.pop(0))
                stopped_at = seconds if stopped_at is None else stopped_at
                next_signal = now + grace
            time.sleep(max(0.0, interval - (time.monotonic() - now)))
    return samples, stopped_at, proc.returncode


def summary(samples: list[tuple[float, float]]) -> dict:
    seconds, mb = [s for s, _ in samples], [m for _, m in samples]
    end = seconds[-1]
    at = {q: mb[min(range(len(seconds)), key=lambda i: abs(seconds[i] - q * end / 4))] for q in (1, 2, 3, 4)}
    half = [(s, m) for s, m in samples if s >= end / 2]
    slope = statistics.linear_regression(*zip(*half)).slope * 60 if len(half) > 1 else float("nan")
    return {"seconds": end, "peak": max(mb), "median": statistics.median(mb), "quarters": at, "slope": slope}


def images_seen(text: str) -> tuple[int | None, str]:
    """(images trained on by the last progress line, where the log says; that line's text)."""
    batch = BATCH.search(text)
    steps = STEP.findall(text)
    finished = [int(e) for e in EPOCH_END.findall(text)]
    lines = [line for line in text.splitlines() if PROGRESS.search(line)]
    if not batch or not steps:
        return None, lines[-1] if lines else ""
    epoch, step, per_epoch = (int(value.replace(",", "")) for value in steps[-1])
    done = max([(epoch - 1) * per_epoch + step] + [e * per_epoch for e in finished])
    return done * int(batch.group(1)), lines[-1] if lines else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True, help="the trace to write: seconds, rss_mb")
    parser.add_argument("--log", type=Path, required=True, help="where the command's stdout and stderr go")
    parser.add_argument("--limit", type=float, default=float("inf"), help="seconds before SIGINT (default: none)")
    parser.add_argument("--grace", type=float, default=60.0, help="seconds between the stop signals (default: 60)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples (default: 1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command")
    args = parser.parse_args()
    argv = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not argv:
        parser.error("give the command after --")
    load = open("/proc/loadavg").read().split()[:3]
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, load {' '.join(load)}: {' '.join(argv)}", flush=True)
    samples, stopped_at, code = run(argv, args.log, args.csv, args.interval, args.limit, args.grace)
    load = open("/proc/loadavg").read().split()[:3]
    how = f"stopped with SIGINT at {stopped_at:.0f} s" if stopped_at is not None else "ended by itself"
    print(f"{time.strftime('%H:%M:%S %Z')}, load {' '.join(load)}: exit code {code}, {how}", flush=True)
    if not samples:
        raise SystemExit("no samples: the command ended before the first one")
    figures = summary(samples)
    quarters = " / ".join(f"{figures['quarters'][q]:,.0f}" for q in (1, 2, 3, 4))
    print(
        f"{figures['seconds']:.0f} s, {len(samples)} samples: peak {figures['peak']:,.0f} MB, median "
        f"{figures['median']:,.0f} MB, at each quarter {quarters} MB, second half {figures['slope']:+.1f} MB/min"
    )
    text = args.log.read_text(errors="replace")
    images, last = images_seen(text)
    count = sum(1 for line in text.splitlines() if PROGRESS.search(line))
    print(f"images seen: {'not in the log' if images is None else f'{images:,}'}; {count} progress lines in {args.log}")
    if last:
        print(f"last: {last}")


if __name__ == "__main__":
    main()
