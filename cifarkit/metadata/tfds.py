"""A TFDS-prepared folder's metadata, parsed into checked types: ``dataset_info.json`` (the
``DatasetInfo`` proto as protobuf's JSON), ``features.json`` (the feature tree) and
``<feature>.labels.txt`` (a ClassLabel's names), as TFDS 4.9 writes them
(tensorflow_datasets/core/dataset_info.py, core/features/*; :mod:`cifarkit.formats.tfds_info`
writes the same files).

Only the fields cifarkit reads are modelled; any other key is ignored, and a modelled key of the
wrong type is one line naming it. int64 values come as protobuf's digit strings or as numbers
and are bounded (:mod:`.fields`); split names are path components; each shard file name, built
from the split's ``filepathTemplate``, is one too; an image's declared shape is held to the
pixel budget of any decoded image.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic

from ..errors import SourceError, UnsafeInputError
from .fields import MAX_SHARDS, MAX_SPLITS, ByteCount, ClassCount, Count, DatasetName, SplitName, Text, bounded
from .files import metadata_file, read_model
from .jsonfile import Strict
from .labels import NumberedNames, read_names
from .names import folder_names, path_component

INFO_FILE = "dataset_info.json"
FEATURES_FILE = "features.json"
TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"  # TFDS's DEFAULT_FILENAME_TEMPLATE
# The file formats of TFDS (core/file_adapters.py FileFormat values) whose folders cifarkit reads.
FILE_FORMATS = ("tfrecord", "array_record")
MAX_CHANNELS = 4  # RGBA
IMAGE_CHANNELS = (-1, 1, 3, 4)  # an Image feature's last dimension: what TensorFlow's image decoders produce
LABEL_KEYS = ("label", "coarse_label")  # the ClassLabel features cifarkit reads

MAX_PIXELS = 100_000_000  # as for image files (cifarkit.sources.image_file.MAX_PIXELS): 10000 x 10000
# One dimension of a declared shape: -1 where it varies, else a positive size.
Dim = bounded(-1, MAX_PIXELS)


class Shape(Strict):
    dimensions: Annotated[tuple[Dim, ...], pydantic.Field(max_length=8)] = ()

    @pydantic.field_validator("dimensions")
    @classmethod
    def _within_budget(cls, dims: tuple[int, ...]) -> tuple[int, ...]:
        if 0 in dims:
            raise ValueError("a dimension of 0 holds no image")
        known = math.prod(d for d in dims if d > 0)
        if known > MAX_PIXELS * MAX_CHANNELS:
            raise ValueError(
                f"the shape {list(dims)} holds more than {MAX_PIXELS:,} pixels of {MAX_CHANNELS} "
                "channels, far beyond any dataset image"
            )
        return dims

    @property
    def sizes(self) -> tuple[int | None, ...]:
        return tuple(None if d < 0 else d for d in self.dimensions)


class ImageSpec(Strict):
    shape: Shape = Shape()
    dtype: Text = "uint8"
    encodingFormat: Text = ""

    @pydantic.field_validator("shape")
    @classmethod
    def _channels(cls, shape: Shape) -> Shape:
        # what an image decoder can produce (-1: the file's own, decoded as RGB)
        if shape.dimensions and shape.dimensions[-1] not in IMAGE_CHANNELS:
            raise ValueError(f"an image of {shape.dimensions[-1]} channels; an image has 1, 3 or 4 (or -1)")
        return shape


class TensorSpec(Strict):
    shape: Shape = Shape()
    dtype: Text = ""
    encoding: Text = "none"


class LabelSpec(Strict):
    numClasses: ClassCount = 0


class Feature(Strict):
    """One entry of features.json: which kind it is shows by which key it has."""

    pythonClassName: Text = ""
    image: ImageSpec | None = None
    tensor: TensorSpec | None = None
    classLabel: LabelSpec | None = None

    @property
    def spec(self) -> ImageSpec | TensorSpec | None:
        return self.image or self.tensor


class _Features(Strict):
    features: Annotated[dict[str, Feature], pydantic.Field(max_length=10_000)]


class FeaturesFile(Strict):
    featuresDict: _Features


class SplitEntry(Strict):
    name: SplitName
    shardLengths: Annotated[tuple[Count, ...], pydantic.Field(max_length=MAX_SHARDS)] = ()
    numBytes: ByteCount = 0
    filepathTemplate: Text = ""


class DatasetInfoFile(Strict):
    name: DatasetName = ""
    version: Text = ""
    fileFormat: Text = "tfrecord"
    splits: Annotated[tuple[SplitEntry, ...], pydantic.Field(max_length=MAX_SPLITS)]


@dataclass(frozen=True)
class TfdsFolder:
    """What a TFDS-prepared folder's metadata says, checked."""

    root: Path
    name: str
    version: str
    features: dict[str, Feature]
    labels: dict[str, tuple[str, ...] | NumberedNames]  # ClassLabel feature -> its names
    counts: dict[str, int]
    files: dict[str, list[str]]  # split -> shard file names (path components), in order
    lengths: dict[str, list[int]]  # split -> examples in each shard, in the same order
    file_format: str = "tfrecord"  # one of FILE_FORMATS


