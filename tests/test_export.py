"""Export round trips (PNG exact, JPEG within tolerance, TFRecord parsed by TensorFlow), resume,
and the refusals that keep an output folder consistent."""

from __future__ import annotations

import csv
import errno
import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from cifarkit.errors import OutputError, UsageError
from cifarkit import export
from cifarkit.export import ExportOptions, export_dataset
from cifarkit.sources import open_source
from cifarkit.writers import image_tree, tfrecord

import synth


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("workers", [1, 2])
def test_png_tree_is_lossless_and_laid_out_by_split_and_class(cifar10_tar, tmp_path, workers):
    out = tmp_path / "png"
    summary = export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=workers))
    assert summary.counts == {"train": 30, "test": 10}
    rows = _manifest(out)
    assert len(rows) == 40
    for row in rows:
        truth = cifar10_tar.splits[row["split"]]
        index = int(row["index"])
        assert row["path"] == f"{row['split']}/{row['label_name']}/{index:05d}.png"
        np.testing.assert_array_equal(iio.imread(out / row["path"]), truth.images[index])
        assert int(row["label"]) == truth.labels[index]
    for split, truth in cifar10_tar.splits.items():
        for label, name in enumerate(cifar10_tar.class_names):
            files = list((out / split / name).glob("*.png")) if (out / split / name).exists() else []
            assert len(files) == int((truth.labels == label).sum())
    assert (out / "labels.txt").read_text().splitlines() == list(cifar10_tar.class_names)
    info = json.loads((out / "dataset_info.json").read_text())
    assert info["splits"]["train"]["count"] == 30 and info["class_names"] == list(cifar10_tar.class_names)


def test_workers_do_not_change_a_single_byte(cifar10_tar, tmp_path):
    dataset = open_source(cifar10_tar.path)
    export_dataset(dataset, tmp_path / "one", ExportOptions(format="jpg", workers=1))
    export_dataset(dataset, tmp_path / "two", ExportOptions(format="jpg", workers=2))
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "two")


def test_jpeg_tree_is_close_to_the_source(tmp_path):
    # Smooth images (gradients), as real photos are: JPEG q95 keeps them within a few levels.
    # Stated tolerance: mean absolute error <= 2 levels, max <= 24.
    dataset = open_source(synth.make_cifar10_python(tmp_path / "src", per_batch=4, test=4).path)
    images = dataset.take("train", 0, 20).images.copy()
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(len(images)):  # replace noise with smooth gradients so the tolerance means something
        images[i] = np.stack([yy * 7 + i, xx * 6 + 2 * i, (xx + yy) * 4], -1)
    dataset.batches["train"] = [dataset.take("train", 0, 20)]
    dataset.batches["train"][0].images = images
    out = tmp_path / "jpg"
    export_dataset(dataset, out, ExportOptions(format="jpg", quality=95, splits=("train",), workers=1))
    for row in _manifest(out):
        decoded = iio.imread(out / row["path"]).astype(int)
        diff = np.abs(decoded - images[int(row["index"])].astype(int))
        assert diff.mean() <= 2.0 and diff.max() <= 24, (row["path"], diff.mean(), diff.max())


def _read_tfrecords(out: Path, split: str, coarse: bool, encoding: str):
    import tensorflow as tf

    info = json.loads((out / "dataset_info.json").read_text())
    spec = tfrecord.parse_spec(tfrecord.feature_specs(coarse=coarse, encoding=encoding))
    files = [str(out / f) for f in info["splits"][split]["files"]]
    records = []
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        if encoding == "raw":
            image = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), [ex["height"], ex["width"], 3])
        else:
            image = tf.io.decode_image(ex["image"], channels=3)
        records.append({k: v.numpy() for k, v in ex.items()} | {"pixels": image.numpy()})
    return info, records


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_tfrecord_parses_back_to_the_same_images_labels_and_ids(cifar10_tar, tmp_path, encoding):
    out = tmp_path / "tfr"
    export_dataset(open_source(cifar10_tar.path), out,
                   ExportOptions(format="tfrecord", shards=3, encoding=encoding, workers=2))  # fmt: skip
    info, records = _read_tfrecords(out, "train", coarse=False, encoding=encoding)
    assert info["splits"]["train"]["files"] == [f"cifar10-train.tfrecord-0000{i}-of-00003" for i in range(3)]
    assert set(info["features"]) == {"image", "label", "id"} | ({"height", "width"} if encoding == "raw" else set())
    truth = cifar10_tar.splits["train"]
    assert len(records) == 30
    for i, rec in enumerate(records):
        assert rec["id"] == f"train_{i:05d}".encode()
        assert rec["label"] == truth.labels[i]
        np.testing.assert_array_equal(rec["pixels"], truth.images[i])


