"""ArrayRecord exports: opened at random by TFDS's data source and by Grain, read back by cifarkit
exactly, written the same bytes twice, and crafted shards refused in one line.

Every client check runs the real client (``tfds.data_source``, ``tfds.builder_from_directory``,
``grain``) on an export of the synthetic CIFAR-10 archive or of a small photo tree, and compares
every pixel and label with the source.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import synth
from test_hostile_records import _cli_child, _error_line, _record, _zero_png
from typer.testing import CliRunner

import cifarkit
from cifarkit import data
from cifarkit.cli import app
from cifarkit.errors import SourceError, UsageError
from cifarkit.formats import arrayrecord_process
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source

tfds = pytest.importorskip("tensorflow_datasets")
ar = pytest.importorskip("array_record.python.array_record_module")
runner = CliRunner()
TRAIN = "cifar10-train.array_record-00000-of-00002"


def _export(source: Path, out: Path, **options) -> Path:
    export_dataset(open_source(source), out, ExportOptions(format="arrayrecord", quiet=True, **options))
    return out


@pytest.fixture(scope="module")
def data_dir(cifar10_tar, tmp_path_factory) -> Path:
    """CIFAR-10 in TFDS's layout, <data_dir>/cifar10/3.0.2/, two shards a split."""
    return _export(cifar10_tar.path, tmp_path_factory.mktemp("ar") / "data", shards=2, workers=2, tfds_layout=True)


@pytest.fixture(scope="module")
def flat(cifar10_tar, tmp_path_factory) -> Path:
    return _export(cifar10_tar.path, tmp_path_factory.mktemp("ar") / "flat", shards=2, workers=1)


def _records(shard: Path) -> list[bytes]:
    reader = ar.ArrayRecordReader(str(shard))
    try:
        return list(reader.read_all())
    finally:
        reader.close()


def _rewrite(shard: Path, records: list[bytes]) -> Path:
    writer = ar.ArrayRecordWriter(str(shard), "group_size:1")
    for record in records:
        writer.write(record)
    writer.close()
    return shard


# --- the clients -------------------------------------------------------------------------------


def test_tfds_data_source_reads_every_record_at_random_with_exact_pixels_and_labels(cifar10_tar, data_dir):
    folder = data_dir / "cifar10" / "3.0.2"
    assert sorted(p.name for p in folder.glob("*-train.*")) == [
        "cifar10-train.array_record-00000-of-00002",
        "cifar10-train.array_record-00001-of-00002",
    ]
    assert json.loads((folder / "dataset_info.json").read_text())["fileFormat"] == "array_record"
    sources = tfds.data_source("cifar10", data_dir=str(data_dir), download=False)
    for split, truth in cifar10_tar.splits.items():
        source = sources[split]
        assert len(source) == len(truth)
        for i in reversed(range(len(truth))):  # at random: the last record first
            example = source[i]
            assert example["id"] == f"{split}_{i:05d}".encode()
            assert example["label"] == truth.labels[i]
            np.testing.assert_array_equal(example["image"], truth.images[i])
    # TFDS reads the format as a data source only (README: tfds.load reads the TFRecord export).
    with pytest.raises(NotImplementedError, match="as_data_source"):
        tfds.load("cifar10", data_dir=str(data_dir), split="train", download=False)


def test_a_photo_tree_keeps_its_png_bytes_and_tfds_and_cifarkit_read_every_pixel(tmp_path):
    photos = synth.make_image_folder(tmp_path / "photos", sizes=((40, 30), (17, 23), (32, 32)))
    out = _export(photos.path, tmp_path / "out", workers=1)
    builder = tfds.builder_from_directory(str(out))
    raw = builder.as_data_source("train", decoders={"image": tfds.decode.SkipDecoding()})
    decoded = builder.as_data_source("train")
    reader = data.open_data(out)
    assert reader.image_shape is None and reader.counts == {"train": 6, "test": 4}
    ours = list(reader.stored("train").as_numpy_iterator())
    truth = photos.splits["train"]
    for i, (image, label, name) in enumerate(zip(truth.images, truth.labels, truth.filenames)):
        assert raw[i]["image"] == (photos.path / "train" / name).read_bytes()  # the file's own bytes
        assert decoded[i]["label"] == label == ours[i][1]
        np.testing.assert_array_equal(decoded[i]["image"], image)
        np.testing.assert_array_equal(ours[i][0], image)


