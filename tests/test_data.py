"""Readers and batched pipelines: the same pixels from every format, sane shuffling and sharding."""

from __future__ import annotations

import numpy as np
import pytest
import synth
import tensorflow as tf

from cifarkit import data
from cifarkit.augment.recipes import get_recipe, train_transform
from cifarkit.errors import SourceError, UsageError
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.readers import pipeline
from cifarkit.readers.stats import RunningMoments
from cifarkit.sources import open_source


@pytest.fixture(scope="module")
def exports(cifar10_tar, tmp_path_factory):
    """The synthetic CIFAR-10 as PNG tree, TFRecord (png, 2 shards) and TFRecord (raw)."""
    root = tmp_path_factory.mktemp("exports")
    dataset = open_source(cifar10_tar.path)
    made = {}
    for name, options in {
        "png": ExportOptions(format="png", workers=1, quiet=True),
        "tfrecord-png": ExportOptions(format="tfrecord", workers=1, shards=2, quiet=True),
        "tfrecord-raw": ExportOptions(format="tfrecord", workers=1, encoding="raw", quiet=True),
    }.items():
        export_dataset(dataset, root / name, options)
        made[name] = root / name
    return made


@pytest.mark.parametrize("kind", ["source", "png", "tfrecord-png", "tfrecord-raw"])
def test_every_reader_gives_the_source_pixels_and_labels(cifar10_tar, exports, kind):
    path = cifar10_tar.path if kind == "source" else exports[kind]
    source = data.open_data(path)
    assert source.class_names == tuple(cifar10_tar.class_names)
    assert source.counts == {"train": 30, "test": 10}
    assert source.image_shape == (32, 32, 3)
    for split, truth in cifar10_tar.splits.items():
        ds = data.load(path, split)
        assert ds.element_spec[0].dtype == tf.uint8 and ds.element_spec[1].dtype == tf.int64
        images, labels = data.to_numpy(ds)
        np.testing.assert_array_equal(images, truth.images)
        np.testing.assert_array_equal(labels, truth.labels)


def test_reader_kinds_and_shard_policies(cifar10_tar, exports):
    policy = tf.data.experimental.AutoShardPolicy
    tf_source = data.open_data(exports["tfrecord-png"])
    assert tf_source.kind == "tfrecord" and len(tf_source.files["train"]) == 2
    by_file = tf_source.dataset("train", num_workers=2).options().experimental_distribute.auto_shard_policy
    assert by_file == policy.FILE
    arrays = data.open_data(cifar10_tar.path)
    assert arrays.kind == "arrays"
    assert arrays.dataset("train").options().experimental_distribute.auto_shard_policy == policy.DATA
    # One shard cannot be split between two workers by file: every worker reads it and keeps its share.
    one_shard = data.open_data(exports["tfrecord-raw"])
    assert one_shard.dataset("train", num_workers=2).options().experimental_distribute.auto_shard_policy == policy.DATA


@pytest.mark.parametrize("kind", ["source", "png", "tfrecord-png"])
def test_datasets_know_their_length(cifar10_tar, exports, kind):
    path = cifar10_tar.path if kind == "source" else exports[kind]
    assert len(data.load(path, "train")) == 30 and len(data.load(path, "test")) == 10  # as with tfds
    source = data.open_data(path)
    unchanged = lambda images, seed: images  # noqa: E731
    assert len(pipeline.train_batches(source, "train", unchanged, batch_size=8)) == 3  # 30 // 8: whole batches
    assert len(pipeline.eval_batches(source, "test", None, batch_size=8)) == 2  # 8 + 2


def test_a_worker_share_of_tfrecord_shards_makes_no_claim_about_its_length(exports):
    # Under multi-worker sharding each worker reads some of the shards, so the total would be wrong.
    ds = data.open_data(exports["tfrecord-png"]).dataset("train", num_workers=2)
    assert ds.cardinality() == tf.data.UNKNOWN_CARDINALITY


def test_image_tree_of_mixed_sizes_is_squared_when_asked(tmp_path):
    tree = synth.make_image_folder(tmp_path / "pets", per_class={"train": 3, "test": 2})
    source = data.open_data(tmp_path / "pets")
    assert source.kind == "image files" and source.image_shape is None
    assert source.class_names == ("cat", "dog")
    with pytest.raises(UsageError, match="differ in size"):
        source.dataset("train")
    images, labels = data.to_numpy(source.dataset("train", image_size=24))
    assert images.shape == (6, 24, 24, 3)
    np.testing.assert_array_equal(labels, tree.splits["train"].labels)


def test_missing_shard_is_a_clear_error(exports, tmp_path):
    import shutil

    copy = tmp_path / "broken"
    shutil.copytree(exports["tfrecord-png"], copy)
    next(copy.glob("*train.tfrecord-00001*")).unlink()
    with pytest.raises(SourceError, match="missing"):
        data.open_data(copy)


