"""The source registry: each family recognises its own layout, in order, and names the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import synth
from PIL import Image

from cifarkit.errors import SourceError
from cifarkit.sources import FAMILIES, open_source


def _first_family(path: Path) -> str:
    return next(f.name for f in FAMILIES if f.is_file == path.is_file() and f.recognises(path))


@pytest.mark.parametrize(
    ("build", "family", "dataset"),
    [
        (lambda t: synth.make_cifar10_python(t).path, "cifar-archive", "cifar10"),
        (lambda t: synth.make_cifar10_python(t, archive=False).path, "cifar-folder", "cifar10"),
        (lambda t: synth.make_cifar100_binary(t, archive=False).path, "cifar-folder", "cifar100"),
        (lambda t: synth.make_cifar10_binary(t, archive=False).path.parent, "nested-folder", "cifar10"),
        (lambda t: synth.make_mnist_folder(t / "mnist") and t / "mnist", "idx-folder", "mnist"),
        (lambda t: synth.make_image_folder(t / "tree").path, "image-tree", "tree"),
    ],
)
def test_each_family_recognises_its_layout_and_reads_it(tmp_path, build, family, dataset):
    path = build(tmp_path)
    assert _first_family(path) == family
    read = open_source(path, verify=False)
    assert read.name == dataset
    assert sum(read.count(s) for s in read.splits) > 0


def test_every_family_has_a_distinct_name_and_a_reader():
    names = [f.name for f in FAMILIES]
    assert len(names) == len(set(names))
    assert all(callable(f.recognises) and callable(f.read) for f in FAMILIES)
    assert names[-1] == "image-tree"  # takes any folder of class folders, so it is tried last


def test_one_image_file_is_not_taken_for_a_corrupt_archive(tmp_path):
    photo = tmp_path / "my_cat.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(photo)
    with pytest.raises(SourceError) as info:
        open_source(photo)
    message = str(info.value)
    assert "one image, not a dataset" in message and "cifarkit predict" in message
    assert "archive" not in message.split(";")[0].replace("an archive", "")


def test_no_dataset_found_lists_the_folder_families(tmp_path):
    with pytest.raises(SourceError, match="no dataset found") as info:
        open_source(tmp_path)
    for family in FAMILIES:
        if not family.is_file and family.name != "nested-folder":
            assert family.what in str(info.value)
