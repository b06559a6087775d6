"""``--shard-size``: shards even in bytes, none over the size asked for, the same bytes on every
run and resumable shard by shard, for TFRecord (and ArrayRecord, its records in other files),
WebDataset and Parquet; ``--shards N`` as before, and the two exclusive."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.errors import UsageError
from cifarkit.formats import sharding
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.metadata.export_state import read_state, resume_command
from cifarkit.sources import open_source

SHARD_SIZE = 200_000
TOLERANCE = 0.1  # a shard may pass the size asked for by a tenth of it (the sizes are estimated)


def _photo_tree(root: Path, seed: int = 0) -> Path:
    """Three classes of noisy JPEGs from 16 to 120 pixels a side: files of about 1 KB to 30 KB,
    so that equal image counts make uneven shards."""
    rng = np.random.default_rng(seed)
    for c in ("cat", "dog", "owl"):
        (root / c).mkdir(parents=True)
        for i in range(40):
            side = int(rng.integers(16, 121))
            pixels = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
            (root / c / f"{i:03d}.jpg").write_bytes(buffer.getvalue())
    return root


SHARD_FILES = {"tfrecord": "*.tfrecord-*", "webdataset": "train/*.tar", "parquet": "data/*.parquet"}


def _shards(out: Path, fmt: str = "tfrecord") -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob(SHARD_FILES[fmt]))}


def _record_count(shard: bytes) -> int:
    count, at = 0, 0
    while at < len(shard):
        at += 12 + int.from_bytes(shard[at : at + 8], "little") + 4  # length, its CRC, data, its CRC
        count += 1
    return count


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return _photo_tree(tmp_path_factory.mktemp("photos") / "tree")


@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset", "parquet"])
def test_shard_size_gives_even_shards_under_the_size_and_the_same_bytes_again(photos, tmp_path, fmt):
    dataset = open_source(photos)
    export_dataset(dataset, tmp_path / "a", ExportOptions(format=fmt, shard_size="200KB", workers=1))
    shards = _shards(tmp_path / "a", fmt)
    sizes = [len(data) for data in shards.values()]
    total = sum(sizes)
    assert len(shards) in (-(-total // SHARD_SIZE), -(-total // SHARD_SIZE) + 1), sizes
    assert max(sizes) <= SHARD_SIZE * (1 + TOLERANCE), sizes
    assert max(sizes) - min(sizes) <= 0.1 * total / len(sizes), sizes  # even: within 10% of the mean
    if fmt == "tfrecord":
        assert sum(_record_count(data) for data in shards.values()) == 120
        # Image counts per shard differ: the bounds follow the bytes, not the count.
        assert len({_record_count(data) for data in shards.values()}) > 1

    # Another process, two workers: the same files, byte for byte.
    export_dataset(open_source(photos), tmp_path / "b", ExportOptions(format=fmt, shard_size=200_000, workers=2))
    assert _shards(tmp_path / "b", fmt) == shards
    # A shard lost (an interrupted run): the re-run writes it again, and only it, the same bytes.
    files = {p.name: p for p in (tmp_path / "b").glob(SHARD_FILES[fmt])}
    lost = sorted(files)[1]
    files[lost].unlink()
    kept = {name: path.stat().st_mtime_ns for name, path in files.items() if name != lost}
    export_dataset(open_source(photos), tmp_path / "b", ExportOptions(format=fmt, shard_size=200_000))
    assert _shards(tmp_path / "b", fmt) == shards
    assert {name: files[name].stat().st_mtime_ns for name in kept} == kept


def test_equal_image_counts_would_have_made_uneven_shards(photos, tmp_path):
    """What --shard-size is for: --shards N of this tree gives files further apart in size."""
    export_dataset(open_source(photos), tmp_path / "size", ExportOptions(format="tfrecord", shard_size=200_000))
    count = len(_shards(tmp_path / "size"))
    export_dataset(open_source(photos), tmp_path / "count", ExportOptions(format="tfrecord", shards=count))
    by_size = [len(d) for d in _shards(tmp_path / "size").values()]
    by_count = [len(d) for d in _shards(tmp_path / "count").values()]
    assert sum(by_size) == sum(by_count)
    assert max(by_size) - min(by_size) < max(by_count) - min(by_count), (by_size, by_count)


def test_a_resumed_export_with_other_sizes_is_refused_not_mixed(photos, tmp_path):
    """The shards' bounds follow the files' sizes: where they moved, the finished shards hold
    other images than the plan, so the export is not resumed into them."""
    tree = _photo_tree(tmp_path / "tree", seed=1)
    out = tmp_path / "out"
    export_dataset(open_source(tree), out, ExportOptions(format="tfrecord", shard_size=200_000))
    state = read_state(out)
    assert state is not None and state.model_extra["shard_bounds"]
    first = tree / "cat" / "000.jpg"
    first.write_bytes(first.read_bytes() + bytes(40_000))  # a JPEG may carry bytes after its end
    with pytest.raises(Exception, match="other options; pass --overwrite"):
        export_dataset(open_source(tree), out, ExportOptions(format="tfrecord", shard_size=200_000))


def test_default_caps_a_shard_in_bytes_and_keeps_arrays_as_they_were(photos, cifar10_tar, tmp_path, monkeypatch):
    monkeypatch.setattr(sharding, "DEFAULT_SHARD_BYTES", 150_000)
    export_dataset(open_source(photos), tmp_path / "photos", ExportOptions(format="tfrecord"))
    sizes = [len(d) for d in _shards(tmp_path / "photos").values()]
    assert len(sizes) > 1 and max(sizes) <= 150_000 * (1 + TOLERANCE), sizes
    # CIFAR (arrays of one size): one shard per 5,000 images, split by count, and the state as an
    # export made before --shard-size, so that one still resumes.
    export_dataset(open_source(cifar10_tar.path), tmp_path / "cifar", ExportOptions(format="tfrecord"))
    state = json.loads((tmp_path / "cifar" / ".cifarkit-export.json").read_text())
    assert state["shards"] == {"train": 1, "test": 1}
    assert "shard_bounds" not in state and "shard_size" not in state


def test_an_unfinished_export_names_its_shard_size_in_the_command_that_finishes_it(photos, tmp_path):
    out = tmp_path / "out"
    export_dataset(open_source(photos), out, ExportOptions(format="tfrecord", shard_size="1MiB"))
    command = resume_command(read_state(out), out)
    assert "--shard-size 1048576" in command and "--shards" not in command


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MB", 256_000_000),
        ("256MiB", 256 << 20),
        ("1GiB", 1 << 30),
        ("1.5KB", 1500),
        ("65536", 65536),
        ("2 gb", 2_000_000_000),
    ],
)
def test_sizes_are_read_with_their_units(text, size):
    assert sharding.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "MB", "12 parsecs", "-5MB", "0", "1iB", "0.1"])
def test_a_size_that_is_not_one_is_refused_in_one_line(text):
    with pytest.raises(UsageError, match=r"^--shard-size must be") as refused:
        sharding.parse_size(text)
    assert "\n" not in str(refused.value)


def test_shards_and_shard_size_are_exclusive_and_shard_size_is_for_sharded_records():
    with pytest.raises(UsageError, match="--shards and --shard-size both choose the shards: give one"):
        ExportOptions(format="tfrecord", shards=4, shard_size="1MB")
    with pytest.raises(
        UsageError, match="--shard-size is for --format tfrecord or webdataset or parquet or arrayrecord; "
    ):
        ExportOptions(format="jpg", shard_size="1MB")


def test_the_command_line_takes_shard_size_and_refuses_it_beside_shards(photos, tmp_path):
    runner = CliRunner()
    base = ["export", "--source", str(photos), "--format", "tfrecord", "--workers", "1", "-q"]
    done = runner.invoke(app, [*base, "--out", str(tmp_path / "a"), "--shard-size", "300KB"])
    assert done.exit_code == 0, done.output
    assert all(len(d) <= 300_000 * (1 + TOLERANCE) for d in _shards(tmp_path / "a").values())
    refused = runner.invoke(app, [*base, "--out", str(tmp_path / "b"), "--shard-size", "1MB", "--shards", "2"])
    assert refused.exit_code == 2
    assert refused.output.strip().splitlines() == [
        "cifarkit: error: --shards and --shard-size both choose the shards: give one. "
        "Received: shards=2, shard_size=1000000"
    ]
    assert not (tmp_path / "b").exists()