def test_cifar100_tfrecord_keeps_fine_and_coarse_labels(cifar100_tar, tmp_path, monkeypatch):
    monkeypatch.setattr(tfrecord, "RECORDS_PER_WRITE", 3)  # several pieces per shard
    out = tmp_path / "tfr100"
    export_dataset(open_source(cifar100_tar.path), out, ExportOptions(format="tfrecord", workers=1))
    info, records = _read_tfrecords(out, "test", coarse=True, encoding="png")
    truth = cifar100_tar.splits["test"]
    assert [r["label_fine"] for r in records] == truth.labels.tolist()
    assert [r["label_coarse"] for r in records] == truth.coarse_labels.tolist()
    assert [r["label"] for r in records] == truth.labels.tolist()
    assert [r["id"] for r in records] == [f"test_{i:05d}".encode() for i in range(len(truth.labels))]
    for record, image in zip(records, truth.images):
        np.testing.assert_array_equal(record["pixels"], image)
    assert info["coarse_class_names"] == list(cifar100_tar.coarse_class_names)
    rows = [r for r in _manifest(out) if r["split"] == "test"]
    assert [int(r["coarse_label"]) for r in rows] == truth.coarse_labels.tolist()


def test_hand_encoded_example_equals_tensorflows_own():
    import tensorflow as tf

    ours = tfrecord.example_bytes({"image": b"\x89PNG...", "label": 7, "id": b"train_00001", "neg": -3})
    feature = tf.train.Feature
    expected = tf.train.Example(features=tf.train.Features(feature={
        "image": feature(bytes_list=tf.train.BytesList(value=[b"\x89PNG..."])),
        "label": feature(int64_list=tf.train.Int64List(value=[7])),
        "id": feature(bytes_list=tf.train.BytesList(value=[b"train_00001"])),
        "neg": feature(int64_list=tf.train.Int64List(value=[-3])),
    }))  # fmt: skip
    assert tf.train.Example.FromString(ours) == expected


def test_rerun_after_interruption_completes_and_matches(cifar10_tar, tmp_path, monkeypatch):
    dataset = open_source(cifar10_tar.path)
    export_dataset(dataset, tmp_path / "ref", ExportOptions(format="png", workers=1))
    monkeypatch.setattr(export, "IMAGES_PER_TASK", 7)  # train: chunks 0, 7, 14, 21, 28
    real_write_images = image_tree.write_images
    chunks_written = []

    def interrupted_after_two_chunks(images, folder, names, fmt, quality):
        if len(chunks_written) == 2:  # the third chunk dies half-way through its first file
            Path(folder, names[0]).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        chunks_written.append(names[0])
        return real_write_images(images, folder, names, fmt, quality)

    monkeypatch.setattr(image_tree, "write_images", interrupted_after_two_chunks)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export_dataset(dataset, out, ExportOptions(format="png", workers=1))
    monkeypatch.setattr(image_tree, "write_images", real_write_images)
    # Nothing under a final name yet: the split is still in its staging folder, with the
    # half-written file of the chunk that was cut short.
    assert not (out / "train").exists() and not (out / "manifest.csv").exists()
    assert len(list((out / ".partial-train").rglob("*.png"))) == 15

    summary = export_dataset(dataset, out, ExportOptions(format="png", workers=2))
    assert summary.skipped == 14  # the two chunks in the journal were not written again
    assert _tree_bytes(out) == _tree_bytes(tmp_path / "ref")
    assert not list(out.glob(".partial-*"))


def test_a_finished_split_is_not_written_again(cifar10_tar, tmp_path, monkeypatch):
    dataset = open_source(cifar10_tar.path)
    out = tmp_path / "out"
    export_dataset(dataset, out, ExportOptions(format="jpg", workers=1))
    (out / "manifest.csv").unlink()  # killed after the splits, before the metadata
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    monkeypatch.setattr(image_tree, "write_images", None)  # any call would fail
    summary = export_dataset(dataset, out, ExportOptions(format="jpg", workers=1))
    assert summary.skipped == 40 and (out / "manifest.csv").is_file()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == before