def _grain_ids(source, shard: tuple[int, int] | None, seed: int) -> list[bytes]:
    import grain.python as grain

    options = grain.NoSharding() if shard is None else grain.ShardOptions(*shard, drop_remainder=False)
    sampler = grain.IndexSampler(len(source), options, shuffle=True, num_epochs=1, seed=seed)
    return [example["id"] for example in grain.DataLoader(data_source=source, sampler=sampler, worker_count=0)]


def test_grain_shuffles_globally_and_shards_per_process(cifar10_tar, data_dir):
    pytest.importorskip("grain")
    import grain.python as grain

    source = tfds.data_source("cifar10", data_dir=str(data_dir), split="train", download=False)
    ids = [f"train_{i:05d}".encode() for i in range(30)]
    order = _grain_ids(source, None, seed=7)
    assert sorted(order) == ids and order != ids  # every record once, not in dataset order
    assert _grain_ids(source, None, seed=7) == order and _grain_ids(source, None, seed=8) != order
    first, second = _grain_ids(source, (0, 2), seed=7), _grain_ids(source, (1, 2), seed=7)
    assert len(first) == len(second) == 15 and sorted(first + second) == ids  # a partition
    # The README's loader: batches of this host's share, every pixel the source's.
    shard = grain.ShardOptions(1, 2, drop_remainder=True)
    sampler = grain.IndexSampler(len(source), shard, shuffle=True, num_epochs=1, seed=0)
    loader = grain.DataLoader(data_source=source, sampler=sampler, operations=[grain.Batch(4)], worker_count=0)
    batches = list(loader)
    assert [len(b["id"]) for b in batches] == [4, 4, 4, 3]
    truth = cifar10_tar.splits["train"]
    for batch in batches:
        at = [ids.index(i) for i in batch["id"]]
        np.testing.assert_array_equal(batch["image"], truth.images[at])
        np.testing.assert_array_equal(batch["label"], truth.labels[at])
    # Grain's own reader of the shard files, without TFDS: the records are tf.train.Examples.
    import tensorflow as tf

    files = sorted(str(p) for p in (data_dir / "cifar10" / "3.0.2").glob("cifar10-train.array_record-*"))
    records = grain.ArrayRecordDataSource(files)
    assert len(records) == 30
    for i in (29, 0, 16):
        example = tf.train.Example.FromString(records[i]).features.feature
        assert example["id"].bytes_list.value[0] == ids[i]
        assert example["label"].int64_list.value[0] == cifar10_tar.splits["train"].labels[i]
        pixels = tf.io.decode_png(example["image"].bytes_list.value[0]).numpy()
        np.testing.assert_array_equal(pixels, cifar10_tar.splits["train"].images[i])


# --- cifarkit reads it back ------------------------------------------------------------------------


