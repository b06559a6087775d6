"""Recognise what a path holds and read it with the right reader.

A path may be a CIFAR archive (python or binary, CIFAR-10 or -100), its extracted folder, a
folder that contains one of those, the MNIST family's IDX files (a folder of them, or one of
them), Keras's ``mnist.npz``, or any labelled image-folder tree.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Callable

from ..constants import ARCHIVE_MD5, EXTRACTED_MD5, MAX_DATASET_BYTES, MAX_MEMBER_BYTES, SAMPLE_MD5, SAMPLE_NAME
from ..errors import ChecksumError, SourceError, UnsafeInputError
from ..metadata.export_state import check_finished
from . import binary, pickled
from .archive import read_archive
from .folder import looks_like_image_tree, read_folder
from .idx import IDX_FILE, has_idx_files, read_idx_folder, read_keras_npz
from .labelled import LabelledImages
from .source_path import check_source_path

# Folder names the official archives extract to, and the archive names, in order of preference.
EXTRACTED_FOLDERS = ("cifar-10-batches-py", "cifar-100-python", "cifar-10-batches-bin", "cifar-100-binary")
ARCHIVE_NAMES = tuple(ARCHIVE_MD5)
# Where other tools nest a dataset inside the folder they were given: Keras 3 extracts the CIFAR
# archives into "<name>-target/" (~/.keras/datasets/cifar-10-batches-py-target/cifar-10-batches-py/);
# torchvision keeps the IDX files in "raw/" (MNIST/raw/, FashionMNIST/raw/, KMNIST/raw/).
KERAS3_FOLDERS = tuple(f"{name}-target/{name}" for name in EXTRACTED_FOLDERS[:2])
NESTED_FOLDERS = KERAS3_FOLDERS + ("raw",)
KNOWN_MD5 = {**ARCHIVE_MD5, SAMPLE_NAME: SAMPLE_MD5}

_FORMATS = {
    "cifar10-python": "CIFAR-10, python version (pickled batches)",
    "cifar100-python": "CIFAR-100, python version (pickled batches)",
    "cifar10-binary": "CIFAR-10, binary version",
    "cifar100-binary": "CIFAR-100, binary version",
}


# Base names of the files the four CIFAR layouts read. Anything else in an archive (readme.html,
# or whatever a hostile archive adds) streams past unread and never takes memory.
_DATASET_FILE = re.compile(
    r"(data_batch_\d+|test_batch|train|test)(\.bin)?|batches\.meta(\.txt)?|meta|(fine|coarse)_label_names\.txt"
)


def is_dataset_file(name: str) -> bool:
    return _DATASET_FILE.fullmatch(PurePosixPath(name).name) is not None


def detect_layout(names: set[str]) -> str | None:
    """Which CIFAR layout a set of base file names is, or None."""
    if any(re.fullmatch(r"data_batch_\d+\.bin", n) for n in names) or "test_batch.bin" in names:
        return "cifar10-binary"
    if any(re.fullmatch(r"data_batch_\d+", n) for n in names) or "test_batch" in names:
        return "cifar10-python"
    if {"train.bin", "test.bin"} & names:
        return "cifar100-binary"
    if "meta" in names and {"train", "test"} & names:
        return "cifar100-python"
    return None


def _read_layout(layout: str, files: dict[str, Callable[[], bytes]], location: Path, verification: str) -> LabelledImages:
    if layout == "cifar10-python":
        names, batches, notes = pickled.read_cifar10(files)
        coarse = None
    elif layout == "cifar10-binary":
        names, batches, notes = binary.read_cifar10(files)
        coarse = None
    elif layout == "cifar100-python":
        names, coarse, batches = pickled.read_cifar100(files)
        notes = []
    else:
        names, coarse, batches = binary.read_cifar100(files)
        notes = []
    if not batches:
        raise SourceError(f"{location}: no train or test batches found")
    return LabelledImages(
        name=layout.split("-")[0], format=_FORMATS[layout], location=location, class_names=names,
        batches=batches, coarse_class_names=coarse, verification=verification, notes=notes,
    )  # fmt: skip


def _mismatch(path: Path, known: str, actual: str) -> ChecksumError:
    return ChecksumError(
        f"{path}: md5 {actual} does not match the official {path.name} ({known}); the file is "
        "corrupt or modified. Pass --no-verify to read it anyway"
    )


def read_cifar_archive(path: Path, *, verify: bool = True, known_md5: dict[str, str] = KNOWN_MD5) -> LabelledImages:
    contents = read_archive(path, md5=verify, keep=is_dataset_file)
    official = known_md5.get(path.name)
    if not verify:
        verification = "NOT verified: checksum not checked (--no-verify)"
    elif official is None:
        verification = f"not verified: {path.name} is not an official file name (md5 {contents.md5})"
    elif contents.md5 == official:
        verification = f"verified: md5 {contents.md5} is the known checksum of {path.name}"
    else:
        raise _mismatch(path, official, contents.md5)
    # Members are addressed by base name; the top folder (cifar-10-batches-py/ ...) varies.
    by_name: dict[str, Callable[[], bytes]] = {}
    for member in list(contents.files):
        base = PurePosixPath(member).name
        if base in by_name:
            raise SourceError(f"{path}: two members named '{base}'; cannot tell which is the dataset")
        # pop: the raw bytes are released as soon as a batch is parsed.
        by_name[base] = lambda m=member: contents.files.pop(m)
    layout = detect_layout(set(by_name))
    if layout is None:
        raise SourceError(f"{path}: not a CIFAR archive (no data_batch_*, test_batch, train or test member)")
    return _read_layout(layout, by_name, path, verification)


def _read_capped(path: Path, allowed: int) -> bytes:
    """The file's bytes, refusing one larger than a CIFAR file or than what is ``allowed``."""
    cap = min(MAX_MEMBER_BYTES, allowed)
    refusal = UnsafeInputError(
        f"{path}: refused: more bytes than a CIFAR file can hold (at most {cap // 10**6} MB here, "
        f"{MAX_DATASET_BYTES // 10**6} MB for all the dataset's files)"
    )
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size > cap:
                raise refusal
            data = fh.read(cap + 1)  # never more, whatever the file becomes meanwhile
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror})") from None
    if len(data) > cap:
        raise refusal
    return data