def read_features(root: Path) -> FeaturesFile | None:
    return read_model(root, FEATURES_FILE, FeaturesFile)


def read_folder_info(root: Path) -> TfdsFolder:
    """A TFDS folder's metadata, checked; one line naming the file and the first thing wrong."""
    info = read_model(root, INFO_FILE, DatasetInfoFile)
    tree = read_features(root)
    if info is None or tree is None:
        raise SourceError(f"{root}: no {INFO_FILE if info is None else FEATURES_FILE}; not a TFDS dataset folder")
    features = tree.featuresDict.features
    if "image" not in features or features["image"].spec is None or "label" not in features:
        raise SourceError(
            f"{root / FEATURES_FILE}: not an image classification dataset (no 'image' and 'label' features)"
        )
    if features["label"].classLabel is None:
        raise SourceError(f"{root / FEATURES_FILE}: its 'label' feature is not a ClassLabel")
    if info.fileFormat not in FILE_FORMATS:
        raise SourceError(
            f"{root}: TFDS file format {info.fileFormat[:40]!r}; cifarkit reads {' and '.join(FILE_FORMATS)}"
        )
    listed = root / INFO_FILE
    folder_names([s.name for s in info.splits], "split", listed)  # no two splits in one folder
    empty = [s.name for s in info.splits if not s.shardLengths]
    if empty:  # TFDS's reader refuses such a split too ("corresponds to no data")
        raise SourceError(
            f"{listed}: the split {empty[0]!r} lists no shards (shardLengths is empty), so it holds no data"
        )
    name = info.name or root.parent.name or "dataset"  # a folder's own name: one component
    labels = {
        key: _label_names(root, key, features[key].classLabel)
        for key in LABEL_KEYS
        if key in features and features[key].classLabel is not None
    }
    files = {s.name: _shard_files(s, name, info.fileFormat, listed) for s in info.splits}
    lengths = {s.name: list(s.shardLengths) for s in info.splits}
    counts = {split: sum(n) for split, n in lengths.items()}
    return TfdsFolder(root, name, info.version, features, labels, counts, files, lengths, info.fileFormat)


def _label_names(root: Path, key: str, spec: LabelSpec) -> tuple[str, ...] | NumberedNames:
    path = metadata_file(root, f"{key}.labels.txt")
    if path is not None:
        return read_names(path, spec.numClasses)
    if spec.numClasses < 1:
        raise SourceError(f"{root / FEATURES_FILE}: the ClassLabel {key!r} has no classes and no {key}.labels.txt")
    return NumberedNames(spec.numClasses)  # TFDS's own cifar10 code sets names; a folder may not


def _shard_files(split: SplitEntry, dataset: str, file_format: str, listed: Path) -> list[str]:
    """The split's shard file names from its template, each one path component in ``root``."""
    count = len(split.shardLengths)
    template = split.filepathTemplate or TEMPLATE
    names = [_shard_file(template, dataset, split.name, file_format, i, count) for i in range(count)]
    for name in names[:1] + names[-1:]:  # the others differ only in their digits
        path_component(name, "shard file", f"{listed} (split {split.name!r})")
    return names


def _shard_file(template: str, name: str, split: str, file_format: str, index: int, count: int) -> str:
    values = {
        "DATASET": name,
        "SPLIT": split,
        "FILEFORMAT": file_format,
        "SHARD_INDEX": f"{index:05d}",
        "NUM_SHARDS": f"{count:05d}",
        "SHARD_X_OF_Y": f"{index:05d}-of-{count:05d}",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), template)


class _Probe(pydantic.BaseModel):
    format: Any = None


class _FileFormat(pydantic.BaseModel):
    fileFormat: Any = "tfrecord"


def folder_file_format(root: Path) -> str:
    """The file format a TFDS folder's ``dataset_info.json`` names (TFDS's default, tfrecord, where it
    names none); what it says is checked when the folder is read (:func:`read_folder_info`)."""
    probe = read_model(root, INFO_FILE, _FileFormat)
    return probe.fileFormat if probe is not None and isinstance(probe.fileFormat, str) else "tfrecord"


def is_tfds_info(root: Path) -> bool:
    """Whether ``root`` holds TFDS's ``dataset_info.json`` (a pre-TFDS export's file of that name
    records a format). A file that is not JSON is a no; one that is TFDS's but malformed is a
    yes, so that reading it names what is wrong; a link out of the folder is refused."""
    try:
        probe = read_model(root, INFO_FILE, _Probe)
    except UnsafeInputError:
        raise
    except SourceError:
        return False
    return probe is not None and probe.format is None
