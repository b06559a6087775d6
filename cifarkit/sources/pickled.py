"""The python version of CIFAR-10/100: pickled dicts of numpy arrays, checked batch by batch.

The bytes are unpickled by :mod:`.safe_pickle` (no code runs, arrays only over the file's own
bytes); this module checks what came out against the CIFAR layouts: the keys, uint8 pixels of
N x 3072, one integer label per image in range, class names as strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from ..constants import (
    CHANNELS,
    CIFAR10_CLASSES,
    CIFAR100_NUM_COARSE,
    CIFAR100_NUM_FINE,
    IMAGE_BYTES,
    IMAGE_SIZE,
)
from ..errors import SourceError
from .labelled import Batch, CifarParts
from .safe_pickle import safe_loads, short_text
from .spill import SpilledBytes, keep_array


def _as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def load_dict(data: bytes | SpilledBytes, filename: str, required: tuple[str, ...]) -> dict[str, Any]:
    """A pickled dict's keys as text, ``required`` present; a spilled member is unpickled from its
    file, so its pixels are in memory once (as the array), not also as the pickle's bytes."""
    if isinstance(data, SpilledBytes):
        with data.stream() as stream:
            obj = safe_loads(stream, filename, data.size)
    else:
        obj = safe_loads(data, filename)
    if not isinstance(obj, dict):
        raise SourceError(f"{filename}: expected a pickled dict, found {type(obj).__name__}")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not isinstance(key, (str, bytes)):
            raise SourceError(f"{filename}: a key is a {type(key).__name__}; a CIFAR batch's keys are strings")
        out[_as_str(key)] = value
    missing = [k for k in required if k not in out]
    if missing:
        found = short_text(", ".join(sorted(out)))
        raise SourceError(f"{filename}: missing key(s) {', '.join(missing)} (found: {found})")
    return out


