"""The binary version of CIFAR-10/100: fixed-size records, no pickles at all.

CIFAR-10 records are <label byte><3072 pixel bytes>; CIFAR-100 records are
<coarse label byte><fine label byte><3072 pixel bytes>. Class names are text files, one a line.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

from ..constants import (
    CIFAR10_BINARY_RECORD,
    CIFAR10_CLASSES,
    CIFAR100_BINARY_RECORD,
    CIFAR100_NUM_COARSE,
    CIFAR100_NUM_FINE,
)
from ..errors import SourceError
from ..metadata.labels import parse_names
from .labelled import Batch, CifarParts
from .pickled import check_labels, planar_to_hwc
from .spill import keep_array


def _records(data: bytes, record_size: int, filename: str) -> np.ndarray:
    if len(data) == 0 or len(data) % record_size:
        raise SourceError(
            f"{filename}: {len(data)} bytes is not a whole number of {record_size}-byte records "
            "(truncated or not a CIFAR binary batch)"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(-1, record_size)


MAX_BINARY_CLASSES = 256  # a label is one byte


def _names(data: bytes, filename: str) -> tuple[str, ...]:
    """The names file's lines, trimmed, blank ones skipped: at most one per label byte value."""
    text = data.decode("utf-8", "replace")  # the official files are ASCII; a stray byte is shown, not fatal
    names = tuple(n.strip() for n in parse_names(text, filename, most=MAX_BINARY_CLASSES) if n.strip())
    if not names:
        raise SourceError(f"{filename}: no class names in it (one a line expected)")
    return names


def _batch_number(name: str) -> int:
    return int(re.fullmatch(r"data_batch_(\d+)\.bin", name).group(1))


def read_cifar10(files: dict[str, Callable[[], bytes]]) -> CifarParts:
    notes: list[str] = []
    if "batches.meta.txt" in files:
        class_names = _names(files["batches.meta.txt"](), "batches.meta.txt")
    else:
        class_names = CIFAR10_CLASSES
        notes.append("batches.meta.txt not found: using the standard CIFAR-10 class names")
    train = sorted((n for n in files if re.fullmatch(r"data_batch_\d+\.bin", n)), key=_batch_number)
    layout = {"train": train, "test": [n for n in ("test_batch.bin",) if n in files]}
    batches: dict[str, list[Batch]] = {}
    for split, names in layout.items():
        for name in names:
            rec = _records(files[name](), CIFAR10_BINARY_RECORD, name)
            labels = check_labels(rec[:, 0], len(rec), len(class_names), "labels", name)
            images = planar_to_hwc(keep_array(rec[:, 1:]))  # a temporary file under spill.arrays_on_disk
            batches.setdefault(split, []).append(Batch(split, images, labels, [name] * len(rec)))
    return CifarParts(class_names, batches, notes=notes)


def read_cifar100(files: dict[str, Callable[[], bytes]]) -> CifarParts:
    for needed in ("fine_label_names.txt", "coarse_label_names.txt"):
        if needed not in files:
            raise SourceError(f"{needed}: file not found; CIFAR-100 needs it for the class names")
    fine = _names(files["fine_label_names.txt"](), "fine_label_names.txt")
    coarse = _names(files["coarse_label_names.txt"](), "coarse_label_names.txt")
    if len(fine) != CIFAR100_NUM_FINE or len(coarse) != CIFAR100_NUM_COARSE:
        raise SourceError(f"label name files list {len(fine)} fine and {len(coarse)} coarse names, expected 100 and 20")
    batches: dict[str, list[Batch]] = {}
    for split in ("train", "test"):
        name = f"{split}.bin"
        if name not in files:
            continue
        rec = _records(files[name](), CIFAR100_BINARY_RECORD, name)
        coarse_labels = check_labels(rec[:, 0], len(rec), len(coarse), "coarse labels", name)
        labels = check_labels(rec[:, 1], len(rec), len(fine), "fine labels", name)
        images = planar_to_hwc(keep_array(rec[:, 2:]))
        batches[split] = [Batch(split, images, labels, [name] * len(rec), coarse_labels)]
    return CifarParts(fine, batches, coarse_class_names=coarse)
