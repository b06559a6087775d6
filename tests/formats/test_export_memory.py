"""Exporting takes memory that does not grow with the number of images (issue 26).

The export of a class-per-folder tree had held, per file, a Path object and its relative name,
the manifest's row and its check's path string: about 1.1 KB a file, over a GB at ImageNet's 1.28
million. The tree here is hard links to one small JPEG, so 20,000 files cost no disk; the export
runs in a fresh process with one worker (everything in that process), whose peak resident memory
(VmHWM) is read at two sizes: the difference is what the extra files cost.

A CIFAR export had held every decoded image in its main process before its workers started, and
the archive's pickles beside them while they were parsed: 4.2 KiB an image. Its pixels are now in
mapped temporary files that only the workers read.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import synth
from PIL import Image

# The export in a child, then its own peak (VmHWM: ru_maxrss would count this test's pages that
# the child shares between fork and exec).
_EXPORT_IN_A_CHILD = """
import sys
from cifarkit.cli import main
try:
    main()
finally:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("peak", peak.split()[1], file=sys.stderr)
"""

SMALL, LARGE = 2_000, 20_000
CLASSES = 100
# Bytes each file past the first SMALL may add to the peak. The compact listing costs about 60
# (a name's bytes, where it starts and ends, its folder, its label, its order); the code before
# it, about 900.
MAX_BYTES_PER_FILE = 300


def _tree(root: Path, count: int, jpeg: Path) -> Path:
    """``count`` hard links to ``jpeg`` spread over CLASSES class folders, named as a camera would."""
    for c in range(CLASSES):
        (root / f"n{c:08d}").mkdir(parents=True)
    for i in range(count):
        os.link(jpeg, root / f"n{i % CLASSES:08d}" / f"IMG_{i:08d}.jpg")
    return root


def _export_peak_kib(source: Path, out: Path, images: int, workers: int = 1, *more: str) -> int:
    args = ["export", "--source", str(source), "--format", "tfrecord", "--out", str(out), "--workers", str(workers)]
    run = subprocess.run(
        [sys.executable, "-c", _EXPORT_IN_A_CHILD, *args, "-q", *more],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"Exported {images:,} images" in run.stdout
    return next(int(line.split()[1]) for line in run.stderr.splitlines() if line.startswith("peak "))


@pytest.fixture(scope="module")
def small_jpeg(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("jpeg") / "photo.jpg"
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.write_bytes(buffer.getvalue())
    return path


def test_exporting_ten_times_the_files_adds_well_under_a_kilobyte_a_file(small_jpeg, tmp_path):
    small = _export_peak_kib(_tree(tmp_path / "small", SMALL, small_jpeg), tmp_path / "out-small", SMALL)
    large = _export_peak_kib(_tree(tmp_path / "large", LARGE, small_jpeg), tmp_path / "out-large", LARGE)
    per_file = (large - small) * 1024 / (LARGE - SMALL)
    assert per_file < MAX_BYTES_PER_FILE, f"{per_file:.0f} bytes a file (peak {small:,} KiB -> {large:,} KiB)"
    # Every file is in the export and its manifest, in the order the tree is read.
    rows = (tmp_path / "out-large" / "manifest.csv").read_text().splitlines()
    assert len(rows) == LARGE + 1
    assert rows[1].endswith(",n00000000/IMG_00000000.jpg") and rows[2].endswith(",n00000001/IMG_00000001.jpg")


# CIFAR-10 archives of one and of six training batches of 2,000 images (and a test batch each):
# batches of one size, so what one batch's reading takes is the same in both.
PER_BATCH = 2_000
TRAIN_BATCHES = {"small": 1, "large": 6}
MAX_BYTES_PER_IMAGE = 1024  # the pixels are 3,072; a label, a source name and its row remain


def test_a_cifar_export_holds_no_pixels_in_its_main_process(tmp_path):
    peaks, images = {}, {}
    for size, batches in TRAIN_BATCHES.items():
        made = synth.make_cifar10_python(tmp_path / size, per_batch=PER_BATCH, test=PER_BATCH, batches=batches, seed=1)
        images[size] = (batches + 1) * PER_BATCH
        peaks[size] = _export_peak_kib(made.path, tmp_path / f"out-{size}", images[size], 2, "--no-verify")
    per_image = (peaks["large"] - peaks["small"]) * 1024 / (images["large"] - images["small"])
    assert per_image < MAX_BYTES_PER_IMAGE, f"{per_image:.0f} bytes an image ({peaks})"
    # Every image is in the export, in the order of its batches.
    rows = (tmp_path / "out-large" / "manifest.csv").read_text().splitlines()
    assert len(rows) == images["large"] + 1 and rows[1].split(",")[1:3] == ["train", "0"]
