"""The conversion a TFDS user writes for a class-per-folder photo tree, for
``bench_photo_tree.py`` to time beside cifarkit's export; and the check, for either output, that
TFDS reads back as many examples of each class as the tree holds.

The builder is the one TFDS's documentation teaches for local files (ImageNet's own builder reads
its tree the same way): the tree is the download config's ``manual_dir``, nothing is downloaded,
``_generate_examples`` walks the class folders and yields ``(key, {"image": path, "label":
name})``, and ``tfds.features.Image`` reads each file's bytes as they are (a path is not decoded
or checked). ``download_and_prepare`` runs in this process with TFDS's default writer: examples
shuffled by key through temporary buckets, TFRecord shards of TFDS's own size.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import tensorflow_datasets as tfds

SPLIT = "train"


def class_folders(tree: str | os.PathLike) -> list[str]:
    """The tree's class folders' names, sorted (TFDS's ClassLabel takes them in this order)."""
    return sorted(entry.name for entry in os.scandir(tree) if entry.is_dir())


class PhotoTree(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """ROOT/<class>/<file>.jpg as one ``train`` split of images and class labels."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "The class-per-folder tree, as the download config's manual_dir."

    def __init__(self, *, classes: list[str], **kwargs):
        self._classes = classes
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"image": tfds.features.Image(), "label": tfds.features.ClassLabel(names=self._classes)}
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {SPLIT: self._generate_examples(dl_manager.manual_dir)}

    def _generate_examples(self, root):
        for folder in sorted(os.scandir(root), key=lambda entry: entry.name):
            if folder.is_dir():
                for entry in os.scandir(folder.path):
                    yield f"{folder.name}/{entry.name}", {"image": entry.path, "label": folder.name}


def build(tree: str, out: str) -> Path:
    """``download_and_prepare`` the tree into ``out`` (TFDS's data_dir); the prepared folder."""
    builder = PhotoTree(classes=class_folders(tree), data_dir=out, file_format="tfrecord")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=tree))
    return Path(builder.data_dir)


def read_back(folder: str | os.PathLike, decode: int = 16) -> dict:
    """Every example of ``folder`` (a TFDS-prepared folder: TFDS's own, or a cifarkit TFRecord
    export) read by TFDS: how many in each class, by name; the first ``decode`` images decoded in
    full, their shapes."""
    builder = tfds.builder_from_directory(str(folder))
    (split,) = builder.info.splits.keys()
    names = builder.info.features["label"].names
    data = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    counts = Counter(names[int(label)] for label in data.map(lambda ex: ex["label"]).as_numpy_iterator())
    shapes = [tuple(ex["image"].shape) for ex in builder.as_dataset(split=split).take(decode).as_numpy_iterator()]
    return {"split": split, "counts": dict(counts), "shapes": shapes, "listed": builder.info.splits[split].num_examples}


def tree_counts(tree: str | os.PathLike) -> dict[str, int]:
    """Files in each class folder of the tree."""
    return {name: sum(1 for _ in os.scandir(os.path.join(tree, name))) for name in class_folders(tree)}


def check_output(tree: str | os.PathLike, out: str | os.PathLike) -> dict:
    """The TFDS-prepared folder under ``out`` read back: ``n`` examples, and ``match`` when each
    class holds as many as the tree's folder, the metadata says as many, and the images decoded
    are RGB."""
    folder = next(p.parent for p in sorted(Path(out).rglob("dataset_info.json")))
    found, expected = read_back(folder), tree_counts(tree)
    found["match"] = (
        found["counts"] == expected
        and found["listed"] == sum(expected.values())
        and all(len(shape) == 3 and shape[2] == 3 for shape in found["shapes"])
    )
    found["n"] = sum(found.pop("counts").values())
    return found
