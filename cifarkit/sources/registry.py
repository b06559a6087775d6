"""The source families, in the order a path is tried against them, and :func:`open_source`.

Each family recognises a path (cheaply: names and headers, never the whole data) and reads it
into :class:`~.labelled.LabelledImages`. A family that points elsewhere (an extracted CIFAR
folder inside the folder given, torchvision's ``raw/``) reads through :func:`open_source`
again. To add a source: write its reader module in this package and add one entry to
``FAMILIES`` where it should be tried (more specific layouts before the image tree, which takes
any folder of class folders).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError
from ..metadata.export_state import check_finished
from .folder import IMAGE_EXTENSIONS, looks_like_image_tree, read_folder
from .idx import IDX_FILE, has_idx_files, read_idx_folder, read_keras_npz
from .labelled import LabelledImages
from .layouts import (
    ARCHIVE_NAMES,
    EXTRACTED_FOLDERS,
    NESTED_FOLDERS,
    detect_layout,
    read_cifar_archive,
    read_cifar_folder,
)
from .source_path import check_source_path


@dataclass(frozen=True)
class SourceFamily:
    """One kind of source: whether a path is one, and how to read it."""

    name: str
    what: str  # how the "no dataset found" line describes it
    is_file: bool  # tried on files (True) or on folders (False)
    recognises: Callable[[Path], bool]
    read: Callable[[Path, bool], LabelledImages]  # (path, verify)


def _file_names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


def _inner(folder: Path) -> Path | None:
    """The dataset folder another tool nests inside ``folder`` (Keras 3's ``-target/``, torchvision's ``raw/``)."""
    return next((folder / c for c in EXTRACTED_FOLDERS + NESTED_FOLDERS if (folder / c).is_dir()), None)


def _official_archive(folder: Path) -> Path | None:
    return next((folder / a for a in ARCHIVE_NAMES if (folder / a).is_file()), None)


def _one_image(path: Path, verify: bool) -> LabelledImages:
    raise SourceError(
        f"{path}: one image, not a dataset (an archive or a folder of class folders); to classify it, "
        f"run: cifarkit predict RUN_FOLDER {path}"
    )


def _records(path: Path, verify: bool) -> LabelledImages:
    # The TFRecord format reads its own exports (and TFDS's folders) back: the one arrow up from
    # sources, taken lazily, and only for folders that hold records (it imports TensorFlow).
    from ..formats.tfrecord_source import read_records_folder

    return read_records_folder(path)


def _has_records(path: Path) -> bool:
    from ..formats.tfrecord_source import find_records

    return find_records(path) is not None


def _array_records(path: Path, verify: bool) -> LabelledImages:
    # An ArrayRecord export (or TFDS folder) read back through its format, as the TFRecord family does.
    from ..formats.arrayrecord_source import read_array_records_folder

    return read_array_records_folder(path)


def _has_array_records(path: Path) -> bool:
    from ..formats.arrayrecord_source import find_array_records

    return find_array_records(path) is not None


def _webdataset(path: Path, verify: bool) -> LabelledImages:
    # A WebDataset export read back through its format, as the TFRecord family does.
    from ..formats.webdataset_read import read_webdataset_folder

    return read_webdataset_folder(path)


def _has_webdataset(path: Path) -> bool:
    from ..formats.webdataset_read import find_webdataset

    return find_webdataset(path) is not None


def _parquet(path: Path, verify: bool) -> LabelledImages:
    # A Parquet export read back through its format, as the TFRecord family does.
    from ..formats.parquet_source import read_parquet_export

    return read_parquet_export(path)


def _has_parquet(path: Path) -> bool:
    from ..formats.parquet_source import is_parquet_export

    return is_parquet_export(path)


FAMILIES: tuple[SourceFamily, ...] = (
    SourceFamily(
        "keras-npz",
        "Keras's mnist.npz",
        True,
        lambda p: p.suffix == ".npz",
        lambda p, verify: read_keras_npz(p, verify=verify),
    ),
    # one of the four IDX files: its folder is the dataset
    SourceFamily(
        "idx-file",
        "an MNIST-family IDX file",
        True,
        lambda p: IDX_FILE.fullmatch(p.name) is not None,
        lambda p, verify: read_idx_folder(p.parent, verify=verify),
    ),
    SourceFamily("image-file", "one image file", True, lambda p: p.suffix.lower() in IMAGE_EXTENSIONS, _one_image),
    SourceFamily(
        "cifar-archive", "a CIFAR archive", True, lambda p: True, lambda p, verify: read_cifar_archive(p, verify=verify)
    ),
    SourceFamily(
        "cifar-folder",
        "an extracted CIFAR folder",
        False,
        lambda p: detect_layout(_file_names(p)) is not None,
        lambda p, verify: read_cifar_folder(p, detect_layout(_file_names(p)), verify=verify),
    ),
    SourceFamily(
        "idx-folder",
        "MNIST-family IDX files",
        False,
        has_idx_files,
        lambda p, verify: read_idx_folder(p, verify=verify),
    ),
    SourceFamily(
        "nested-folder",
        "a folder holding one of those",
        False,
        lambda p: _inner(p) is not None,
        lambda p, verify: open_source(_inner(p), verify=verify),
    ),
    SourceFamily(
        "archive-in-folder",
        "a folder holding an official archive",
        False,
        lambda p: _official_archive(p) is not None,
        lambda p, verify: read_cifar_archive(_official_archive(p), verify=verify),
    ),
    # before TFRecord's, which takes any TFDS folder
    SourceFamily("arrayrecord", "an ArrayRecord export or TFDS folder", False, _has_array_records, _array_records),
    SourceFamily("tfrecord", "a TFRecord export or TFDS-prepared folder", False, _has_records, _records),
    SourceFamily("webdataset", "a WebDataset export", False, _has_webdataset, _webdataset),
    SourceFamily("parquet", "a Parquet export", False, _has_parquet, _parquet),
    SourceFamily(
        "image-tree",
        "an image tree <split>/<class>/*.png",
        False,
        looks_like_image_tree,
        lambda p, verify: read_folder(p),
    ),
)


def open_source(path: str | Path, *, verify: bool = True) -> LabelledImages:
    """Read whatever dataset ``path`` holds; a clear :class:`SourceError` if it holds none."""
    path = Path(path).expanduser()
    check_source_path(path)  # a device, pipe or unlistable folder: one clear line
    is_file = path.is_file()
    if not is_file:
        check_finished(path)  # an interrupted export's first splits are not the dataset
    for family in FAMILIES:
        if family.is_file == is_file and family.recognises(path):
            return family.read(path, verify)
    kinds = ", ".join(f.what for f in FAMILIES if not f.is_file and f.name != "nested-folder")
    raise SourceError(f"{path}: no dataset found (expected {kinds})")