def planar_to_hwc(data: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of R plane, G plane, B plane (each 32x32 row-major) -> (N, 32, 32, 3) view."""
    return data.reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)


def check_pixels(data: Any, filename: str) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise SourceError(f"{filename}: 'data' is a {type(data).__name__}, expected a numpy array")
    if data.dtype != np.uint8:
        raise SourceError(f"{filename}: 'data' has dtype {data.dtype}, expected uint8")
    if data.ndim != 2 or data.shape[1] != IMAGE_BYTES:
        raise SourceError(f"{filename}: 'data' has shape {data.shape}, expected N x {IMAGE_BYTES}")
    return data


def _number(value: int) -> str:
    # str() of an int over 4300 digits raises; a label that size only needs describing.
    return str(value) if value.bit_length() <= 64 else f"of {value.bit_length()} bits"


def check_labels(values: Any, n: int, num_classes: int, key: str, filename: str) -> np.ndarray:
    """One class index per image, as int64, from a list of ints or an integer array.

    Floats and strings are refused rather than truncated or parsed: a file that stores labels
    as them is not a CIFAR batch, and guessing would mislabel images silently."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        flat = values.reshape(-1)
    elif isinstance(values, (list, tuple)) and all(type(v) is int for v in values):
        flat = values
    else:
        if isinstance(values, (list, tuple)):
            what = f"holds a {type(next(v for v in values if type(v) is not int)).__name__}"
        else:
            what = (
                f"is an array of {values.dtype}" if isinstance(values, np.ndarray) else f"is a {type(values).__name__}"
            )
        raise SourceError(f"{filename}: '{key}' is not a list of integers (it {what})")
    if len(flat) != n:
        raise SourceError(f"{filename}: {len(flat)} {key} for {n} images")
    if n and (min(flat) < 0 or max(flat) >= num_classes):
        bad = next(int(v) for v in flat if not 0 <= v < num_classes)
        raise SourceError(f"{filename}: label {_number(bad)} in '{key}' is outside 0..{num_classes - 1}")
    return np.asarray(flat, dtype=np.int64)


def _class_names(meta: dict[str, Any], key: str, filename: str) -> tuple[str, ...]:
    names = meta[key]
    if not isinstance(names, (list, tuple)) or not all(isinstance(x, (str, bytes)) for x in names):
        raise SourceError(f"{filename}: '{key}' is a {type(names).__name__}, expected a list of class names")
    if not names:
        raise SourceError(f"{filename}: '{key}' is empty")
    return tuple(_as_str(x) for x in names)


def _filenames(d: dict[str, Any], n: int, filename: str) -> list[str]:
    names = d.get("filenames")
    if isinstance(names, list) and len(names) == n and all(isinstance(x, (str, bytes)) for x in names):
        return [f"{filename}:{_as_str(x)}" for x in names]
    return [filename] * n


def _batch_number(name: str) -> int:
    return int(re.fullmatch(r"data_batch_(\d+)", name).group(1))


def read_cifar10(files: dict[str, Callable[[], bytes | SpilledBytes]]) -> CifarParts:
    """CIFAR-10 python layout from ``files`` (base name -> reader)."""
    notes: list[str] = []
    if "batches.meta" in files:
        meta = load_dict(files["batches.meta"](), "batches.meta", ("label_names",))
        class_names = _class_names(meta, "label_names", "batches.meta")
    else:
        class_names = CIFAR10_CLASSES
        notes.append("batches.meta not found: using the standard CIFAR-10 class names")
    train = sorted((n for n in files if re.fullmatch(r"data_batch_\d+", n)), key=_batch_number)
    layout = {"train": train, "test": [n for n in ("test_batch",) if n in files]}
    batches: dict[str, list[Batch]] = {}
    for split, names in layout.items():
        for name in names:
            batches.setdefault(split, []).append(_cifar10_batch(files[name], name, split, len(class_names)))
    return CifarParts(class_names, batches, notes=notes)


def _cifar10_batch(read: Callable[[], bytes | SpilledBytes], name: str, split: str, classes: int) -> Batch:
    """One data batch; its pickle's bytes and dict are released when this returns, before the next
    batch is read (one batch's bytes in memory at a time)."""
    d = load_dict(read(), name, ("data", "labels"))
    data = check_pixels(d["data"], name)
    labels = check_labels(d["labels"], len(data), classes, "labels", name)
    images = planar_to_hwc(keep_array(data))  # a temporary file under spill.arrays_on_disk
    return Batch(split, images, labels, _filenames(d, len(data), name))


def read_cifar100(files: dict[str, Callable[[], bytes | SpilledBytes]]) -> CifarParts:
    """CIFAR-100 python layout: ``train``, ``test`` and ``meta`` with fine and coarse labels."""
    if "meta" not in files:
        raise SourceError("meta: file not found; CIFAR-100 needs it for the class names")
    meta = load_dict(files["meta"](), "meta", ("fine_label_names", "coarse_label_names"))
    fine = _class_names(meta, "fine_label_names", "meta")
    coarse = _class_names(meta, "coarse_label_names", "meta")
    if len(fine) != CIFAR100_NUM_FINE or len(coarse) != CIFAR100_NUM_COARSE:
        raise SourceError(f"meta: {len(fine)} fine and {len(coarse)} coarse names, expected 100 and 20")
    batches: dict[str, list[Batch]] = {}
    for split in ("train", "test"):
        if split in files:
            batches[split] = [_cifar100_batch(files[split], split, len(fine), len(coarse))]
    return CifarParts(fine, batches, coarse_class_names=coarse)


def _cifar100_batch(read: Callable[[], bytes | SpilledBytes], split: str, fine: int, coarse: int) -> Batch:
    d = load_dict(read(), split, ("data", "fine_labels", "coarse_labels"))
    data = check_pixels(d["data"], split)
    labels = check_labels(d["fine_labels"], len(data), fine, "fine_labels", split)
    coarse_labels = check_labels(d["coarse_labels"], len(data), coarse, "coarse_labels", split)
    images = planar_to_hwc(keep_array(data))  # a temporary file under spill.arrays_on_disk
    return Batch(split, images, labels, _filenames(d, len(data), split), coarse_labels)