def test_cifarkit_info_load_and_load_numpy_read_the_export_exactly(cifar10_tar, data_dir):
    result = runner.invoke(app, ["info", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert "cifarkit ArrayRecord export" in result.stdout
    assert result.stdout.splitlines()[-1].split() == ["total", "30", "10"]
    train, test = cifar10_tar.splits["train"], cifar10_tar.splits["test"]
    (x, y), (xt, yt) = cifarkit.load_numpy(data_dir)
    np.testing.assert_array_equal(x, train.images)
    np.testing.assert_array_equal(y, train.labels)
    np.testing.assert_array_equal(xt, test.images)
    np.testing.assert_array_equal(yt, test.labels)
    x, y = cifarkit.load_numpy(data_dir, split="test[:3]+train[25:]")
    np.testing.assert_array_equal(x, np.concatenate([test.images[:3], train.images[25:]]))
    examples = list(cifarkit.load(data_dir, split="train[10:14]", as_supervised=False).as_numpy_iterator())
    assert [e["id"] for e in examples] == [f"train_{i:05d}".encode() for i in range(10, 14)]
    np.testing.assert_array_equal(np.stack([e["image"] for e in examples]), train.images[10:14])


def test_a_selection_or_subset_reads_only_its_own_records(cifar10_tar, flat):
    reader = data.open_data(flat)
    asked: list[tuple[str, int]] = []

    def read(split, indices):
        asked.extend((split, int(i)) for i in indices)
        return reader.read(split, indices)

    counting = dataclasses.replace(reader, read=read)
    subset = counting.subset("train", {"holdout": np.array([3, 17, 29])})
    images, labels = data.to_numpy(subset.dataset("holdout"))
    assert asked == [("train", 3), ("train", 17), ("train", 29)]
    np.testing.assert_array_equal(images, cifar10_tar.splits["train"].images[[3, 17, 29]])
    asked.clear()
    picked = counting.select({"train": "train[26:]", "test": "test[:2]"})
    images, _ = data.to_numpy(picked.dataset("train"))
    assert asked == [("train", i) for i in range(26, 30)]
    np.testing.assert_array_equal(images, cifar10_tar.splits["train"].images[26:])


def test_cifar100_coarse_labels_come_back_from_the_records(cifar100_tar, tmp_path):
    out = _export(cifar100_tar.path, tmp_path / "c100", workers=1)
    truth = cifar100_tar.splits["test"]
    x, coarse = cifarkit.load_numpy(out, split="test", label="coarse_label")
    np.testing.assert_array_equal(coarse, truth.coarse_labels)
    np.testing.assert_array_equal(x, truth.images)
    assert tfds.builder_from_directory(str(out)).as_data_source("test")[3]["coarse_label"] == truth.coarse_labels[3]


def test_a_folder_tfds_prepared_as_array_record_is_read_by_cifarkit(cifar10_tar, tmp_path):
    names = list(cifar10_tar.class_names)
    truth = cifar10_tar.splits

    class Cifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("3.0.2")

        def _info(self):
            features = {"id": tfds.features.Text(), "image": tfds.features.Image(shape=(32, 32, 3))}
            features["label"] = tfds.features.ClassLabel(names=names)
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in truth}

        def _generate_examples(self, split):
            for i, (image, label) in enumerate(zip(truth[split].images, truth[split].labels)):
                yield i, {"id": f"{split}_{i:05d}", "image": image, "label": int(label)}

    Cifar10(data_dir=str(tmp_path / "tfds"), file_format="array_record").download_and_prepare()
    folder = tmp_path / "tfds" / "cifar10" / "3.0.2"
    assert list(folder.glob("cifar10-train.array_record-*"))  # TFDS's own writer and names
    result = runner.invoke(app, ["info", str(folder)])
    assert result.exit_code == 0, result.output
    assert "TFDS-prepared ArrayRecord folder (version 3.0.2)" in result.stdout
    assert data.open_data(tmp_path / "tfds").counts == {"train": 30, "test": 10}
    for split in truth:  # TFDS shuffles what it writes: match the records by their pixels
        images, labels = cifarkit.load_numpy(tmp_path / "tfds", split=split)
        label_of = {image.tobytes(): label for image, label in zip(truth[split].images, truth[split].labels)}
        assert sorted(label_of) == sorted(image.tobytes() for image in images)
        assert [label_of[image.tobytes()] for image in images] == labels.tolist()


def test_a_rerun_writes_the_same_bytes_and_rewrites_only_what_is_missing(cifar10_tar, flat, tmp_path):
    again = _export(cifar10_tar.path, tmp_path / "again", shards=2, workers=2)
    written = sorted(p.name for p in flat.iterdir() if p.name != ".cifarkit.lock")
    assert sorted(p.name for p in again.iterdir() if p.name != ".cifarkit.lock") == written
    for name in written:
        assert (again / name).read_bytes() == (flat / name).read_bytes(), name
    (again / TRAIN).unlink()
    other = again / "cifar10-test.array_record-00000-of-00002"
    before = other.stat().st_mtime_ns
    _export(cifar10_tar.path, again, shards=2, workers=1)
    assert (again / TRAIN).read_bytes() == (flat / TRAIN).read_bytes()
    assert other.stat().st_mtime_ns == before  # kept, not rewritten


def test_without_the_library_the_format_is_one_line_naming_the_extra(flat, monkeypatch):
    import array_record.python

    monkeypatch.setitem(sys.modules, "array_record.python.array_record_module", None)  # as if not installed
    monkeypatch.delattr(array_record.python, "array_record_module")
    with pytest.raises(UsageError, match=r"pip install 'cifarkit\[arrayrecord\]'"):
        ExportOptions(format="arrayrecord")
    with pytest.raises(UsageError, match=r"pip install 'cifarkit\[arrayrecord\]'"):
        data.open_data(flat)


# --- crafted shards and metadata -------------------------------------------------------------------


def _copy(flat: Path, dest: Path) -> Path:
    return Path(shutil.copytree(flat, dest, ignore=shutil.ignore_patterns(".cifarkit.lock")))


def test_a_truncated_shard_is_refused_in_one_line_by_every_reader(flat, tmp_path):
    folder = _copy(flat, tmp_path / "cut")
    shard = folder / TRAIN
    shard.write_bytes(shard.read_bytes()[:70_000])
    line = _error_line(runner.invoke(app, ["info", "-s", str(folder)]))
    assert line.startswith(f"cifarkit: error: {shard}: not a valid ArrayRecord file (")
    with pytest.raises(SourceError, match="not a valid ArrayRecord file"):
        cifarkit.load_numpy(folder, split="test")


def test_a_shard_with_a_record_dropped_or_a_label_out_of_range_is_named(flat, tmp_path):
    folder = _copy(flat, tmp_path / "dropped")
    records = _records(folder / TRAIN)
    _rewrite(folder / TRAIN, records[:-1])
    line = _error_line(runner.invoke(app, ["info", "-s", str(folder)]))
    assert f"{folder / TRAIN}: holds 14 records; the dataset's metadata lists 15" in line
    records[3] = _record(99)
    _rewrite(folder / TRAIN, records)
    line = _error_line(runner.invoke(app, ["info", "-s", str(folder)]))
    assert f"{folder / TRAIN}: record 3: its 'label' 99 is out of range for the dataset's 10 classes" in line


def test_a_record_declaring_a_huge_image_is_refused_from_its_header_in_bounded_memory(flat, tmp_path):
    folder = _copy(flat, tmp_path / "bomb")
    records = _records(folder / TRAIN)
    records[5] = _record(image=_zero_png(20000))  # 1.2 GB as RGB, 60 KB in the record
    _rewrite(folder / TRAIN, records)
    run, peak = _cli_child("info", "-s", str(folder))
    assert run.returncode == 1, run.stderr[-2000:]
    assert (
        f"{folder / TRAIN}: record 5: image larger than cifarkit reads (20000 x 20000 pixels; the limit is 100 "
        "megapixels)"
    ) in run.stderr
    assert peak < 1 << 20, f"info peaked at {peak:,} KiB, TensorFlow included"


@pytest.mark.parametrize("megabytes", [200, 600])
def test_a_record_that_inflates_a_thousandfold_is_refused_before_cifarkit_reads_it(flat, tmp_path, megabytes):
    """200 MB: over what the shard's size allows; 600 MB: over the memory the checking process
    has (the library's allocation fails there, in one line, not here)."""
    folder = _copy(flat, tmp_path / "zstd")
    records = _records(folder / TRAIN)
    records[2] = bytes(megabytes << 20)  # zstd keeps hundreds of MB of zeros in a few KB
    _rewrite(folder / TRAIN, records)
    assert (folder / TRAIN).stat().st_size < 1 << 20
    run, peak = _cli_child("info", "-s", str(folder))
    assert run.returncode == 1, run.stderr[-2000:]
    line = run.stderr.strip().splitlines()[-2]  # the child's peak follows
    assert line.startswith(f"cifarkit: error: {folder / TRAIN}: its records decode to more than ")
    assert line.endswith(": a decompression bomb?")
    assert peak < 1 << 20, f"info peaked at {peak:,} KiB, TensorFlow included"


def test_an_image_that_does_not_decode_is_named_by_shard_and_record(flat, tmp_path):
    folder = _copy(flat, tmp_path / "undecodable")
    records = _records(folder / TRAIN)
    png = bytearray(_zero_png(32))
    png[40:48] = b"\xff" * 8  # inside IDAT: the header still gives 32 x 32
    records[4] = _record(image=bytes(png))
    _rewrite(folder / TRAIN, records)
    line = _error_line(runner.invoke(app, ["info", "-s", str(folder)]))
    assert line.startswith(f"cifarkit: error: {folder / TRAIN}: record 4: its image cannot be decoded (")
    result = runner.invoke(app, ["stats", "-s", str(folder), "-o", str(tmp_path / "stats.json")])
    assert result.exit_code == 1 and result.output.splitlines()[-1] == line, result.output  # through tf.data


@pytest.mark.parametrize("name", ["../victim.array_record", "/tmp/victim.array_record"])
def test_metadata_naming_a_shard_outside_the_export_is_refused(flat, tmp_path, name):
    folder = _copy(flat, tmp_path / "out")
    victim = Path(name) if name.startswith("/") else tmp_path / "victim.array_record"
    shutil.copy(folder / TRAIN, victim)
    info = json.loads((folder / "cifarkit_info.json").read_text())
    info["splits"]["train"]["files"][0] = name
    (folder / "cifarkit_info.json").write_text(json.dumps(info))
    try:
        line = _error_line(runner.invoke(app, ["info", "-s", str(folder)]))
        assert "victim.array_record" in line and "outside" in line, line
        assert victim.is_file()
    finally:
        if name.startswith("/"):
            victim.unlink()


def test_a_tfds_template_leading_out_of_the_folder_is_refused(flat, tmp_path):
    folder = _copy(flat, tmp_path / "tfds")
    for name in ("cifarkit_info.json", "manifest.csv", "labels.txt", ".cifarkit-export.json"):
        (folder / name).unlink()
    info = json.loads((folder / "dataset_info.json").read_text())
    info["splits"][0]["filepathTemplate"] = "../{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
    (folder / "dataset_info.json").write_text(json.dumps(info))
    line = _error_line(runner.invoke(app, ["info", "-s", str(folder)]))
    assert "shard file" in line and "dataset_info.json" in line, line


def test_a_reader_process_that_dies_is_one_line_naming_the_shard(flat, monkeypatch):
    """The library crashing on a crafted file (here: the child kills itself after naming a shard)."""
    died = "import json, os, sys\nprint(json.dumps({'shard': 'the-shard'}), flush=True)\nos.kill(os.getpid(), 11)"
    monkeypatch.setattr(arrayrecord_process, "BOOT", died)
    monkeypatch.setattr(arrayrecord_process, "_PROCESSES", {})
    with pytest.raises(SourceError) as refused:
        data.open_data(flat)
    message = str(refused.value)
    assert message.startswith("the-shard: the array_record library could not read it (its process died of signal 11")
    assert "\n" not in message


def test_cifarkit_never_loads_the_library_in_its_own_process(flat):
    """It starts 64 threads (1.5 GB of address space) and trusts what a file says: only the child
    that reads the shards holds it."""
    import subprocess

    code = (
        "import sys, cifarkit\n"
        f"x, y = cifarkit.load_numpy({str(flat)!r}, split='train')\n"
        "assert len(x) == 30\n"
        "print('array_record.python.array_record_module' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "False"


@pytest.mark.parametrize("layout", [["--tfds-layout"], []])
def test_export_prints_the_line_that_opens_it_and_the_line_works(cifar10_tar, tmp_path, layout):
    out = tmp_path / "cli"
    args = ["export", "-s", str(cifar10_tar.path), "-f", "arrayrecord", "-o", str(out), "--workers", "1", *layout]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    opened = lines[lines.index("ArrayRecord shards, any record at once (a Grain data source as it is):") + 1].strip()
    sources = eval(opened, {"tfds": tfds})  # the line as printed
    assert len(sources["train"]) == 30 and sources["test"][9]["id"] == b"test_00009"
