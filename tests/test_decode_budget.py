"""Decoding within a budget: every image header and IDX header is checked before anything is
allocated for its pixels, so a file of a few hundred KB cannot take gigabytes; prediction decodes
a big JPEG at reduced scale; statistics turn pixels into floats a chunk at a time; a split index of
thousands of digits is one line."""

from __future__ import annotations

import csv
import gzip
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synth import make_learnable_cifar10
from typer.testing import CliRunner

import cifarkit
from cifarkit.cli import app
from cifarkit.errors import UsageError
from cifarkit.readers.stats import PIXEL_CHUNK, RunningMoments
from cifarkit.sources.image_file import (
    FLOOR_PIXELS,
    PIXELS_PER_BYTE,
    read_image,
    read_image_scaled,
)

runner = CliRunner()
GIB = 1 << 20  # VmHWM is in KiB


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))


def _zero_png(width: int, height: int, padding: int = 0) -> bytes:
    """A complete black RGB PNG; ``padding`` bytes of a private chunk make the file bigger."""
    packer = zlib.compressobj(9)
    row = bytes(1 + 3 * width)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    extra = _chunk(b"prVt", bytes(padding)) if padding else b""
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


# The child's own peak: VmHWM of its address space. (ru_maxrss would also count the pages of this
# test process that the child shared between fork and exec.)
_CLI_IN_A_CHILD = """
import sys
from cifarkit.cli import main
try:
    main()
finally:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("peak", peak.split()[1], file=sys.stderr)
"""


