"""A photo tree stored class by class is read with its classes interleaved, so that the split a
user slices off for testing (``train[80%:]``, as ``train`` suggests) holds every class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cifarkit import data
from cifarkit.sources import open_source
from cifarkit.sources.folder import stratified_order


def _tree(root: Path, counts: dict[str, int]) -> Path:
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(root / name / f"{i:03d}.png")
    return root


def test_every_slice_of_a_class_by_class_tree_holds_every_class(tmp_path):
    root = _tree(tmp_path / "photos", {"bird": 6, "cat": 10, "dog": 4})
    labels = np.concatenate([b.labels for b in open_source(root).batches["train"]])
    assert np.bincount(labels).tolist() == [6, 10, 4]
    for spec in ("train[:80%]", "train[80%:]", "train[:50%]", "train[50%:]"):
        _, sliced = data.load_numpy(root, spec, image_size=8)
        assert set(sliced.tolist()) == {0, 1, 2}, spec
    # Each class keeps its files in name order within the interleaving.
    files = [f for b in open_source(root).batches["train"] for f in b.source_files]
    assert [f for f in files if f.startswith("cat/")] == [f"cat/{i:03d}.png" for i in range(10)]


def test_stratified_order_spreads_each_class_in_its_share():
    paths, labels = stratified_order([(0, [Path(f"a{i}") for i in range(8)]), (1, [Path(f"b{i}") for i in range(2)])])
    assert len(paths) == 10 and labels.tolist().count(1) == 2
    # Every fifth of the sequence holds 1.6 a's on average: no run of more than 4 of one class.
    assert labels.tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 0, 0]
