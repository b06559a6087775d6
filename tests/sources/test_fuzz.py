"""A fixed-seed fuzz run of every reader, in the suite: only cifarkit's own errors come out.

It runs scripts/fuzz_sources.py (the same targets and mutators as the long runs) in a child
process, so that a segfault is a finding and the memory it reports is its own: the byte readers
(pickles, .bin, tar, IDX) for a few thousand cases, which take seconds, and each of the other
targets (TFRecord framing and Examples, every JSON, CSV and label file, run folders, image
files, .tflite models, a photo tree's listing on disk) for eight cases each, a fraction of a
second apiece. With the seeds built from scratch (a one-epoch training and a TFLite export
among them) both take about 20 s on the 2-core machine, 25-45 s while other work loads it; a
second run finds the seeds built.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_sources.py"
BYTE_TARGETS = ("cifar-batches", "cifar-archives", "idx")
FOLDER_TARGETS = (
    "tfrecord-framing",
    "tfrecord-example",
    "arrayrecord",
    "webdataset",
    "parquet",
    "dataset-info",
    "features-json",
    "label-names",
    "cifarkit-info",
    "manifest-csv",
    "export-state",
    "run-config",
    "report-json",
    "backup-state",
    "images",
    "tflite",
    "tree-listing",
)
# Outcomes that are not findings: success, cifarkit's own one-line errors, a corrupt record or
# an image in a record that does not decode, which the CLI reports with its shard's name, and a
# tree listing's temporary file damaged so that it reads as other names that a folder may hold.
ACCEPTED = {
    "ok",
    "undetected",
    "SourceError",
    "UnsafeInputError",
    "ChecksumError",
    "UsageError",
    "OutputError",
    "tf:DataLossError",
    "tf:InvalidArgumentError",
}
PEAK_RSS_MB = 300  # the byte readers: numpy and cifarkit take ~60 MB; no case may take much more


def fuzz(tmp_path: Path, targets: tuple[str, ...], cases: int, timeout: int) -> dict:
    args = [a for name in targets for a in ("--target", name)]
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", str(cases), "--seed", "0", "--out", str(tmp_path), "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def saved(tmp_path: Path) -> list[str]:
    folder = tmp_path / "findings"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_fuzz_byte_readers_fixed_seed(tmp_path):
    summary = fuzz(tmp_path, BYTE_TARGETS, 3000, 120)
    assert summary["findings"] == {}, (summary, saved(tmp_path))
    assert summary["cases"] == 3000
    outcomes = summary["outcomes"]
    # Every outcome is success or one of cifarkit's own errors, and the run reached all three.
    assert set(outcomes) <= {"ok", "SourceError", "UnsafeInputError", "ChecksumError"}, outcomes
    assert outcomes["ok"] > 0 and outcomes["SourceError"] > 0 and outcomes["UnsafeInputError"] > 0
    assert summary["worker_peak_rss_mb"] < PEAK_RSS_MB, summary


def test_fuzz_every_other_reader_fixed_seed(tmp_path):
    per_target = 8
    summary = fuzz(tmp_path, FOLDER_TARGETS, per_target * len(FOLDER_TARGETS), 240)
    assert summary["findings"] == {}, (summary["findings"], saved(tmp_path))
    # Each target ran its cases, and what came out is success or cifarkit's own error.
    assert {t: sum(o.values()) for t, o in summary["by_target"].items()} == dict.fromkeys(FOLDER_TARGETS, per_target)
    assert set(summary["outcomes"]) <= ACCEPTED, summary["outcomes"]
