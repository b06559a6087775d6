"""A fixed-seed fuzz run of the dataset readers, in the suite: only cifarkit's own errors come out.

It runs scripts/fuzz_sources.py (the same mutators as the long runs) for a fixed number of cases,
in a child process so that a segfault is a finding and the memory it reports is its own. About
4,000 cases take 6-15 s on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fuzz_sources.py"
CASES = 4000
PEAK_RSS_MB = 300  # numpy and cifarkit take ~60 MB; no case may take much more


def test_fuzz_readers_fixed_seed(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", str(CASES), "--seed", "0", "--out", str(tmp_path), "--json",
         "--case-seconds", "10", "--memory-mb", "64"],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    saved = sorted(p.name for p in (tmp_path / "findings").glob("*")) if (tmp_path / "findings").exists() else []
    assert summary["findings"] == {}, (summary, saved)
    assert summary["cases"] == CASES
    outcomes = summary["outcomes"]
    # Every outcome is success or one of cifarkit's own errors, and the run reached all three.
    assert set(outcomes) <= {"ok", "SourceError", "UnsafeInputError", "ChecksumError"}, outcomes
    assert outcomes["ok"] > 0 and outcomes["SourceError"] > 0 and outcomes["UnsafeInputError"] > 0
    assert summary["worker_peak_rss_mb"] < PEAK_RSS_MB, summary