def _cli_child(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI in a fresh process, and its peak resident memory in KiB (TensorFlow included)."""
    run = subprocess.run(
        [sys.executable, "-c", _CLI_IN_A_CHILD, *args], capture_output=True, text=True, timeout=300, check=False
    )  # its exit status is what the test reads
    peak = next(int(line.split()[1]) for line in run.stderr.splitlines() if line.startswith("peak "))
    return run, peak


# --- predict ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    data = make_learnable_cifar10(tmp_path_factory.mktemp("budget-data"), per_batch=10, test=20)
    workdir = tmp_path_factory.mktemp("budget-run") / "run"
    result = runner.invoke(
        app,
        [
            "train",
            "lenet5",
            "--data",
            str(data.path),
            "--workdir",
            str(workdir),
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return workdir


def test_predict_refuses_a_png_bomb_from_its_header_in_one_line(run, tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_zero_png(9900, 9900))  # 294 MB as RGB in about 300 KB; predict took 1.5 GB
    assert bomb.stat().st_size < 400_000
    result = runner.invoke(app, ["predict", str(run), str(bomb)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"cifarkit: error: {bomb}: image larger than cifarkit reads (9900 x 9900 pixels; {PIXELS_PER_BYTE} pixels "
        f"per byte of its {bomb.stat().st_size:,}-byte file above 16.8 megapixels), refused before decoding: a "
        "decompression bomb? (--skip-bad to go on without it)"
    )


# The pixels of both images as RGB are 202 MB; decoded scaled down, they cost a small part of it.
IMAGES_BUDGET_KIB = 256 * 1024


def test_predict_stays_within_its_budget_on_the_biggest_images_its_budget_lets_through(run, tmp_path):
    edge = tmp_path / "edge.png"  # as many pixels as its bytes allow: 19.4 MP, 58 MB as RGB
    edge.write_bytes(_zero_png(4400, 4400, padding=4400 * 4400 // PIXELS_PER_BYTE))
    photo = tmp_path / "photo.jpg"  # 48 megapixels: 144 MB as RGB, 192 MB inside Pillow
    y, x = np.arange(6000)[:, None], np.arange(8000)[None, :]
    channels = [np.broadcast_to(c % 256, (6000, 8000)).astype(np.uint8) for c in (x // 31, y // 17, (x + y) // 23)]
    Image.fromarray(np.stack(channels, -1)).save(photo)
    del channels
    out = tmp_path / "p.csv"
    child, peak = _cli_child("predict", str(run), str(edge), str(photo), "--csv", str(out))
    assert child.returncode == 0, child.stderr[-2000:]
    with open(out, newline="") as handle:
        rows = {Path(row[0]).name: row[1:3] for row in list(csv.reader(handle))[1:]}
    assert rows == {"edge.png": ["4400", "4400"], "photo.jpg": ["6000", "8000"]}  # the files' own sizes
    # What the images cost beyond the same command on a small one: TensorFlow and Keras alone take
    # 0.8-1 GB, more where Keras finds pandas and pyarrow installed (they import them).
    small = tmp_path / "small.png"
    Image.new("RGB", (32, 32)).save(small)
    _, baseline = _cli_child("predict", str(run), str(small), "--csv", str(tmp_path / "small.csv"))
    assert peak - baseline < IMAGES_BUDGET_KIB, f"predict peaked {peak - baseline:,} KiB above {baseline:,} KiB"
    assert peak < 1.25 * GIB, f"predict peaked at {peak:,} KiB, TensorFlow and Keras included"


def test_a_big_jpeg_is_decoded_at_reduced_scale_and_a_small_one_exactly(tmp_path):
    rng = np.random.default_rng(0)
    big, small = tmp_path / "big.jpg", tmp_path / "small.jpg"
    Image.fromarray(rng.integers(0, 255, (3000, 4000, 3), np.uint8)).save(big, quality=90)
    Image.fromarray(rng.integers(0, 255, (300, 400, 3), np.uint8)).save(small, quality=90)
    image, size = read_image_scaled(big, 1 << 20)
    assert size == (3000, 4000) and image.shape == (1500, 2000, 3)  # libjpeg's 1/2: at least 1 MP kept
    image, size = read_image_scaled(small, 1 << 20)
    assert size == (300, 400) and np.array_equal(image, read_image(small))


# --- statistics and IDX -------------------------------------------------------------------------


def _idx_gz(path: Path, dims: tuple[int, ...], body: int | None = None) -> Path:
    ndim = len(dims)
    head = bytes([0, 0, 8, ndim]) + struct.pack(f">{ndim}I", *dims)
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(head)
        left = int(np.prod(dims)) if body is None else body
        while left:
            handle.write(bytes(min(left, 1 << 22)))
            left -= min(left, 1 << 22)
    return path


def test_stats_refuses_an_idx_image_over_its_budget_in_bounded_memory(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = _idx_gz(folder / "train-images-idx3-ubyte.gz", (1, 16000, 16000))  # 256 MB; stats took 2.2 GB
    _idx_gz(folder / "train-labels-idx1-ubyte.gz", (1,))
    assert images.stat().st_size < 300_000
    child, peak = _cli_child("stats", "-s", str(folder), "--no-verify", "-q", "-o", str(tmp_path / "s.json"))
    assert child.returncode == 1
    assert (
        f"cifarkit: error: {images}: refused: its header says 1 16000x16000 images (256,000,000 bytes); an "
        "MNIST-family image has at most 1,048,576 pixels"
    ) in child.stderr
    assert peak < GIB, f"stats peaked at {peak:,} KiB"


def test_a_gzipped_idx_file_that_would_decompress_past_its_ratio_is_refused(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images = _idx_gz(folder / "train-images-idx3-ubyte.gz", (90_000, 28, 28))  # 70 MB of zeros in 70 KB
    _idx_gz(folder / "train-labels-idx1-ubyte.gz", (90_000,))
    result = runner.invoke(app, ["info", "-s", str(folder), "--no-verify"])
    assert result.exit_code == 1
    assert result.output.startswith(
        f"cifarkit: error: {images}: refused: its header says 90,000 28x28 images "
        "(70,560,000 bytes), more than 32 times the gzipped file's size"
    )


def test_statistics_turn_pixels_into_floats_a_chunk_at_a_time_and_stay_exact():
    rng = np.random.default_rng(1)
    batch = rng.integers(0, 256, (4, 1024, 1024, 3), np.uint8)  # 12 MB; 100 MB at once as float64
    moments = RunningMoments()
    tracemalloc.start()
    moments.update(batch)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 3 * PIXEL_CHUNK * 8 * 1.5, f"update allocated {peak:,} bytes at its peak"
    flat = batch.reshape(-1, 3).astype(np.float64) / 255.0
    np.testing.assert_allclose(moments.total, flat.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(moments.outer, flat.T @ flat, rtol=1e-12)
    assert moments.pixels == 4 * 1024 * 1024 and moments.images == 4


def test_the_pixel_budget_lets_every_honest_size_through():
    from cifarkit.sources.image_file import pixel_budget, size_refusal

    assert size_refusal(32, 32, 2_400) is None  # CIFAR, as PNG
    assert size_refusal(28, 28, 300) is None  # MNIST
    assert size_refusal(4096, 4096, 100) is None  # anything up to the floor, whatever its bytes
    assert size_refusal(8000, 6000, 6_000_000) is None  # a 48 MP photo as a JPEG of 1 bit a pixel
    assert pixel_budget(10**9) == 100_000_000 and FLOOR_PIXELS == 4096 * 4096


# --- split syntax -------------------------------------------------------------------------------


def test_a_split_index_of_thousands_of_digits_is_one_line(tmp_path):
    data = make_learnable_cifar10(tmp_path / "data", per_batch=4, test=8)
    spec = "train[" + "9" * 5000 + ":]"  # int() refuses it with a ValueError beyond 4,300 digits
    with pytest.raises(UsageError, match=r"an index of 5,000 digits; indices have at most 18"):
        cifarkit.load(data.path, split=spec)
    result = runner.invoke(
        app,
        [
            "train",
            "lenet5",
            "--data",
            str(data.path),
            "--workdir",
            str(tmp_path / "run"),
            "--train-split",
            "train[:" + "1" * 5000 + "%]",
        ],
    )
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "an index of 5,000 digits" in result.output


def test_a_split_may_decode_to_more_than_one_image_may_but_only_in_proportion_to_its_bytes():
    from cifarkit.sources.image_file import MAX_PIXELS, split_pixel_budget

    # An honest photo export: 100,000 photos of 0.2 MP in 4.7 GB of shards is 20,000 MP together,
    # far past one image's cap; a few MB of shards may decode to a few hundred MB of RGB at most.
    assert split_pixel_budget(4_700_000_000) > 100_000 * 200_000 > MAX_PIXELS
    assert 3 * split_pixel_budget(4_000_000) < 300_000_000
