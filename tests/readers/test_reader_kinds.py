"""The reader protocol, held by every kind: a selection and a subset give exactly the images of
the slices and indices they name, in order, whether the reader slices arrays, file lists or reads
TFRecord shards; a subset of a selection composes; coarse labels follow their images."""

from __future__ import annotations

import numpy as np
import pytest

from cifarkit import data
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.readers.arrays import ArrayReader
from cifarkit.readers.composed import ComposedReader
from cifarkit.readers.files import FileReader
from cifarkit.readers.records import RecordReader
from cifarkit.sources import open_source

KINDS = {"arrays": ArrayReader, "png": FileReader, "tfrecord": RecordReader}


@pytest.fixture(scope="module")
def readers(cifar10_tar, tmp_path_factory):
    root = tmp_path_factory.mktemp("kinds")
    dataset = open_source(cifar10_tar.path)
    export_dataset(dataset, root / "png", ExportOptions(format="png", workers=1, quiet=True))
    export_dataset(dataset, root / "tfrecord", ExportOptions(format="tfrecord", workers=1, shards=2, quiet=True))
    return {"arrays": cifar10_tar.path, "png": root / "png", "tfrecord": root / "tfrecord"}


@pytest.mark.parametrize("kind", KINDS)
def test_each_source_gets_the_reader_of_its_storage(readers, kind):
    reader = data.open_data(readers[kind])
    assert type(reader) is KINDS[kind]
    assert (reader.in_memory("train") is not None) == (kind == "arrays")
    assert bool(reader.shard_files("train")) == (kind == "tfrecord")


@pytest.mark.parametrize("kind", KINDS)
def test_a_selection_holds_exactly_the_pieces_it_names(cifar10_tar, readers, kind):
    train, test = cifar10_tar.splits["train"], cifar10_tar.splits["test"]
    chosen = data.open_data(readers[kind]).select({"fit": "train[5:12]+test[:3]", "check": "test[3:]"})
    assert chosen.counts == {"fit": 10, "check": 7} and chosen.kind == data.open_data(readers[kind]).kind
    images, labels = data.to_numpy(chosen.dataset("fit"))
    np.testing.assert_array_equal(images, np.concatenate([train.images[5:12], test.images[:3]]))
    np.testing.assert_array_equal(labels, np.concatenate([train.labels[5:12], test.labels[:3]]))
    images, _ = data.to_numpy(chosen.dataset("check"))
    np.testing.assert_array_equal(images, test.images[3:])


@pytest.mark.parametrize("kind", KINDS)
def test_a_subset_of_a_selection_holds_the_indices_it_picks(cifar10_tar, readers, kind):
    train = cifar10_tar.splits["train"]
    chosen = data.open_data(readers[kind]).select({"train": "train[2:]", "test": "test"})
    picks = {"train": np.array([0, 3, 4, 20]), "holdout": np.array([1, 2, 27])}
    subset = chosen.subset("train", picks)
    assert subset.counts == {"test": 10, "train": 4, "holdout": 3}
    for split, indices in picks.items():
        images, labels = data.to_numpy(subset.dataset(split))
        np.testing.assert_array_equal(images, train.images[2:][indices])
        np.testing.assert_array_equal(labels, train.labels[2:][indices])
    images, _ = data.to_numpy(subset.dataset("test"))
    np.testing.assert_array_equal(images, cifar10_tar.splits["test"].images)
    if kind == "tfrecord":  # shards cannot be sliced in place: read, then skipped and filtered
        assert isinstance(subset, ComposedReader) and subset.kind == "tfrecord"
    else:  # arrays and file lists are indexed, so a file left out is never read
        assert type(subset) is KINDS[kind]


def test_coarse_labels_follow_their_images_into_a_subset(cifar100_tar):
    reader = data.open_data(cifar100_tar.path)
    truth = cifar100_tar.splits["train"]
    subset = reader.subset("train", {"train": np.array([1, 4, 6])})
    np.testing.assert_array_equal(subset.extras["train"]["coarse_label"], truth.coarse_labels[[1, 4, 6]])
    _, labels = data.arrays_of(subset, "train", label="coarse_label")
    np.testing.assert_array_equal(labels, truth.coarse_labels[[1, 4, 6]])


def test_a_selection_of_a_stream_reads_only_the_range_it_takes(cifar10_tar, tmp_path):
    export_dataset(open_source(cifar10_tar.path), tmp_path / "wds", ExportOptions(format="webdataset", quiet=True))
    reader = data.open_data(tmp_path / "wds")
    asked, original = [], reader.stream

    def stream(split, with_coarse, start, stop):
        asked.append((split, start, stop))
        return original(split, with_coarse, start, stop)

    reader.stream = stream
    chosen = reader.select({"late": "train[20:]", "test": "test"})
    images, _ = data.to_numpy(chosen.dataset("late"))
    np.testing.assert_array_equal(images, cifar10_tar.splits["train"].images[20:])
    assert asked == [("train", 20, 30)]  # the first 20 samples are never decoded
