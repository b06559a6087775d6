"""TensorFlow Datasets' metadata files, written and read without importing TFDS.

A TFDS-prepared folder (``~/tensorflow_datasets/cifar10/3.0.2/``) holds, beside its TFRecord
shards, three kinds of file, as ``tfds.core.DatasetInfo.write_to_directory`` writes them
(tensorflow_datasets/core/dataset_info.py, core/constants.py):

- ``dataset_info.json``: the ``DatasetInfo`` proto as protobuf's JSON (camelCase names, int64
  values as strings): ``name``, ``version``, ``fileFormat``, ``splits`` (each with ``name``,
  ``shardLengths``, ``numBytes`` and ``filepathTemplate``, by default
  ``{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}``, core/naming.py) and ``supervisedKeys``;
- ``features.json``: the feature tree (core/features/*: ``Image`` with its shape and
  ``encodingFormat``, ``ClassLabel`` with ``numClasses``, ``Text``, ``Tensor``/``Scalar``);
- ``<feature>.labels.txt``: a ClassLabel's names, one a line.

So cifarkit's TFRecord exports open with ``tfds.builder_from_directory``, and cifarkit reads
folders TFDS prepared. The layouts were checked against what TFDS 4.9 itself writes
(tests/test_tfds.py builds one with TFDS's own writer).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..metadata.tfds import (  # noqa: F401  (the readers' entry points)
    FEATURES_FILE,
    INFO_FILE,
    TEMPLATE,
    TfdsFolder,
    folder_file_format,
    is_tfds_info,
    read_folder_info,
)
from ..writers.atomic import write_text

# The versions TFDS's own builders give these datasets (image_classification/cifar.py, mnist.py):
# an export under <data_dir>/<name>/<version>/ is then found by tfds.load(name, data_dir=...).
TFDS_VERSIONS = {"cifar10": "3.0.2", "cifar100": "3.0.2", "mnist": "3.0.1", "fashion_mnist": "3.0.1", "kmnist": "3.0.1"}
OTHER_VERSION = "1.0.0"  # any other dataset (an image tree's export)
HOMEPAGES = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar.html",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar.html",
}

_CLASSES = "tensorflow_datasets.core.features."
IMAGE_CLASS = _CLASSES + "image_feature.Image"
LABEL_CLASS = _CLASSES + "class_label_feature.ClassLabel"
TEXT_CLASS = _CLASSES + "text_feature.Text"
TENSOR_CLASS = _CLASSES + "tensor_feature.Tensor"
SCALAR_CLASS = _CLASSES + "scalar.Scalar"
DICT_CLASS = _CLASSES + "features_dict.FeaturesDict"


def tfds_name(name: str) -> str:
    """A dataset name as TFDS accepts it (core/naming.py: a letter, then letters, digits, _)."""
    cleaned = re.sub(r"\W+", "_", name.strip().lower().replace("-", "_")).strip("_")
    return cleaned if re.match(r"[a-z]", cleaned) else f"d_{cleaned}".rstrip("_")


def tfds_version(name: str) -> str:
    return TFDS_VERSIONS.get(name, OTHER_VERSION)


def _shape(dims) -> dict:
    return {"dimensions": [str(-1 if d is None else d) for d in dims]} if len(dims) else {}


def image_feature(shape, encoding: str | None) -> dict:
    """``tfds.features.Image``; ``encoding`` "jpeg" or None (TFDS's default, PNG). Either way
    TFDS decodes with ``tf.image.decode_image``, which reads both."""
    image: dict = {"dtype": "uint8", "shape": _shape(shape)}
    if encoding == "jpeg":
        image["encodingFormat"] = "jpeg"
    return {"image": image, "pythonClassName": IMAGE_CLASS}


def tensor_feature(shape, dtype: str, encoding: str = "none", scalar: bool = False) -> dict:
    """``tfds.features.Tensor`` (or ``Scalar``); encoding "bytes" stores an array's raw bytes."""
    tensor = {"dtype": dtype, "encoding": encoding, "shape": _shape(shape)}
    return {"pythonClassName": SCALAR_CLASS if scalar else TENSOR_CLASS, "tensor": tensor}


def label_feature(count: int) -> dict:
    return {"classLabel": {"numClasses": str(count)}, "pythonClassName": LABEL_CLASS}


def text_feature() -> dict:
    return {"pythonClassName": TEXT_CLASS, "text": {}}


def features_json(features: dict[str, dict]) -> str:
    tree = {"featuresDict": {"features": features}, "pythonClassName": DICT_CLASS}
    return json.dumps(tree, indent=4, sort_keys=True)


def dataset_info_json(
    name: str, version: str, description: str, splits: dict[str, tuple[list[int], int]], file_format: str = "tfrecord"
) -> str:
    """The ``DatasetInfo`` proto's JSON; ``splits``: name -> (records per shard, bytes); ``file_format``
    TFDS's name of the shards' format (``tfrecord``, ``array_record``)."""
    info: dict = {
        "description": description,
        "fileFormat": file_format,
        "moduleName": "cifarkit",
        "name": name,
        "splits": [
            {
                "filepathTemplate": TEMPLATE,
                "name": split,
                "numBytes": str(size),
                "shardLengths": [str(n) for n in lengths],
            }
            for split, (lengths, size) in splits.items()
        ],
        "supervisedKeys": {"tuple": {"items": [{"featureKey": "image"}, {"featureKey": "label"}]}},
        "version": version,
    }
    if name in HOMEPAGES:
        info["location"] = {"urls": [HOMEPAGES[name]]}
    return json.dumps(info, indent=2, sort_keys=True)


def write_metadata(out: Path, info_json: str, features: str, labels: dict[str, tuple[str, ...]]) -> None:
    """The three kinds of TFDS file, each written atomically."""
    for feature, names in labels.items():
        write_text(out / f"{feature}.labels.txt", "".join(f"{n}\n" for n in names))
    write_text(out / FEATURES_FILE, features + "\n")
    write_text(out / INFO_FILE, info_json + "\n")


# --- reading: the parsing lives in cifarkit.metadata.tfds --------------------------------------


def locate(root: Path) -> Path | None:
    """The TFDS dataset folder at ``root``: ``root`` itself, ``root/<version>`` (the highest) or
    ``root/<name>/<version>`` where ``root`` holds one dataset; None where there is none."""
    for depth in range(3):
        found = [p.parent for p in root.glob("/".join(["*"] * depth + [FEATURES_FILE])) if is_tfds_info(p.parent)]
        if found:
            if len({p.parent for p in found}) > 1 and depth == 2:
                return None  # a data_dir of several datasets: name one
            return max(found, key=lambda p: _version_key(p.name))
    return None


def _version_key(text: str) -> tuple:
    return tuple(int(part) if part.isdigit() and len(part) < 20 else -1 for part in text.split("."))
