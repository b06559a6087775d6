"""TFRecord exports: what the shards hold, parsed back with TensorFlow and the feature spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_export import _manifest

from cifarkit.formats import tfrecord
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source


def _read_tfrecords(out: Path, split: str, coarse: bool, encoding: str):
    """Parse the shards with plain tf.io and the keys TFDS's cifar builders use."""
    import tensorflow as tf

    info = json.loads((out / "cifarkit_info.json").read_text())
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "id": tf.io.FixedLenFeature([], tf.string),
    }
    if coarse:
        spec["coarse_label"] = tf.io.FixedLenFeature([], tf.int64)
    files = [str(out / f) for f in info["splits"][split]["files"]]
    records = []
    for raw in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(raw, spec)
        if encoding == "raw":
            image = tf.reshape(tf.io.decode_raw(ex["image"], tf.uint8), [32, 32, 3])
        else:
            image = tf.io.decode_image(ex["image"], channels=3)
        records.append({k: v.numpy() for k, v in ex.items()} | {"pixels": image.numpy()})
    return info, records


@pytest.mark.parametrize("encoding", ["png", "raw"])
def test_tfrecord_parses_back_to_the_same_images_labels_and_ids(cifar10_tar, tmp_path, encoding):
    out = tmp_path / "tfr"
    export_dataset(
        open_source(cifar10_tar.path), out, ExportOptions(format="tfrecord", shards=3, encoding=encoding, workers=2)
    )
    info, records = _read_tfrecords(out, "train", coarse=False, encoding=encoding)
    assert info["splits"]["train"]["files"] == [f"cifar10-train.tfrecord-0000{i}-of-00003" for i in range(3)]
    features = json.loads((out / "features.json").read_text())["featuresDict"]["features"]
    assert set(features) == {"image", "label", "id"}
    assert ("tensor" if encoding == "raw" else "image") in features["image"]
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
    assert [r["coarse_label"] for r in records] == truth.coarse_labels.tolist()
    assert [r["label"] for r in records] == truth.labels.tolist()
    assert [r["id"] for r in records] == [f"test_{i:05d}".encode() for i in range(len(truth.labels))]
    for record, image in zip(records, truth.images):
        np.testing.assert_array_equal(record["pixels"], image)
    assert info["coarse_class_names"] == list(cifar100_tar.coarse_class_names)
    rows = [r for r in _manifest(out) if r["split"] == "test"]
    assert [int(r["coarse_label"]) for r in rows] == truth.coarse_labels.tolist()


OLD_EXPORT = Path(__file__).parent / "fixtures" / "cifar100-tfrecord-0.1.0"


def test_an_export_written_by_cifarkit_0_1_still_reads(tmp_path):
    """cifarkit 0.1 kept its own schema in dataset_info.json and named the coarse label
    label_coarse; the fixture is such an export (of synth.make_cifar100_python(train=6, test=4))."""
    import synth

    from cifarkit import data

    truth = synth.make_cifar100_python(tmp_path / "src", train=6, test=4, archive=False)
    reader = data.open_data(OLD_EXPORT)
    assert reader.counts == {"train": 6, "test": 4} and reader.class_names == tuple(truth.class_names)
    source = open_source(OLD_EXPORT)  # what info and export read
    assert source.coarse_class_names == tuple(truth.coarse_class_names)
    for split, expected in truth.splits.items():
        images, labels = data.to_numpy(reader.dataset(split))
        np.testing.assert_array_equal(images, expected.images)
        np.testing.assert_array_equal(labels, expected.labels)
        batch = source.take(split, 0, source.count(split))
        np.testing.assert_array_equal(batch.images, expected.images)
        np.testing.assert_array_equal(batch.coarse_labels, expected.coarse_labels)
