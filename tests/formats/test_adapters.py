"""The format registry: every registered adapter writes a dataset and reads it back exactly, and
an export whose metadata names a format cifarkit does not know is one clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cifarkit
from cifarkit import data, formats
from cifarkit.errors import SourceError, UsageError
from cifarkit.formats.base import FormatAdapter, Piece
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source

# Adapters that store pixels exactly: what they read back must equal the source bit for bit; the
# others must read back exactly what their codec wrote.
LOSSLESS = {"png", "tfrecord", "webdataset", "arrayrecord", "parquet"}


def test_every_adapter_is_registered_under_its_own_name():
    assert formats.FORMATS[:3] == ("jpg", "png", "tfrecord") and {"parquet", "webdataset"} <= set(formats.FORMATS)
    for name, adapter in formats.ADAPTERS.items():
        assert isinstance(adapter, FormatAdapter) and adapter.name == name
        assert formats.get_adapter(name) is adapter


def test_an_unknown_format_name_is_a_usage_error_naming_the_choices():
    with pytest.raises(UsageError, match="unknown format 'zarr'; choose one of jpg, png, tfrecord, .*parquet"):
        formats.get_adapter("zarr")


@pytest.mark.parametrize("name", formats.FORMATS)
def test_each_adapter_round_trips_a_dataset(cifar10_tar, tmp_path, name):
    source = open_source(cifar10_tar.path)
    out = tmp_path / name
    lossy = {"quality": 100} if name == "jpg" else {}  # the one format with a quality to choose
    export_dataset(source, out, ExportOptions(format=name, workers=1, **lossy))
    info = json.loads((out / "cifarkit_info.json").read_text())
    assert info["format"] == name and info["cifarkit_version"] == cifarkit.__version__
    reader = data.open_data(out)
    assert reader.class_names == source.class_names
    assert reader.counts == {"train": 30, "test": 10}
    assert reader.image_shape == (32, 32, 3)  # an export of CIFAR promises its shape
    for split, truth in cifar10_tar.splits.items():
        images, labels = data.to_numpy(reader.dataset(split))
        np.testing.assert_array_equal(labels, truth.labels)
        np.testing.assert_array_equal(images, truth.images if name in LOSSLESS else _jpeg_round_trip(truth.images))


def _jpeg_round_trip(images: np.ndarray) -> np.ndarray:
    """What a lossy format must read back: exactly the pixels its codec's files decode to."""
    import tensorflow as tf

    from cifarkit.formats.codecs import encode_image

    return np.stack([tf.io.decode_jpeg(encode_image(image, "jpg", 100)).numpy() for image in images])


@pytest.mark.parametrize("name", formats.FORMATS)
def test_each_adapter_plans_pieces_that_cover_a_split_in_order(cifar10_tar, name):
    source = open_source(cifar10_tar.path)
    sharded = {"shards": 4} if "shards" in formats.get_adapter(name).options else {}
    pieces = formats.get_adapter(name).plan(source, "train", ExportOptions(format=name, workers=1, **sharded))
    assert all(isinstance(p, Piece) and p.split == "train" for p in pieces)
    assert [(p.start, p.stop) for p in pieces][0][0] == 0 and pieces[-1].stop == 30
    assert all(a.stop == b.start for a, b in zip(pieces, pieces[1:]))
    assert sum(len(p.manifest_paths()) for p in pieces) == 30


def test_metadata_naming_an_unknown_format_is_one_clear_error(cifar10_tar, tmp_path):
    out = tmp_path / "export"
    export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1))
    info = json.loads((out / "cifarkit_info.json").read_text())
    (out / "cifarkit_info.json").write_text(json.dumps({**info, "format": "zarr"}))
    with pytest.raises(
        SourceError,
        match=r"cifarkit_info.json: the export's format is \"zarr\", which this "
        r"cifarkit does not read \(it reads jpg, png, tfrecord",  # and the formats added since
    ):
        data.open_data(out)


def test_a_dataset_info_json_another_tool_wrote_is_not_taken_for_an_export(tmp_path):
    import synth

    tree = synth.make_image_folder(tmp_path / "pets").path
    (tree / "cifarkit_info.json").write_text(json.dumps({"name": "pets", "format": "whatever"}))
    reader = data.open_data(tree)  # read as the image tree it is
    assert reader.kind == "image files" and set(reader.class_names) == {"cat", "dog"}
