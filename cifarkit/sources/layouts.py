"""The CIFAR archives and folders: their four layouts (python or binary, CIFAR-10 or -100), the
official file names and checksums, and the readers of an archive and of an extracted folder.

:mod:`.registry` decides which source family a path is; this module reads the CIFAR ones.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..constants import ARCHIVE_MD5, EXTRACTED_MD5, MAX_DATASET_BYTES, MAX_MEMBER_BYTES, SAMPLE_MD5, SAMPLE_NAME
from ..errors import ChecksumError, SourceError, UnsafeInputError, no_verify
from . import binary, pickled
from .archive import read_archive
from .labelled import CifarParts, LabelledImages
from .spill import as_bytes

# Folder names the official archives extract to, and the archive names, in order of preference.
EXTRACTED_FOLDERS = ("cifar-10-batches-py", "cifar-100-python", "cifar-10-batches-bin", "cifar-100-binary")
ARCHIVE_NAMES = tuple(ARCHIVE_MD5)
# Where other tools nest a dataset inside the folder they were given: Keras 3 extracts the CIFAR
# archives into "<name>-target/" (~/.keras/datasets/cifar-10-batches-py-target/cifar-10-batches-py/);
# torchvision keeps the IDX files in "raw/" (MNIST/raw/, FashionMNIST/raw/, KMNIST/raw/).
KERAS3_FOLDERS = tuple(f"{name}-target/{name}" for name in EXTRACTED_FOLDERS[:2])
NESTED_FOLDERS = KERAS3_FOLDERS + ("raw",)
KNOWN_MD5 = {**ARCHIVE_MD5, SAMPLE_NAME: SAMPLE_MD5}


@dataclass(frozen=True)
class CifarLayout:
    """One of the four CIFAR layouts: what it is called and the reader of its files."""

    dataset: str  # cifar10 or cifar100
    description: str
    read: Callable[[dict[str, Callable[[], bytes]]], CifarParts]


CIFAR_LAYOUTS = {
    "cifar10-python": CifarLayout("cifar10", "CIFAR-10, python version (pickled batches)", pickled.read_cifar10),
    "cifar100-python": CifarLayout("cifar100", "CIFAR-100, python version (pickled batches)", pickled.read_cifar100),
    "cifar10-binary": CifarLayout("cifar10", "CIFAR-10, binary version", binary.read_cifar10),
    "cifar100-binary": CifarLayout("cifar100", "CIFAR-100, binary version", binary.read_cifar100),
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


def _read_layout(
    layout: str, files: dict[str, Callable[[], bytes]], location: Path, verification: str
) -> LabelledImages:
    kind = CIFAR_LAYOUTS[layout]
    parts = kind.read(files)
    if not parts.batches:
        raise SourceError(f"{location}: no train or test batches found")
    return LabelledImages(
        name=kind.dataset,
        format=kind.description,
        location=location,
        class_names=parts.class_names,
        batches=parts.batches,
        coarse_class_names=parts.coarse_class_names,
        verification=verification,
        notes=parts.notes,
    )


def _mismatch(path: Path, known: str, actual: str) -> ChecksumError:
    return ChecksumError(
        f"{path}: md5 {actual} does not match the official {path.name} ({known}); the file is "
        f"corrupt or modified. Pass {no_verify()} to read it anyway"
    )


def read_cifar_archive(path: Path, *, verify: bool = True, known_md5: dict[str, str] = KNOWN_MD5) -> LabelledImages:
    contents = read_archive(path, md5=verify, keep=is_dataset_file)
    official = known_md5.get(path.name)
    if not verify:
        verification = f"NOT verified: checksum not checked ({no_verify()})"
    elif official is None:
        verification = f"not verified: {path.name} is not an official file name (md5 {contents.md5})"
    elif contents.md5 == official:
        verification = f"verified: md5 {contents.md5} is the known checksum of {path.name}"
    else:
        raise _mismatch(path, official, contents.md5)
    # Members are addressed by base name; the top folder (cifar-10-batches-py/ ...) varies.
    bases = [PurePosixPath(member).name for member in contents.files]
    twice = next((base for base in bases if bases.count(base) > 1), None)
    if twice is not None:
        raise SourceError(f"{path}: two members named '{twice}'; cannot tell which is the dataset")
    layout = detect_layout(set(bases))
    if layout is None:
        raise SourceError(f"{path}: not a CIFAR archive (no data_batch_*, test_batch, train or test member)")
    # pop: a member is released as soon as its batch is parsed. The pickle reader takes a spilled
    # member as a file; the binary one reads its records from bytes.
    kept = layout.endswith("-python")
    by_name = {
        base: (lambda m=member: contents.files.pop(m)) if kept else (lambda m=member: as_bytes(contents.files.pop(m)))
        for base, member in zip(bases, contents.files)
    }
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
        dataset.verification = f"NOT verified: {', '.join(mismatched)} differ from the official files ({no_verify()})"
    elif checked:
        dataset.verification = f"verified: {checked} files match the official md5s"
    else:
        dataset.verification = "not verified: no file with an official name and checksum"
    return dataset