def read_cifar_folder(folder: Path, layout: str, *, verify: bool = True) -> LabelledImages:
    checked, mismatched, budget = 0, [], MAX_DATASET_BYTES

    def reader(path: Path) -> Callable[[], bytes]:
        def read() -> bytes:
            nonlocal checked, budget
            data = _read_capped(path, budget)
            budget -= len(data)
            official = EXTRACTED_MD5.get(f"{folder.name}/{path.name}")
            if official is not None:
                actual = hashlib.md5(data).hexdigest()
                if actual == official:
                    checked += 1
                elif verify:
                    raise _mismatch(path, official, actual)
                else:
                    mismatched.append(path.name)
            return data

        return read

    files = {p.name: reader(p) for p in sorted(folder.iterdir()) if p.is_file()}
    dataset = _read_layout(layout, files, folder, "")
    if mismatched:
        dataset.verification = f"NOT verified: {', '.join(mismatched)} differ from the official files (--no-verify)"
    elif checked:
        dataset.verification = f"verified: {checked} files match the official md5s"
    else:
        dataset.verification = "not verified: no file with an official name and checksum"
    return dataset


def open_source(path: str | Path, *, verify: bool = True) -> LabelledImages:
    """Read whatever dataset ``path`` holds; a clear :class:`SourceError` if it holds none."""

    path = Path(path).expanduser()
    check_source_path(path)  # a device, pipe or unlistable folder: one clear line
    if path.is_file():
        if path.suffix == ".npz":
            return read_keras_npz(path, verify=verify)
        if IDX_FILE.fullmatch(path.name):  # one of the four files: the folder is the dataset
            return read_idx_folder(path.parent, verify=verify)
        return read_cifar_archive(path, verify=verify)
    check_finished(path)  # an interrupted export's first splits are not the dataset
    names = {p.name for p in path.iterdir() if p.is_file()}
    layout = detect_layout(names)
    if layout is not None:
        return read_cifar_folder(path, layout, verify=verify)
    if has_idx_files(path):
        return read_idx_folder(path, verify=verify)
    for child in EXTRACTED_FOLDERS + NESTED_FOLDERS:
        if (path / child).is_dir():
            return open_source(path / child, verify=verify)
    for archive in ARCHIVE_NAMES:
        if (path / archive).is_file():
            return read_cifar_archive(path / archive, verify=verify)
    from .tfds_folder import find_records, read_records_folder  # TFRecord exports, TFDS-prepared folders

    if find_records(path) is not None:
        return read_records_folder(path)
    if looks_like_image_tree(path):
        return read_folder(path)
    raise SourceError(
        f"{path}: no dataset found (expected a CIFAR archive, an extracted CIFAR folder, MNIST-family "
        "IDX files or an image tree <split>/<class>/*.png)"
    )
