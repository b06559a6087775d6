"""The data of a run: --holdout takes every class in its share, and a test split that misses
classes the run trains on is named before training."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cifarkit.readers.arrays import ArrayReader
from cifarkit.training.run_data import class_coverage_note, spread_order


def _reader(train_labels, test_labels) -> ArrayReader:
    arrays = {
        split: (np.zeros((len(y), 2, 2, 3), np.uint8), np.asarray(y, np.int32))
        for split, y in (("train", train_labels), ("test", test_labels))
    }
    counts = {split: len(a[1]) for split, a in arrays.items()}
    return ArrayReader("toy", Path("toy"), ("cat", "dog", "frog"), counts, (2, 2, 3), arrays=arrays)


def test_the_held_out_images_hold_every_class_in_its_share():
    labels = np.array([0] * 90 + [1] * 10)
    order = spread_order(labels, 100, np.random.default_rng(3))
    assert sorted(order.tolist()) == list(range(100))
    assert np.bincount(labels[order[:10]]).tolist() == [9, 1]
    assert np.bincount(labels[order[:50]]).tolist() == [45, 5]
    again = spread_order(labels, 100, np.random.default_rng(3))
    np.testing.assert_array_equal(order, again)  # the same images under the same --seed
    assert not np.array_equal(order, spread_order(labels, 100, np.random.default_rng(4)))


def test_a_test_split_missing_classes_is_named_before_training():
    note = class_coverage_note(_reader([0, 1, 2, 0, 1, 2], [2, 2]))
    assert note.startswith("warning: the test split holds 1 of the 3 classes trained on (frog)")
    assert "--holdout" in note
    assert class_coverage_note(_reader([0, 1, 2], [2, 1, 0])) is None
