"""Other tools read cifarkit's image trees as cifarkit wrote them: the README's "Use it with" lines.

PyTorch's ``torchvision.datasets.ImageFolder`` is run on a PNG tree export when torchvision is
installed (it is not a cifarkit dependency; the GPU machines that run scripts/gpu_check.py have
it). Keras's ``image_dataset_from_directory`` and TFDS are run in tests/test_tfds.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.sources import open_source


@pytest.fixture(scope="module")
def png_tree(cifar10_tar, tmp_path_factory):
    out = tmp_path_factory.mktemp("tree") / "cifar10-png"
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--format",
            "png",
            "--source",
            str(cifar10_tar.path),
            "--out",
            str(out),
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_torchvision_imagefolder_reads_the_png_tree(png_tree, cifar10_tar):
    datasets = pytest.importorskip("torchvision.datasets", reason="torchvision is not installed")
    source = open_source(cifar10_tar.path)
    images = np.concatenate([np.asarray(b.images) for b in source.batches["train"]])
    labels = np.concatenate([b.labels for b in source.batches["train"]])

    folder = datasets.ImageFolder(str(png_tree / "train"))
    # ImageFolder numbers classes by sorted folder name; CIFAR-10's names sort in label order.
    assert folder.classes == list(source.class_names)
    assert len(folder) == len(labels)
    seen = []
    for path, label in folder.samples:
        index = int(path.rsplit("/", 1)[1].split(".")[0])  # OUT/train/<class>/<index>.png
        picture = np.asarray(folder.loader(path))
        np.testing.assert_array_equal(picture, images[index])  # PNG is lossless: exact pixels
        assert label == labels[index]
        seen.append(index)
    assert sorted(seen) == list(range(len(labels)))

    # The README's line, with ToTensor: float CHW in [0, 1], the same pixels.
    transforms = pytest.importorskip("torchvision.transforms")
    tensors = datasets.ImageFolder(str(png_tree / "train"), transform=transforms.ToTensor())
    tensor, label = tensors[0]
    index = int(tensors.samples[0][0].rsplit("/", 1)[1].split(".")[0])
    assert tuple(tensor.shape) == (3, 32, 32) and label == labels[index]
    np.testing.assert_array_equal(np.round(tensor.numpy().transpose(1, 2, 0) * 255).astype(np.uint8), images[index])