def test_a_different_export_into_the_same_folder_is_refused_until_overwrite(cifar10_tar, tmp_path):
    dataset = open_source(cifar10_tar.path)
    out = tmp_path / "out"
    export_dataset(dataset, out, ExportOptions(format="jpg", workers=1))
    before = _tree_bytes(out)
    with pytest.raises(OutputError, match="--overwrite"):
        export_dataset(dataset, out, ExportOptions(format="png", workers=1))
    assert _tree_bytes(out) == before  # nothing lost
    export_dataset(dataset, out, ExportOptions(format="png", workers=1, overwrite=True))
    assert not list(out.rglob("*.jpg")) and len(list(out.rglob("*.png"))) == 40


def test_a_folder_with_foreign_files_is_refused(cifar10_tar, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write"):
        export_dataset(open_source(cifar10_tar.path), tmp_path, ExportOptions(format="png", workers=1))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_full_disk_is_a_clear_error_and_leaves_no_file_under_a_final_name(cifar10_tar, tmp_path, monkeypatch):
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd, data):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="No space left on device"):
        export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1))
    monkeypatch.undo()
    assert not list(out.rglob("*.part"))
    for path in out.rglob("*.png"):  # every file under a final name is a complete PNG
        iio.imread(path)


def test_unwritable_output_is_a_clear_error(cifar10_tar, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="a-file"):
        export_dataset(open_source(cifar10_tar.path), blocker / "out", ExportOptions(format="png", workers=1))


def test_bad_options_name_the_value(cifar10_tar):
    with pytest.raises(UsageError, match="quality=0"):
        ExportOptions(quality=0)
    with pytest.raises(UsageError, match="bmp"):
        ExportOptions(format="bmp")
    with pytest.raises(UsageError, match="validation"):
        export_dataset(open_source(cifar10_tar.path), Path("unused"), ExportOptions(splits=("validation",)))


def test_image_folder_source_exports_too(tmp_path):
    data = synth.make_image_folder(tmp_path / "pets")
    out = tmp_path / "out"
    export_dataset(open_source(data.path), out, ExportOptions(format="png", workers=2))
    rows = _manifest(out)
    assert {r["label_name"] for r in rows} == {"cat", "dog"}
    for row in rows:
        image = iio.imread(out / row["path"])
        truth = data.splits[row["split"]].images[int(row["index"])]
        np.testing.assert_array_equal(image, truth)


def test_exported_tree_reads_back_in_the_original_order(cifar10_tar, tmp_path):
    out = tmp_path / "png"
    export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1))
    again = open_source(out)
    assert again.count("train") == 30
    np.testing.assert_array_equal(np.stack(list(again.take("train", 0, 30).images)), cifar10_tar.splits["train"].images)
    np.testing.assert_array_equal(again.take("train", 0, 30).labels, cifar10_tar.splits["train"].labels)


def test_png_encoder_is_lossless_for_any_size():
    import tensorflow as tf

    from cifarkit.writers.png import encode_png

    rng = np.random.default_rng(3)
    for shape in [(32, 32, 3), (1, 1, 3), (17, 23, 3), (64, 5, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        data = encode_png(image)
        np.testing.assert_array_equal(iio.imread(data, extension=".png"), image)
        np.testing.assert_array_equal(tf.io.decode_png(data).numpy(), image)


def test_a_resume_with_another_png_compressor_is_refused(cifar10_tar, tmp_path, monkeypatch):
    # Two deflate implementations (or zlib versions) may write different bytes for the same
    # pixels: mixing them would break the promise that a resumed export is byte-identical.
    from cifarkit.writers import png

    dataset, out = open_source(cifar10_tar.path), tmp_path / "out"
    export_dataset(dataset, out, ExportOptions(format="png", workers=1))
    state = json.loads((out / ".cifarkit-export.json").read_text())
    assert state["png_deflate"] == png.COMPRESSOR and state["layout"] == "staged splits"
    monkeypatch.setattr(png, "COMPRESSOR", "zlib level 6")
    with pytest.raises(OutputError, match="other options"):
        export_dataset(dataset, out, ExportOptions(format="png", workers=1))
