"""TFRecord shards an attacker wrote: framing, record counts, labels, Examples and image sizes are
checked before TensorFlow reads a record, and each refusal is one line naming the shard.

Each folder is a real export of a tiny synthetic CIFAR archive whose metadata is left as written;
one shard is then rewritten with records framed by hand (correct CRCs), as an attacker would.
"""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cifarkit
from cifarkit.cli import app
from cifarkit.errors import SourceError
from cifarkit.formats.codecs.example import NotAnExample, example_bytes, frame_record, parse_example
from cifarkit.formats.codecs.png import encode_png
from cifarkit.formats.codecs.record_frame import masked_crc32c, records_of
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.formats.record_checks import encoded_size
from cifarkit.sources import open_source

runner = CliRunner()
SHARD = "cifar10-train.tfrecord-00000-of-00002"


@pytest.fixture(scope="module")
def export(cifar10_tar, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tfr") / "export"
    export_dataset(
        open_source(cifar10_tar.path), out, ExportOptions(format="tfrecord", shards=2, workers=1, quiet=True)
    )
    return out


def _copy(export: Path, dest: Path) -> Path:
    shutil.copytree(export, dest, ignore=shutil.ignore_patterns(".cifarkit.lock"))
    return dest


def _records(shard: Path) -> list[bytes]:
    return [bytes(data) for _, data in records_of(shard)]


def _rewrite(folder: Path, records: list[bytes], name: str = SHARD) -> Path:
    shard = folder / name
    shard.write_bytes(b"".join(frame_record(r) for r in records))
    return shard


def _replace(export: Path, dest: Path, index: int, record: bytes) -> Path:
    folder = _copy(export, dest)
    records = _records(folder / SHARD)
    records[index] = record
    return _rewrite(folder, records)


def _zero_png(side: int) -> bytes:
    """A complete 1-bit black PNG of side x side: tens of KB on disk, side**2 * 3 bytes decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)))

    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: "), result.output
    return lines[0]


# --- framing and record counts ------------------------------------------------------------------


# The child's own peak: VmHWM of its address space. (ru_maxrss would also count the pages of this
# test process that the child shared between fork and exec.)
_INFO_IN_A_CHILD = """
import sys
from cifarkit.cli import main
try:
    main()
finally:
    peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    print("peak", peak.split()[1], file=sys.stderr)
"""


def _cli_child(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """The CLI in a fresh process (a crash there is its exit status, not this test's), and its
    peak resident memory in KiB."""
    run = subprocess.run(
        [sys.executable, "-c", _INFO_IN_A_CHILD, *args], capture_output=True, text=True, check=False, timeout=300
    )
    peak = next(int(line.split()[1]) for line in run.stderr.splitlines() if line.startswith("peak "))
    return run, peak


def test_a_length_field_past_the_end_of_the_shard_is_refused_before_tensorflow_reads_it(export, tmp_path):
    folder = _copy(export, tmp_path / "huge")
    length = struct.pack("<Q", 1 << 40)  # TensorFlow allocated this and the process died (SIGSEGV)
    (folder / SHARD).write_bytes(length + struct.pack("<I", masked_crc32c(length)) + bytes(4))
    run, _ = _cli_child("info", "-s", str(folder))
    assert run.returncode == 1, run.stderr[-2000:]
    assert (
        f"cifarkit: error: {folder / SHARD}: not a valid TFRecord shard: record at byte 0: claims "
        "1,099,511,627,776 bytes, more than the 0 left in the file"
    ) in run.stderr


def _train(folder: Path, workdir: Path) -> list[str]:
    return ["train", "lenet5", "--data", str(folder), "--workdir", str(workdir), "--epochs", "1", "--quiet"]


def test_a_shard_cut_at_a_record_boundary_is_refused_by_every_command(export, tmp_path):
    folder = _copy(export, tmp_path / "short")
    records = _records(folder / SHARD)
    shard = _rewrite(folder, records[: len(records) // 2])  # still valid framing: only the count shows it
    why = f"{shard}: holds {len(records) // 2} records; the dataset's metadata lists {len(records)}"
    out = tmp_path / "png"
    for args in (
        ["info", "-s", str(folder)],
        ["export", "-s", str(folder), "-f", "png", "-o", str(out), "-q"],
        ["stats", "-s", str(folder), "-o", str(tmp_path / "s.json"), "-q"],
        _train(folder, tmp_path / "run"),
    ):
        assert why in _error_line(runner.invoke(app, args)), args
    assert not (out / "train").exists()  # export once wrote the 4 of 8 images the shard held, exit 0
    with pytest.raises(SourceError, match=f"^{shard}: holds"):
        cifarkit.load(folder, split="test")  # any split: the folder as a whole is refused


def test_a_shard_with_records_added_is_refused(export, tmp_path):
    folder = _copy(export, tmp_path / "long")
    records = _records(folder / SHARD)
    shard = _rewrite(folder, records + records[:1])
    assert f"{shard}: holds {len(records) + 1} records" in _error_line(runner.invoke(app, ["info", "-s", str(folder)]))


# --- what a record holds ------------------------------------------------------------------------


def _record(label=1, image=None, **extra) -> bytes:
    image = encode_png(np.zeros((32, 32, 3), np.uint8)) if image is None else image
    return example_bytes({"id": b"train_00003", "image": image, "label": label, **extra})


@pytest.mark.parametrize("label", [2**62, 99, 10, -1])
def test_a_label_out_of_range_is_refused_as_int64_before_any_narrowing(export, tmp_path, label):
    shard = _replace(export, tmp_path / "label", 3, _record(label))  # 2^62 was read as 0, exit 0
    line = _error_line(runner.invoke(app, ["info", "-s", str(shard.parent)]))
    why = (
        f"{shard}: record 3 (at byte {_offset(shard, 3):,}): its 'label' {label} is out of range for the "
        "dataset's 10 classes"
    )
    assert line.endswith(why)
    with pytest.raises(SourceError) as caught:  # shards read in a shuffled order go through the same check
        cifarkit.load(shard.parent, split="train", shuffle_files=True)
    assert str(caught.value) == why


def _offset(shard: Path, index: int) -> int:
    return [offset for offset, _ in records_of(shard)][index]


def test_a_coarse_label_out_of_range_is_refused(cifar100_tar, tmp_path):
    out = tmp_path / "c100"
    export_dataset(open_source(cifar100_tar.path), out, ExportOptions(format="tfrecord", workers=1, quiet=True))
    shard = next(out.glob("*-train.tfrecord-*"))
    records = _records(shard)
    fields = parse_example(records[0])
    records[0] = example_bytes(
        {"id": fields["id"][0], "image": fields["image"][0], "label": fields["label"][0], "coarse_label": 20}
    )
    shard.write_bytes(b"".join(frame_record(r) for r in records))
    with pytest.raises(
        SourceError, match=f"^{shard}: record 0 .*'coarse_label' 20 is out of range for the dataset's 20"
    ):
        cifarkit.load(out, split="train")


def test_a_record_that_is_not_an_example_is_one_line(export, tmp_path):
    junk = random.Random(5).randbytes(200)  # TensorFlow put these bytes in its message: UnicodeDecodeError
    shard = _replace(export, tmp_path / "junk", 5, junk)
    line = _error_line(runner.invoke(app, ["info", "-s", str(shard.parent)]))
    assert f"{shard}: record 5 (at byte {_offset(shard, 5):,}): not a tf.train.Example (" in line


@pytest.mark.parametrize("kind", ["png", "raw"])
def test_a_record_of_a_0x0_image_is_refused_at_export(export, tmp_path, kind):
    folder = _copy(export, tmp_path / "zero")
    records = _records(folder / SHARD)
    if kind == "png":
        records[2] = _record(
            image=encode_png(np.zeros((1, 1, 3), np.uint8)).replace(
                struct.pack(">II", 1, 1), struct.pack(">II", 0, 0), 1
            )
        )
        why = "its header gives 0 x 0 pixels, an image with no pixels"
    else:  # raw pixels of mixed sizes, as TFDS stores a Tensor: image/value and image/shape
        features = json.loads((folder / "features.json").read_text())
        features["featuresDict"]["features"]["image"] = {
            "pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
            "tensor": {"dtype": "uint8", "encoding": "bytes", "shape": {"dimensions": ["-1", "-1", "3"]}},
        }
        (folder / "features.json").write_text(json.dumps(features))
        for name in [SHARD, *(p.name for p in folder.glob("*.tfrecord-*") if p.name != SHARD)]:
            count = len(_records(folder / name))
            _rewrite(
                folder,
                [
                    example_bytes(
                        {
                            "id": b"x",
                            "label": 1,
                            "image/value": bytes(0 if i == 2 and name == SHARD else 12),
                            "image/shape": (0, 0, 3) if i == 2 and name == SHARD else (2, 2, 3),
                        }
                    )
                    for i in range(count)
                ],
                name,
            )
        why = "its image's shape [0, 0, 3] holds no pixels"
    if kind == "png":
        _rewrite(folder, records)
    out = tmp_path / "out"
    line = _error_line(runner.invoke(app, ["export", "-s", str(folder), "-f", "jpg", "-o", str(out), "-q"]))
    assert f"{folder / SHARD}: record 2 (at byte" in line and line.endswith(why)


def test_raw_pixels_must_fill_their_declared_shape_exactly(export, tmp_path):
    folder = _copy(export, tmp_path / "raw")
    features = json.loads((folder / "features.json").read_text())
    features["featuresDict"]["features"]["image"] = {
        "pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
        "tensor": {"dtype": "uint8", "encoding": "bytes", "shape": {"dimensions": ["32", "32", "3"]}},
    }
    (folder / "features.json").write_text(json.dumps(features))
    for shard in folder.glob("*.tfrecord-*"):
        count = len(_records(shard))
        _rewrite(
            folder,
            [_record(image=bytes(3000 if i == 4 and shard.name == SHARD else 3072)) for i in range(count)],
            shard.name,
        )
    with pytest.raises(
        SourceError, match=r"record 4 .*its image holds 3,000 bytes, not the 3,072 its shape \[32, 32, 3\] needs"
    ):
        cifarkit.load(folder, split="train")


def test_a_declared_shape_no_shard_can_hold_is_refused_before_tensorflow_allocates_it(export, tmp_path):
    folder = _copy(export, tmp_path / "ints")
    features = json.loads((folder / "features.json").read_text())
    features["featuresDict"]["features"]["image"] = {  # 300 million int64 values: 2.4 GB a record
        "pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
        "tensor": {"dtype": "uint8", "encoding": "none", "shape": {"dimensions": ["10000", "10000", "3"]}},
    }
    (folder / "features.json").write_text(json.dumps(features))
    line = _error_line(runner.invoke(app, ["info", "-s", str(folder)]))
    assert f"{folder / 'features.json'}: declares images of shape [10000, 10000, 3] (300,000,000 values), more" in line


# --- decompression bombs ------------------------------------------------------------------------


def test_a_png_bomb_in_a_record_is_refused_from_its_header_in_bounded_memory(export, tmp_path):
    bomb = _zero_png(20000)  # 1.2 GB as RGB; `info` took 1.8 GB decoding it
    assert len(bomb) < 80_000
    shard = _replace(export, tmp_path / "bomb", 5, _record(image=bomb))
    run, peak = _cli_child("info", "-s", str(shard.parent))
    assert run.returncode == 1, run.stderr[-2000:]
    assert (
        f"{shard}: record 5 (at byte {_offset(shard, 5):,}): image larger than cifarkit reads (20000 x 20000 "
        "pixels; the limit is 100 megapixels)"
    ) in run.stderr
    assert peak < 1 << 20, f"info peaked at {peak:,} KiB, TensorFlow included"


def test_many_small_bombs_are_refused_for_the_pixels_they_decode_to_together(export, tmp_path):
    folder = _copy(export, tmp_path / "many")
    features = json.loads((folder / "features.json").read_text())  # images of any size
    features["featuresDict"]["features"]["image"]["image"]["shape"]["dimensions"] = ["-1", "-1", "3"]
    (folder / "features.json").write_text(json.dumps(features))
    records = _records(folder / SHARD)
    floor = _zero_png(4096)  # each alone is at the floor (decoded whatever its size): 50 MB as RGB
    _rewrite(folder, [_record(image=floor) for _ in records])
    with pytest.raises(SourceError, match=r"the train split's images decode to [0-9,]+ pixels, more than 16 per byte"):
        cifarkit.load(folder, split="train")


# --- the parsers themselves -----------------------------------------------------------------------


def test_encoded_size_reads_what_pillow_reads(tmp_path):
    from PIL import Image

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), np.uint8))
    for options in (
        {"format": "PNG"},
        {"format": "JPEG"},
        {"format": "JPEG", "progressive": True},
        {"format": "JPEG", "exif": b"Exif\0\0" + bytes(3000)},
    ):
        path = tmp_path / "image"
        image.save(path, **options)
        assert encoded_size(path.read_bytes()) == (53, 37), options
    assert encoded_size(b"GIF89a" + bytes(20)) is None


def test_whatever_the_python_parser_accepts_tensorflow_parses_without_an_undecodable_error():
    """TensorFlow reports a record it cannot parse with the record's raw bytes in the message,
    which Python cannot decode: so cifarkit's parser must refuse everything TensorFlow would."""
    import tensorflow as tf

    honest = example_bytes({"id": b"x", "image": b"\x89PNG" + bytes(300), "label": 7, "shape": (32, 32, 3)})
    spec = {
        "label": tf.io.FixedLenFeature([], tf.int64, default_value=-1),
        "image": tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    rng, accepted = random.Random(0), 0
    for _ in range(1500):
        mutated = bytearray(honest)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        mutated = bytes(mutated[: rng.randrange(len(mutated) + 1)] if rng.random() < 0.3 else mutated)
        try:
            parse_example(mutated)
        except NotAnExample:
            continue
        accepted += 1
        try:
            tf.io.parse_single_example(mutated, spec)
        except tf.errors.InvalidArgumentError:
            pass  # a readable message: a value of the wrong type or count
    assert accepted > 200


@pytest.mark.parametrize("encoding", ["auto", "raw"])
def test_a_tfrecord_export_of_mixed_image_sizes_exports_again_with_the_same_pixels(tmp_path, encoding):
    from tests.synth import make_image_folder

    truth = make_image_folder(tmp_path / "photos", sizes=((40, 30), (17, 23)))
    first = tmp_path / "raw"
    export_dataset(
        open_source(tmp_path / "photos"), first, ExportOptions(format="tfrecord", encoding="raw", workers=1, quiet=True)
    )
    again = tmp_path / "again"
    export_dataset(
        open_source(first), again, ExportOptions(format="tfrecord", encoding=encoding, workers=1, quiet=True)
    )
    back = open_source(again)
    for split, expected in truth.splits.items():
        images = back.batches[split][0].images
        assert [image.shape for image in images] == [image.shape for image in expected.images]
        assert all(np.array_equal(a, b) for a, b in zip(images, expected.images))
        assert back.batches[split][0].labels.tolist() == list(expected.labels)


def test_an_image_whose_data_does_not_decode_under_a_correct_crc_is_named_by_shard_and_record(export, tmp_path):
    # The PNG's header passes the record checks; one byte of its compressed data is flipped (the
    # record CRC made right again), so only the decoder finds it, deep inside tf.data.
    folder = _copy(export, tmp_path / "damaged")
    records = _records(folder / SHARD)
    features = parse_example(records[3])
    png = bytearray(features["image"][0])
    idat = png.index(b"IDAT") + 4
    png[idat : idat + 40] = bytes(40)  # zeros over the deflate stream's start: not a valid stream
    crc = zlib.crc32(png[idat - 4 : idat + int.from_bytes(png[idat - 8 : idat - 4], "big")])
    end = idat + int.from_bytes(png[idat - 8 : idat - 4], "big")
    png[end : end + 4] = crc.to_bytes(4, "big")  # the chunk's own CRC right again too
    features["image"] = [bytes(png)]
    records[3] = example_bytes({k: v[0] if len(v) == 1 else tuple(v) for k, v in features.items()})
    shard = _rewrite(folder, records)
    for command in ("info", "stats"):
        result = runner.invoke(app, [command, "--source", str(folder), "--no-verify"])
        assert result.exit_code == 1, result.output
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("cifarkit: error: ") and "Traceback" not in result.output
        assert f"{shard}: record 3 holds an image that cannot be decoded" in line, (command, line)
    with pytest.raises(SourceError, match="record 3 holds an image that cannot be decoded"):
        open_source(folder, verify=False)
