"""Exports under hostile conditions: determinism across processes, a killed parent, two exports
into one folder, and metadata that is empty, malformed, corrupt or points outside the export."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cifarkit import data
from cifarkit.cli import app
from cifarkit.errors import SourceError, UnsafeInputError
from cifarkit.formats.codecs import example
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source
from cifarkit.sources.labelled import Batch, LabelledImages
from cifarkit.writers import folder_lock

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


def _photos(n: int, seed: int = 0) -> np.ndarray:
    """Photograph-like images: smooth colour gradients under noise of varied strength."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32].astype(np.float32) / 31
    a = rng.uniform(-1, 1, (n, 1, 1, 3, 3)).astype(np.float32)
    base = 128 + 100 * (a[..., 0] * x[..., None] + a[..., 1] * y[..., None] + a[..., 2] * (x * y)[..., None])
    noise = rng.normal(0, 1, (n, 32, 32, 3)) * rng.uniform(0, 40, (n, 1, 1, 1))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


_ENCODE_IN_A_FRESH_PROCESS = """
import hashlib, sys, numpy as np
from cifarkit.formats.codecs.png import encode_pngs
images = np.load(sys.argv[1])
print(hashlib.sha256(b"".join(encode_pngs(images))).hexdigest())
"""


def test_png_bytes_do_not_depend_on_the_process(tmp_path):
    images = _photos(400)
    np.save(tmp_path / "images.npy", images)
    digests = set()
    for seed, threads in (("0", "1"), ("12345", "4"), ("random", "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        done = subprocess.run(
            [sys.executable, "-c", _ENCODE_IN_A_FRESH_PROCESS, str(tmp_path / "images.npy")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        digests.add(done.stdout.strip())
    from cifarkit.formats.codecs.png import encode_pngs

    digests.add(hashlib.sha256(b"".join(encode_pngs(images))).hexdigest())
    assert len(digests) == 1


# --- a killed export leaves no worker behind -----------------------------------------------------

_SLOW_EXPORT = """
import os, sys, time
from pathlib import Path
from cifarkit.formats import image_tree

PIDS = Path(sys.argv[1])

def slow_chunk(*args):
    (PIDS / str(os.getpid())).write_text("")
    time.sleep(120)  # the parent is killed long before this ends

image_tree._write_chunk = slow_chunk  # forked workers inherit the patch
image_tree.IMAGES_PER_TASK = 5  # a task for each worker
sys.argv = ["cifarkit", "export", "--source", sys.argv[2], "--format", "png", "--out", sys.argv[3],
            "--workers", "2", "--quiet"]
from cifarkit.cli import main
main()
"""


def _running(pid: int) -> bool:
    """A zombie (dead, not yet reaped by a reaper that may never come) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_workers_exit_when_the_export_is_killed(cifar10_tar, tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", _SLOW_EXPORT, str(pids), str(cifar10_tar.path), str(tmp_path / "out")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.05)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2, parent.stderr.read().decode() if parent.poll() is not None else "no workers"
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 5
        while any(map(_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if _running(pid)]
    finally:
        parent.kill()
        for p in pids.iterdir():
            try:
                os.kill(int(p.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- one export at a time per folder -------------------------------------------------------------


def test_a_second_export_into_a_held_folder_is_refused_in_one_line(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    with folder_lock.hold(out, "an export"):
        result = runner.invoke(
            app,
            [
                "export",
                "--source",
                str(cifar10_tar.path),
                "--format",
                "jpg",
                "--out",
                str(out),
                "--workers",
                "1",
                "--quiet",
            ],
        )
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: ")
    assert f"pid {os.getpid()}" in lines[0] and "in use" in lines[0]
    assert [p.name for p in out.iterdir()] == [folder_lock.LOCK_NAME]  # nothing written


def test_the_lock_file_is_neither_foreign_nor_listed_nor_removed(cifar10_tar, tmp_path):
    dataset, out = open_source(cifar10_tar.path), tmp_path / "out"
    out.mkdir()
    (out / folder_lock.LOCK_NAME).write_text("")  # left by an earlier command
    export_dataset(dataset, out, ExportOptions(format="png", workers=1, quiet=True))
    manifest = (out / "manifest.csv").read_text()
    assert folder_lock.LOCK_NAME not in manifest
    export_dataset(dataset, out, ExportOptions(format="jpg", workers=1, quiet=True, overwrite=True))
    assert (out / folder_lock.LOCK_NAME).is_file()
    assert (out / folder_lock.LOCK_NAME).read_text() == ""  # released: holds no stale holder
    assert not list(out.rglob("*.png")) and len(list(out.rglob("*.jpg"))) == 40


# --- empty splits, class names, malformed or corrupt metadata ------------------------------------


def _dataset_with_an_empty_split(coarse: bool = False) -> LabelledImages:
    images = _photos(6, seed=1)
    labels = np.array([0, 1, 2, 0, 1, 2])
    batch = Batch("train", images, labels, ["b1"] * 6, labels.copy() if coarse else None)
    empty = Batch("test", images[:0], labels[:0], [], labels[:0].copy() if coarse else None)
    return LabelledImages(
        name="cifar10",
        format="test",
        location=Path("made-up"),
        class_names=("a", "b", "c"),
        batches={"train": [batch], "test": [empty]},
        coarse_class_names=("x", "y", "z") if coarse else None,
    )


@pytest.mark.parametrize("fmt", ["tfrecord", "png"])
def test_a_split_of_no_images_exports_and_reads_back_empty(tmp_path, fmt):
    out = tmp_path / fmt
    summary = export_dataset(_dataset_with_an_empty_split(), out, ExportOptions(format=fmt, workers=1, quiet=True))
    assert summary.counts == {"train": 6, "test": 0}
    source = data.open_data(out)
    images, labels = data.to_numpy(source.dataset("train"))
    np.testing.assert_array_equal(images, _photos(6, seed=1))
    if fmt == "tfrecord":
        assert source.counts["test"] == 0
        assert len(data.to_numpy(source.dataset("test"))[1]) == 0


@pytest.mark.parametrize("name", ["cat\ndog", "nul\0name", "", "line\u2028sep", "cr\r"])
def test_a_class_name_that_would_break_labels_txt_is_refused(tmp_path, name):
    dataset = _dataset_with_an_empty_split()
    dataset.class_names = ("a", name, "c")
    out = tmp_path / "out"
    with pytest.raises(SourceError, match="labels.txt") as caught:
        export_dataset(dataset, out, ExportOptions(format="png", workers=1, quiet=True))
    assert "\n" not in str(caught.value) and "\0" not in str(caught.value)
    assert not out.exists()


@pytest.fixture(scope="module")
def tfrecord_export(cifar10_tar, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tfr") / "export"
    export_dataset(
        open_source(cifar10_tar.path), out, ExportOptions(format="tfrecord", shards=3, workers=1, quiet=True)
    )
    return out


def _copy_with_info(export: Path, dest: Path, edit) -> Path:
    shutil.copytree(export, dest)
    info_path = dest / "cifarkit_info.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps(edit(info)))
    return dest


def _set_count(value):
    def edit(info):
        info["splits"]["train"]["count"] = value
        return info

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda info: [info], "JSON object"),
        (_set_count("many"), "count"),
        (_set_count(True), "count"),
        (_set_count(-1), "count"),
        (lambda info: {**info, "class_names": "cat"}, "class_names"),
        (lambda info: {**info, "splits": [1]}, "splits"),
        (lambda info: {**info, "encoding": "gif"}, "encoding"),
    ],
)
def test_a_malformed_dataset_info_is_one_clear_error(tfrecord_export, tmp_path, edit, message):
    broken = _copy_with_info(tfrecord_export, tmp_path / "broken", edit)
    with pytest.raises(SourceError, match=message) as caught:
        data.open_data(broken)
    assert "cifarkit_info.json" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.tfrecord", "sub/../../outside.tfrecord", "C:\\x"])
def test_dataset_info_naming_files_outside_the_export_is_refused(tfrecord_export, tmp_path, name):
    (tmp_path / "outside.tfrecord").write_bytes(b"")

    def edit(info):
        info["splits"]["train"]["files"][0] = name
        return info

    broken = _copy_with_info(tfrecord_export, tmp_path / "broken", edit)
    with pytest.raises(UnsafeInputError, match="outside"):
        data.open_data(broken)


def test_a_shard_that_is_a_link_out_of_the_export_is_refused(tfrecord_export, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tfrecord_export, broken)
    shard = next(broken.glob("*train.tfrecord-00001*"))
    (tmp_path / "elsewhere").write_bytes(shard.read_bytes())
    shard.unlink()
    shard.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeInputError, match="outside"):
        data.open_data(broken)


def test_a_corrupt_record_is_reported_with_its_shard(tfrecord_export, tmp_path):
    import tensorflow as tf

    from cifarkit.cli.app import tensorflow_error

    broken = tmp_path / "broken"
    shutil.copytree(tfrecord_export, broken)
    shard = next(broken.glob("*train.tfrecord-00001*"))
    raw = bytearray(shard.read_bytes())
    length = int.from_bytes(raw[:8], "little")
    raw[12 + length // 2] ^= 0xFF  # inside the first record's data: its CRC fails as TensorFlow reads it
    shard.write_bytes(bytes(raw))
    assert example.first_bad_record(shard) is not None
    assert example.first_bad_record(next(broken.glob("*train.tfrecord-00000*"))) is None
    with pytest.raises(tf.errors.DataLossError) as caught:
        data.to_numpy(data.open_data(broken).dataset("train"))
    message = tensorflow_error(caught.value)
    assert str(shard) in message and "corrupt" in message and "\n" not in message
    raw[8] ^= 0xFF  # the first record's length CRC: the shard is refused before TensorFlow opens it
    shard.write_bytes(bytes(raw))
    with pytest.raises(
        SourceError, match=f"^{shard}: not a valid TFRecord shard: record at byte 0: its length field fails its CRC"
    ):
        data.open_data(broken)


def test_a_manifest_naming_files_outside_the_export_is_refused(cifar10_tar, tmp_path):
    out = tmp_path / "png"
    export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1, quiet=True))
    manifest = (out / "manifest.csv").read_text()
    first = manifest.splitlines()[1].split(",")[0]
    for name in ("../secret.png", "/etc/hostname"):
        (out / "manifest.csv").write_text(manifest.replace(first, name, 1))
        with pytest.raises(UnsafeInputError, match="outside"):
            open_source(out)
    (tmp_path / "elsewhere").mkdir()
    (out / "train" / "cat").rename(tmp_path / "elsewhere" / "cat")
    (out / "train" / "cat").symlink_to(tmp_path / "elsewhere" / "cat")
    (out / "manifest.csv").write_text(manifest)
    with pytest.raises(UnsafeInputError, match="outside"):
        open_source(out)


def _png_chunks(data: bytes) -> list[bytes]:
    chunks, at = [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        chunks.append(data[at : at + 12 + length])
        at += 12 + length
    return chunks


def _with_crc(kind_and_data: bytes) -> bytes:
    import zlib

    return len(kind_and_data[4:]).to_bytes(4, "big") + kind_and_data + zlib.crc32(kind_and_data).to_bytes(4, "big")


def _ihdr_interlace(data: bytes, value: int) -> bytes:
    chunks = _png_chunks(data)
    body = bytearray(chunks[0][4:-4])
    body[4 + 12] = value
    return data[:8] + _with_crc(bytes(body)) + b"".join(chunks[1:])


def _idat_damaged(data: bytes) -> bytes:
    chunks = _png_chunks(data)
    idat = next(i for i, c in enumerate(chunks) if c[4:8] == b"IDAT")
    body = bytearray(chunks[idat][4:-4])
    body[4 + 10 : 4 + 20] = bytes(10)  # inside the compressed pixels; the chunk's CRC made right
    chunks[idat] = _with_crc(bytes(body))
    return data[:8] + b"".join(chunks)


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d[:8] + _png_chunks(d)[0] + b"".join(_png_chunks(d)),  # IHDR twice
        lambda d: _ihdr_interlace(d, 255),
        _idat_damaged,
    ],
)
def test_a_png_that_a_record_reader_would_refuse_is_refused_by_the_export_check(tmp_path, damage):
    from tests.synth import make_image_folder

    make_image_folder(tmp_path / "photos")
    victim = tmp_path / "photos" / "train" / "cat" / "cat_000.png"
    victim.write_bytes(damage(victim.read_bytes()))
    from PIL import Image

    with Image.open(victim) as image:
        image.verify()  # the chunks and their CRCs are whole: only a decoder finds what is wrong
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "export",
            "--data",
            str(tmp_path / "photos"),
            "--format",
            "tfrecord",
            "--out",
            str(out),
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("cifarkit: error: 1 of 10 image files cannot be read") and str(victim) in line, line
    assert not any(out.glob("*.tfrecord-*"))
    result = runner.invoke(
        app,
        [
            "export",
            "--data",
            str(tmp_path / "photos"),
            "--format",
            "tfrecord",
            "--out",
            str(out),
            "--workers",
            "1",
            "--quiet",
            "--skip-bad",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sum(len(b) for bs in open_source(out).batches.values() for b in bs) == 9
