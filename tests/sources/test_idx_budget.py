"""IDX files and Keras npz caches decode within a budget: an image over 1 MP, or a compressed file
that would grow more than 32 times, is refused from its header before its data is read."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from synth import tiny, write_split

from cifarkit.errors import UnsafeInputError
from cifarkit.sources import open_source
from cifarkit.sources.idx import GZIP_FLOOR, GZIP_RATIO, MAX_IMAGE_PIXELS


def _gz(path: Path, dims: tuple[int, ...]) -> Path:
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(bytes([0, 0, 8, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
        left = int(np.prod(dims))
        while left:
            handle.write(bytes(min(left, 1 << 22)))
            left -= min(left, 1 << 22)
    return path


def _refused(folder: Path, match: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeInputError, match=match):
            open_source(folder, verify=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"refusing it allocated {peak:,} bytes"


def test_an_idx_image_over_a_megapixel_is_refused_from_its_header(tmp_path):
    images = _gz(tmp_path / "train-images-idx3-ubyte.gz", (1, 1025, 1024))
    _gz(tmp_path / "train-labels-idx1-ubyte.gz", (1,))
    _refused(tmp_path, f"^{images}: refused: .*1025x1024 images.*at most {MAX_IMAGE_PIXELS:,} pixels")


def test_a_gzipped_idx_file_may_grow_32_times_or_to_16_mib(tmp_path):
    bomb = _gz(tmp_path / "train-images-idx3-ubyte.gz", (30_000, 28, 28))  # 23.5 MB of zeros in 23 KB
    _gz(tmp_path / "train-labels-idx1-ubyte.gz", (30_000,))
    assert bomb.stat().st_size * GZIP_RATIO < 30_000 * 784 and 30_000 * 784 > GZIP_FLOOR
    _refused(tmp_path, f"^{bomb}: refused: .*more than 32 times the gzipped file's size")
    honest = tmp_path / "honest"
    write_split(honest, "train", *tiny(40, 1))  # random pixels: about 1.0 times
    write_split(honest, "t10k", *tiny(20, 2))
    zeros = honest / "t10k-images-idx3-ubyte.gz"
    _gz(zeros, (20, 28, 28))  # zeros under the floor: read whatever the ratio
    dataset = open_source(honest, verify=False)
    assert dataset.count("train") == 40 and dataset.count("test") == 20


def test_an_npz_member_that_would_grow_more_than_32_times_is_refused(tmp_path):
    x = np.zeros((30_000, 28, 28), np.uint8)  # 23.5 MB that deflate keeps in about 23 KB
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, x)
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x_train.npy", buffer.getvalue())
    _refused(path, "x_train: refused: 23,520,128 bytes from [0-9,]+ compressed, more than 32 times")
