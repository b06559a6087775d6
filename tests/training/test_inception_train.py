"""Training with the inception recipe on photo files: the random-resized crop is taken as each file
is decoded (a JPEG only within its box), from a stream seeded by the run's seed, and the rest of the
recipe (flip, standardisation) runs on the batches; arrays in memory keep the recipe's own op."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import synth
from typer.testing import CliRunner

from cifarkit.augment.recipes import get_recipe, train_transform
from cifarkit.cli import app
from cifarkit.data import open_data
from cifarkit.readers.image_decode import RandomCrop, decode_random_crop
from cifarkit.readers.pipeline import DECODE_CROP_SEED_OFFSET, decode_crop, train_batches, uint8_batches
from cifarkit.readers.stats import Stats
from cifarkit.runtime.lazy import tf
from cifarkit.runtime.strategy import Placement
from cifarkit.training.inputs import _tf_data

runner = CliRunner()
CROP = 224
# Mean 0 and deviation 1: standardisation leaves each pixel at value/255, so the crops can be read back.
UNIT = Stats((0.0,) * 3, (1.0,) * 3, tuple((0.0,) * 3 for _ in range(3)), (0.0,) * 3, ((1.0, 0, 0),) * 3, 1, 1)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """8 training JPEGs larger than the 256 they would be squared to, so a crop of one is a window."""
    root = tmp_path_factory.mktemp("photos") / "tree"
    sizes = ((300, 420), (410, 290), (333, 517))
    return synth.make_image_folder(root, per_class={"train": 4, "test": 1}, sizes=sizes, ext="jpg", seed=3)


def _files(tree, split="train"):
    return [str(tree.path / split / name) for name in tree.splits[split].filenames]


def _expected_crops(paths, crop: RandomCrop, passes: int):
    """Each pass's crops of every file, the files' seeds drawn as the reader draws them."""
    seeds = tf.data.Dataset.random(seed=crop.seed, rerandomize_each_iteration=True).batch(2).take(len(paths))
    crops = []
    for _ in range(passes):
        contents = [tf.io.read_file(p) for p in paths]
        crops.append(np.stack([decode_random_crop(c, s, crop.size).numpy() for c, s in zip(contents, seeds)]))
    return crops


def _inputs(source, seed: int, augment_on: str = "host", initial_epoch: int = 0):
    config = SimpleNamespace(
        recipe=get_recipe("inception"), seed=seed, batch_size=4, augment_on=augment_on, val_split="test"
    )
    data = SimpleNamespace(source=source, image_size=256)
    return _tf_data(config, data, UNIT, Placement(None, "default", 1, ("cpu",)), initial_epoch)


def test_the_tree_reader_takes_the_crop_as_it_decodes_each_file(photos):
    source = open_data(photos.path)
    crop, rest = decode_crop(get_recipe("inception"), source, 11)
    assert crop == RandomCrop(CROP, 11 + DECODE_CROP_SEED_OFFSET, (0.08, 1.0), (3 / 4, 4 / 3))
    assert [name for name, _ in rest.ops] == ["flip", "normalize"]
    ds = uint8_batches(source, "train", batch_size=8, shuffle=False, seed=None, drop_remainder=False, crop=crop)
    first, second = (next(iter(ds))[0].numpy() for _ in range(2))
    expected = _expected_crops(_files(photos), crop, 1)[0]
    np.testing.assert_array_equal(first, expected)  # exact pixels, in dataset order
    assert not np.array_equal(first, second)  # each pass draws new boxes
    graph = ds._as_serialized_graph().numpy()
    assert b"DecodeAndCropJpeg" in graph and b"StatelessSampleDistortedBoundingBox" in graph


def test_training_batches_are_the_decoded_crops_flipped_and_new_every_epoch(photos):
    inputs = _inputs(open_data(photos.path), seed=5)
    epochs = [np.concatenate([x.numpy() for x, _ in inputs.train]) for _ in range(2)]
    crop = RandomCrop(CROP, 5 + DECODE_CROP_SEED_OFFSET)
    expected = _expected_crops(_files(photos), crop, 1)[0]
    candidates = np.concatenate([expected, expected[:, :, ::-1]])  # each crop, or its mirror
    for image in epochs[0]:
        pixels = np.round(image * 255)
        assert np.abs(candidates - pixels).max(axis=(1, 2, 3)).min() == 0
    assert epochs[0].shape == (8, CROP, CROP, 3) and not np.array_equal(epochs[0], epochs[1])
    # The same seed gives the same batches; another seed, and a resumed run (a fresh stream from
    # the epoch it resumes at), other ones.
    again = np.concatenate([x.numpy() for x, _ in _inputs(open_data(photos.path), seed=5).train])
    np.testing.assert_array_equal(again, epochs[0])
    resumed = np.concatenate([x.numpy() for x, _ in _inputs(open_data(photos.path), seed=5, initial_epoch=1).train])
    assert resumed.shape == epochs[0].shape and not np.array_equal(resumed, epochs[0])
    # Evaluation is unchanged: the central 0.875 of each squared image, no randomness.
    shapes = {x.shape[1:] for x, _ in inputs.validation}
    assert shapes == {(CROP, CROP, 3)}


def test_device_augmentation_ships_the_squared_images_for_the_layer_to_crop(photos):
    inputs = _inputs(open_data(photos.path), seed=5, augment_on="device")
    images, _ = next(iter(inputs.train))
    assert images.dtype == tf.uint8 and images.shape[1:] == (256, 256, 3)


def test_arrays_in_memory_keep_the_recipe_crop_op(cifar10_tar):
    source = open_data(cifar10_tar.path)
    recipe = get_recipe("inception")
    assert decode_crop(recipe, source, 5) == (None, recipe) and not source.can_crop_at_decode
    got = np.concatenate([x.numpy() for x, _ in _inputs(source, seed=5).train])
    # As before the decode crop existed: the whole recipe on the shuffled uint8 batches, one
    # [2] seed a batch from the run's seed.
    batches = uint8_batches(source, "train", batch_size=4, shuffle=True, seed=5, drop_remainder=True)
    expected = train_batches(source, "train", train_transform(recipe, UNIT), batch_size=4, seed=5)
    expected = np.concatenate([x.numpy() for x, _ in expected])
    np.testing.assert_array_equal(got, expected)
    assert got.shape == (len(batches) * 4, CROP, CROP, 3)


def test_train_with_the_inception_recipe_on_a_photo_tree(photos, tmp_path):
    workdir = tmp_path / "run"
    args = ["train", "lenet5", "--data", str(photos.path), "--recipe", "inception", "--workdir", str(workdir)]
    result = runner.invoke(app, [*args, "--epochs", "1", "--batch-size", "4", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (workdir / "history.csv").read_text().strip().count("\n") == 1  # the header and epoch 1


def test_a_crashed_inception_run_on_a_photo_tree_resumes(photos, tmp_path, monkeypatch):
    import cifarkit.training as trainer
    from cifarkit.training.rundir import read_history

    synth.crash_during_training(monkeypatch, epoch=1, batch=1)
    config = trainer.TrainConfig(
        model="lenet5",
        workdir=str(tmp_path / "run"),
        data=str(photos.path),
        recipe="inception",
        epochs=3,
        batch_size=2,
        steps_per_execution=1,
    )
    with pytest.raises(synth.TrainingCrash):
        trainer.train(config, quiet=True, backup_seconds=0)
    monkeypatch.undo()
    messages = []
    result = trainer.train(config, say=messages.append, backup_seconds=0)
    assert result.resumed_from == 1, messages
    assert [row["epoch"] for row in read_history(tmp_path / "run" / "history.csv")] == [1, 2, 3]


def test_augment_preview_shows_the_crops_training_takes(photos, tmp_path):
    from cifarkit.augment.preview import decoded_views

    source = open_data(photos.path)
    rest, views = decoded_views(source, "train", np.array([1, 0]), get_recipe("inception"), 4, 2)
    assert [name for name, _ in rest.ops] == ["flip", "normalize"]
    crop = RandomCrop(CROP, 4 + DECODE_CROP_SEED_OFFSET)
    for view, expected in zip(views, _expected_crops(_files(photos)[:2], crop, 2)):  # a pass a view
        np.testing.assert_array_equal(view, expected[[1, 0]])
    out = tmp_path / "preview.png"
    preview = ["augment-preview", "--data", str(photos.path), "--recipe", "inception", "--images", "2"]
    result = runner.invoke(app, [*preview, "--views", "2", "--stages", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "recipe inception: random-resized 224x224 crop" in result.stdout and out.stat().st_size > 0


def test_a_tfrecord_export_of_photos_is_cropped_as_each_record_is_decoded(photos, tmp_path):
    out = tmp_path / "records"
    args = ["export", "-s", str(photos.path), "-f", "tfrecord", "-o", str(out), "--workers", "1", "-q"]
    result = runner.invoke(app, [*args, "--encoding", "auto"])
    assert result.exit_code == 0, result.output
    source = open_data(out)
    crop, _ = decode_crop(get_recipe("inception"), source, 2)
    assert crop is not None and source.can_crop_at_decode
    stored = [
        tf.train.Example.FromString(r.numpy()).features.feature["image"].bytes_list.value[0]
        for r in tf.data.TFRecordDataset(source.shard_files("train"))
    ]
    assert all(b[:2] == b"\xff\xd8" for b in stored)  # the JPEG files themselves
    seeds = list(tf.data.Dataset.random(seed=crop.seed, rerandomize_each_iteration=True).batch(2).take(len(stored)))
    expected = np.stack([decode_random_crop(tf.constant(b), s, CROP).numpy() for b, s in zip(stored, seeds)])
    got = np.stack([image for image, _ in source.dataset("train", crop=crop).as_numpy_iterator()])
    np.testing.assert_array_equal(got, expected)
    # A slice of the split (a composed reader) keeps each record's own seed.
    part = source.select({"train": "train[2:6]", "test": "test"})
    got = np.stack([image for image, _ in part.dataset("train", crop=crop).as_numpy_iterator()])
    np.testing.assert_array_equal(got, expected[2:6])


def test_records_of_one_shape_keep_the_recipe_crop_op(cifar10_tar, tmp_path):
    out = tmp_path / "records"
    result = runner.invoke(app, ["export", "-s", str(cifar10_tar.path), "-f", "tfrecord", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    source, recipe = open_data(out), get_recipe("inception")
    assert not source.can_crop_at_decode and decode_crop(recipe, source, 5) == (None, recipe)
