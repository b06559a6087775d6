"""The tfds-like API: cifarkit.load (split syntax, dict or supervised, int64 labels, batching,
names searched like the CLI) and cifarkit.load_numpy (arrays as keras.datasets returns them)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from synth import CIFAR100_COARSE, make_cifar10_python, make_cifar100_python, make_mnist_folder

import cifarkit
from cifarkit.errors import UsageError
from cifarkit.readers import splits
from cifarkit.readers.splits import Piece
from cifarkit.sources import open_source

COUNTS = {"train": 50_000, "test": 10_000}


@pytest.mark.parametrize(
    "spec, pieces",
    [
        ("train", [Piece("train", 0, 50_000)]),
        ("train[:90%]", [Piece("train", 0, 45_000)]),
        ("train[90%:]", [Piece("train", 45_000, 50_000)]),
        ("train[5000:]", [Piece("train", 5000, 50_000)]),
        ("train[:5000]", [Piece("train", 0, 5000)]),
        ("test[-10%:]", [Piece("test", 9000, 10_000)]),
        ("test[-500:-100]", [Piece("test", 9500, 9900)]),
        ("test[20000:]", [Piece("test", 10_000, 10_000)]),  # clipped, as a Python slice
        ("train[10%:20%]+test", [Piece("train", 5000, 10_000), Piece("test", 0, 10_000)]),
        ("train + test[:1%]", [Piece("train", 0, 50_000), Piece("test", 0, 100)]),
        ("test[7]", [Piece("test", 7, 8)]),
        ("all", [Piece("train", 0, 50_000), Piece("test", 0, 10_000)]),
    ],
)
def test_split_syntax_arithmetic(spec, pieces):
    assert splits.resolve(spec, COUNTS) == pieces


def test_percent_boundaries_round_as_tfds_closest_and_tile_the_split():
    # 33% of 10 is 3.3 -> 3; 35% of 10 is 3.5 -> 4 (half to even, as Python's round in TFDS).
    assert splits.count("test[:33%]", {"test": 10}) == 3 and splits.count("test[:35%]", {"test": 10}) == 4
    for n in (7, 101, 9999):
        assert splits.count("train[:33%]", {"train": n}) + splits.count("train[33%:]", {"train": n}) == n


@pytest.mark.parametrize(
    "spec, message",
    [
        ("validation", "has no split 'validation' \\(asked for by 'validation'\\); it has train, test"),
        ("train[:150%]", "percentages go from -100% to 100%"),
        ("train[:10%:]", "is not NAME"),
        ("train[10:20%]", "both ends of a slice"),
        ("", "a split is a name"),
    ],
)
def test_bad_split_specs_are_one_line_usage_errors(spec, message):
    with pytest.raises(UsageError, match=message):
        splits.resolve(spec, COUNTS)


@pytest.fixture(scope="module")
def cifar10(tmp_path_factory):
    return make_cifar10_python(tmp_path_factory.mktemp("c10"), per_batch=4, batches=2, test=6, archive=True)


def test_load_split_syntax_gives_exact_counts_and_pixels(cifar10):
    source = open_source(cifar10.path)
    x_train = source.take("train", 0, 8).images
    ds = cifarkit.load(cifar10.path, "train[:25%]+test[-2:]")
    assert len(ds) == 2 + 2
    images, labels = cifarkit.data.to_numpy(ds)
    np.testing.assert_array_equal(images[:2], x_train[:2])
    np.testing.assert_array_equal(images[2:], source.take("test", 4, 6).images)
    assert ds.element_spec[1].dtype.name == "int64" and labels.dtype == np.int64
    assert [len(d) for d in cifarkit.load(cifar10.path, ["train[:50%]", "train[50%:]", "test"])] == [4, 4, 6]
    everything = cifarkit.load(cifar10.path)  # split=None: every split, as tfds.load
    assert {k: len(v) for k, v in everything.items()} == {"train": 8, "test": 6}


def test_load_dict_elements_ids_and_batches(cifar10):
    ds = cifarkit.load(cifar10.path, "train[3:5]", as_supervised=False)
    examples = list(ds.as_numpy_iterator())
    assert sorted(examples[0]) == ["id", "image", "label"]
    assert [e["id"] for e in examples] == [b"train_00003", b"train_00004"]
    truth = open_source(cifar10.path).take("train", 3, 5)
    assert [int(e["label"]) for e in examples] == truth.labels.tolist()
    np.testing.assert_array_equal(examples[1]["image"], truth.images[1])
    batched = cifarkit.load(cifar10.path, "train", batch_size=3)
    assert [len(b[1]) for b in batched.as_numpy_iterator()] == [3, 3, 2] and len(batched) == 3
    # As tfds.load: the whole split as tensors, ready to unpack.
    x, y = cifarkit.load(cifar10.path, "test", batch_size=-1)
    assert x.shape == (6, 32, 32, 3) and y.dtype == tf.int64
    np.testing.assert_array_equal(x.numpy(), open_source(cifar10.path).take("test", 0, 6).images)
    whole = cifarkit.load(cifar10.path, None, batch_size=-1, as_supervised=False)
    assert whole["train"]["image"].shape == (8, 32, 32, 3) and whole["train"]["id"][0] == b"train_00000"
    with pytest.raises(UsageError, match="batch_size must be"):
        cifarkit.load(cifar10.path, "test", batch_size=0)


def test_shuffle_files_keeps_the_examples(cifar10):
    shuffled = cifarkit.load(cifar10.path, "train", shuffle_files=True, seed=1, as_supervised=False)
    ids = sorted(e["id"] for e in shuffled.as_numpy_iterator())
    assert ids == [f"train_{i:05d}".encode() for i in range(8)]


def test_cifar100_coarse_labels_in_dicts_and_numpy(tmp_path):
    synth = make_cifar100_python(tmp_path, train=6, test=4, archive=True)
    source = open_source(synth.path)
    ds, info = cifarkit.load(synth.path, "test", as_supervised=False, with_info=True)
    coarse = [int(e["coarse_label"]) for e in ds.as_numpy_iterator()]
    assert coarse == source.batches["test"][0].coarse_labels.tolist()
    assert info.features["coarse_label"].num_classes == 20 and info.features["label"].num_classes == 100
    assert info.splits["train"].num_examples == 6 and info.supervised_keys == ("image", "label")
    x, y = cifarkit.load_numpy(synth.path, "train", label="coarse_label")
    assert y.tolist() == source.batches["train"][0].coarse_labels.tolist() and x.shape == (6, 32, 32, 3)


def _cli_export(source, out, *options):
    from typer.testing import CliRunner

    from cifarkit.cli import app

    result = CliRunner().invoke(
        app, ["export", "--source", str(source), "--format", "tfrecord", "--out", str(out), "--workers", "1", *options]
    )
    assert result.exit_code == 0, result.output
    return out


def test_cifar100_coarse_labels_from_a_tfrecord_export(tmp_path):
    synth = make_cifar100_python(tmp_path, train=12, test=5, archive=True)
    export = _cli_export(synth.path, tmp_path / "out", "--shards", "3")
    truth = synth.splits["train"].coarse_labels.tolist()
    ds, info = cifarkit.load(export, "train", as_supervised=False, with_info=True)
    examples = list(ds.as_numpy_iterator())
    assert [int(e["coarse_label"]) for e in examples] == truth
    assert [int(e["label"]) for e in examples] == synth.splits["train"].labels.tolist()
    assert info.features["coarse_label"].names == tuple(CIFAR100_COARSE)
    x, y = cifarkit.load_numpy(export, "train", label="coarse_label")
    assert y.tolist() == truth and y.dtype == np.int64
    np.testing.assert_array_equal(x, synth.splits["train"].images)
    # Pieces of two splits keep each piece's own coarse labels, in order.
    mixed = cifarkit.load(export, "train[:4]+test[3:]", as_supervised=False)
    both = truth[:4] + synth.splits["test"].coarse_labels.tolist()[3:]
    assert [int(e["coarse_label"]) for e in mixed.as_numpy_iterator()] == both
    assert cifarkit.load_numpy(export, "train[:4]+test[3:]", label="coarse_label")[1].tolist() == both
    # What training selects keeps them too.
    chosen = cifarkit.open_data(export).select({"fit": "train[2:6]"})
    _, coarse = cifarkit.data.to_numpy(chosen.dataset("fit", with_coarse=True).map(lambda x, y, c: (x, c)))
    assert coarse.tolist() == truth[2:6]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """A TFRecord export of 40 training images in 6 shards of 6 or 7."""
    root = tmp_path_factory.mktemp("sharded")
    source = make_cifar10_python(root, per_batch=8, batches=5, test=6, archive=True)
    return _cli_export(source.path, root / "out", "--shards", "6")


def _shard_order(ids: list[int], bounds: list[int]) -> list[int]:
    shards = [np.searchsorted(bounds, i, side="right") - 1 for i in ids]
    return [s for k, s in enumerate(shards) if k == 0 or shards[k - 1] != s]


def test_shuffle_files_shuffles_the_shards_not_the_examples(sharded):
    from cifarkit.readers.file_shuffle import windows

    lengths = cifarkit.open_data(sharded).shard_lengths["train"]
    assert len(lengths) == 6 and sum(lengths) == 40
    bounds = np.cumsum([0] + lengths).tolist()
    # (seed 3 happens to give the file order on its first iteration: 1 chance in 720)
    ds = cifarkit.load(sharded, "train", shuffle_files=True, seed=7, as_supervised=False)
    epochs = [[int(e["id"][6:]) for e in ds.as_numpy_iterator()] for _ in range(2)]
    for ids in epochs:
        assert sorted(ids) == list(range(40)) and ids != list(range(40))
        order = _shard_order(ids, bounds)
        assert sorted(order) == list(range(6))  # each shard read in one run (fewer than 16 records)
        for shard in range(6):  # file-level: a shard's examples keep their order
            inside = [i for i in ids if bounds[shard] <= i < bounds[shard + 1]]
            assert inside == list(range(bounds[shard], bounds[shard + 1]))
    assert _shard_order(epochs[0], bounds) != _shard_order(epochs[1], bounds)  # a new order each epoch
    again = cifarkit.load(sharded, "train", shuffle_files=True, seed=7, as_supervised=False)
    assert [int(e["id"][6:]) for e in again.as_numpy_iterator()] == epochs[0]
    # Pixels and labels stay with their ids.
    truth = cifarkit.load_numpy(sharded, "train")
    supervised = list(cifarkit.load(sharded, "train", shuffle_files=True, seed=7).as_numpy_iterator())
    for id_, (image, label) in zip(epochs[0], supervised):
        np.testing.assert_array_equal(image, truth[0][id_])
        assert label == truth[1][id_]
    # A slice takes each shard's share of it: train[:60%] is ids 0-23, the cut inside a shard.
    assert windows(lengths, 0, 24)[-1].take < lengths[len(windows(lengths, 0, 24)) - 1]
    piece = cifarkit.load(sharded, "train[:60%]", shuffle_files=True, seed=5, as_supervised=False)
    ids = [int(e["id"][6:]) for e in piece.as_numpy_iterator()]
    assert sorted(ids) == list(range(24)) and len(piece) == 24
    mixed = cifarkit.load(sharded, "train[30:]+test[:2]", shuffle_files=True, seed=5, as_supervised=False)
    assert sorted(e["id"].decode() for e in mixed.as_numpy_iterator()) == (
        [f"test_{i:05d}" for i in range(2)] + [f"train_{i:05d}" for i in range(30, 40)]
    )


def test_batched_tfrecord_reads_parse_each_batch_and_equal_the_examples_batched(sharded):
    # Batches are cut from the records and each parsed whole; the pieces join across shards and
    # splits, the last batch short, exactly as the examples one by one, batched.
    spec = "train[5:33]+test[1:]"
    ds = cifarkit.load(sharded, spec, batch_size=4)
    batches = list(ds.as_numpy_iterator())
    assert len(ds) == len(batches) == 9 and [len(y) for _, y in batches] == [4] * 8 + [1]
    assert ds.element_spec[0].shape.as_list() == [None, 32, 32, 3] and ds.element_spec[1].dtype == tf.int64
    x, y = cifarkit.data.to_numpy(cifarkit.load(sharded, spec))
    np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
    assert np.concatenate([b[1] for b in batches]).tolist() == y.tolist()
    x_train, y_train = cifarkit.load_numpy(sharded, "train")
    np.testing.assert_array_equal(x[:28], x_train[5:33])


def test_a_label_rewritten_after_the_check_stops_a_batched_read(sharded, tmp_path):
    # The records were checked when the pipeline was made; a shard rewritten since is read with
    # its labels range-checked, a batch at a time, before anything is decoded or handed out.
    import shutil

    from cifarkit.formats.codecs.example import example_bytes, frame_record, parse_example
    from cifarkit.formats.codecs.record_frame import records_of

    folder = tmp_path / "rewritten"
    shutil.copytree(sharded, folder, ignore=shutil.ignore_patterns(".cifarkit.lock"))
    ds = cifarkit.load(folder, "train", batch_size=4)
    shard = sorted(folder.glob("*-train.tfrecord-*"))[1]
    records = [bytes(data) for _, data in records_of(shard)]
    fields = parse_example(records[2])
    records[2] = example_bytes({"id": fields["id"][0], "image": fields["image"][0], "label": 99})
    shard.write_bytes(b"".join(frame_record(r) for r in records))
    with pytest.raises(tf.errors.InvalidArgumentError, match="label is out of range"):
        list(ds)


def test_reading_tfrecords_logs_nothing_of_its_own(sharded):
    # TensorFlow's C++ logs a line for each TFRecord file opened without a read buffer size; a
    # fresh process, with its logging at the default level, shows what a user's script sees.
    code = (
        "import cifarkit\n"
        f"ds = cifarkit.load({str(sharded)!r}, 'train', shuffle_files=True, seed=1)\n"
        f"plain = cifarkit.load({str(sharded)!r}, 'train')\n"
        "print(len(list(ds)), len(list(plain)))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["40", "40"]
    assert "TFRecordDataset" not in done.stderr


def test_file_windows_tile_any_slice():
    from cifarkit.readers.file_shuffle import windows

    lengths = [7, 6, 7, 6]
    for start, stop in ((0, 26), (3, 20), (7, 13), (25, 26), (5, 5)):
        taken = [w.first + k for w in windows(lengths, start, stop) for k in range(w.take)]
        assert taken == list(range(start, stop))
    assert windows(lengths, 8, 15) == [(1, 1, 5, 8), (2, 0, 2, 13)]


def test_load_numpy_equals_the_source(cifar10, tmp_path):
    (x_train, y_train), (x_test, y_test) = cifarkit.load_numpy(cifar10.path)
    source = open_source(cifar10.path)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        truth = source.take(split, 0, source.count(split))
        assert x.dtype == truth.images.dtype == np.uint8 and x.shape == truth.images.shape
        assert y.dtype == np.int64 and y.shape == (len(truth.labels),)
        np.testing.assert_array_equal(x, truth.images)
        np.testing.assert_array_equal(y, truth.labels)
    make_mnist_folder(tmp_path / "mnist", train=10, test=5)
    (x_train, y_train), (x_test, y_test) = cifarkit.load_numpy(tmp_path / "mnist")
    assert x_train.shape == (10, 28, 28, 1) and x_test.shape == (5, 28, 28, 1) and x_train.dtype == np.uint8


def test_load_by_name_searches_data_dir_like_the_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    make_mnist_folder(tmp_path / "store" / "mnist", train=0, test=10)
    ds, info = cifarkit.load("mnist", split="test[:40%]", data_dir=tmp_path / "store", with_info=True)
    assert len(ds) == 4 and info.name == "mnist" and info.image_shape == (28, 28, 1)
    assert ds.element_spec[0].shape == (28, 28, 1)
    monkeypatch.setenv("CIFARKIT_DATA", str(tmp_path / "store"))
    assert len(cifarkit.load("mnist", "test")) == 10
    with pytest.raises(UsageError, match="has no split 'train'"):
        cifarkit.load("mnist", "train")