def test_unknown_split_names_the_splits(cifar10_tar):
    with pytest.raises(UsageError, match="train, test"):
        data.open_data(cifar10_tar.path).dataset("validation")


# --- pipelines -------------------------------------------------------------------------------


def _epoch(ds):
    images, labels = [], []
    for x, y in ds.as_numpy_iterator():
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def _keys(images: np.ndarray) -> list[bytes]:
    return [im.tobytes() for im in images]


@pytest.mark.parametrize("kind", ["source", "tfrecord-png"])
def test_training_batches_shuffle_each_epoch_and_drop_the_remainder(cifar10_tar, exports, kind):
    source = data.open_data(cifar10_tar.path if kind == "source" else exports[kind])
    ds = pipeline.train_batches(source, "train", None, batch_size=8, seed=3, augment_on="device")
    first, first_labels = _epoch(ds)
    second, _ = _epoch(ds)
    assert first.shape == (24, 32, 32, 3) and first.dtype == np.uint8  # 30 images, 3 full batches of 8
    truth = cifar10_tar.splits["train"]
    known = dict(zip(_keys(truth.images), truth.labels))
    assert len(set(_keys(first))) == 24 and all(k in known for k in _keys(first))
    assert [known[k] for k in _keys(first)] == list(first_labels)  # labels travel with their images
    assert _keys(first) != _keys(second)  # reshuffled every epoch
    again, _ = _epoch(pipeline.train_batches(source, "train", None, batch_size=8, seed=3, augment_on="device"))
    assert _keys(again) == _keys(first)  # and reproducible under the seed


def test_host_batches_are_augmented_floats_and_reproducible(cifar10_tar):
    source = data.open_data(cifar10_tar.path)
    moments = RunningMoments()
    moments.update(source.arrays["train"][0])
    transform = train_transform(get_recipe("paper"), moments.finish())
    ds = pipeline.train_batches(source, "train", transform, batch_size=10, seed=1)
    batches = list(ds.as_numpy_iterator())
    assert len(batches) == 3 and batches[0][0].shape == (10, 227, 227, 3) and batches[0][0].dtype == np.float32
    again = list(pipeline.train_batches(source, "train", transform, batch_size=10, seed=1).as_numpy_iterator())
    np.testing.assert_array_equal(batches[1][0], again[1][0])
    next_epoch = list(ds.as_numpy_iterator())
    assert not np.array_equal(np.sort(batches[0][0].ravel()), np.sort(next_epoch[0][0].ravel()))


def test_eval_batches_keep_dataset_order_and_every_image(cifar10_tar):
    source = data.open_data(cifar10_tar.path)
    images, labels = _epoch(pipeline.eval_batches(source, "test", None, batch_size=4))
    np.testing.assert_array_equal(images, cifar10_tar.splits["test"].images)  # 10 = 4 + 4 + 2
    np.testing.assert_array_equal(labels, cifar10_tar.splits["test"].labels)


def test_augment_place_is_checked(cifar10_tar):
    with pytest.raises(UsageError, match="gpu"):
        pipeline.train_batches(data.open_data(cifar10_tar.path), "train", None, batch_size=4, augment_on="gpu")


@pytest.mark.parametrize("kind", ["source", "tfrecord-png"])
def test_cifarkit_pipelines_run_without_autotuning_and_user_datasets_keep_it(cifar10_tar, exports, kind):
    # TensorFlow 2.21 blocks the deletion of an autotuned iterator until the autotuning thread's
    # next wake-up (seconds, up to a minute), and Keras deletes one every epoch and validation.
    path = cifar10_tar.path if kind == "source" else exports[kind]
    source = data.open_data(path)
    moments = RunningMoments()
    moments.update(cifar10_tar.splits["train"].images)
    transform = train_transform(get_recipe("cifar"), moments.finish())
    pipelines = {
        "train on host": pipeline.train_batches(source, "train", transform, batch_size=8),
        "train for the device": pipeline.train_batches(source, "train", None, batch_size=8, augment_on="device"),
        "eval": pipeline.eval_batches(source, "test", None, batch_size=4),
    }
    for name, ds in pipelines.items():
        assert ds.options().autotune.enabled is False, name
    assert data.load(path, "train").options().autotune.enabled is not False  # a user's own pipeline
    # Parallel maps still run: a host epoch gives every full batch, augmented.
    images, _ = _epoch(pipelines["train on host"])
    assert images.shape == (24, 32, 32, 3) and images.dtype == np.float32


def test_a_path_no_file_system_holds_is_one_line(tmp_path):
    # A run's config.json may name any data path: one longer than a file name may be is refused
    # in one line before anything tries to read it.
    from cifarkit.errors import SourceError

    with pytest.raises(SourceError, match="cannot read") as caught:
        data.open_data(tmp_path / ("x" * 300))
    assert "\n" not in str(caught.value)
