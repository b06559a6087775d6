"""The python version of CIFAR-10/100: pickled dicts of numpy arrays, loaded without running code.

``pickle.load`` will call any function a file names, so a dataset file from the internet could
run ``os.system``. The unpickler here resolves only the handful of globals a pickled uint8 numpy
array needs, in both the Python 2 spelling the dataset's home page serves (protocol 2,
``numpy.core.multiarray._reconstruct``, byte-string keys) and the spellings Python 3 and
numpy 2 write (protocols 2 to 5, ``numpy._core``, ``_frombuffer`` for protocol 5). Any other
global is refused before it is ever called.
"""

from __future__ import annotations

import importlib
import io
import pickle
import re
from typing import Any, Callable

import numpy as np

from ..constants import (
    CIFAR100_NUM_COARSE,
    CIFAR100_NUM_FINE,
    CIFAR10_CLASSES,
    CHANNELS,
    IMAGE_BYTES,
    IMAGE_SIZE,
)
from ..errors import SourceError, UnsafeInputError
from .records import Batch


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1"); any other
    # codec (zlib, bz2, ...) has no business in a CIFAR batch.
    if encoding.lower().replace("-", "").replace("_", "") != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


def _numpy_attr(module: str, name: str) -> Any:
    # numpy 2 renamed numpy.core to numpy._core; old pickles name the old module.
    modern = module.replace("numpy.core", "numpy._core", 1)
    try:
        return getattr(importlib.import_module(modern), name)
    except (ImportError, AttributeError):
        return getattr(importlib.import_module(module), name)


_NUMPY_GLOBALS = [
    ("numpy.core.multiarray", "_reconstruct"),  # ndarray.__reduce__ up to protocol 4
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),  # a numpy integer inside a label list
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),  # ndarray.__reduce_ex__(5)
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
]
ALLOWED_GLOBALS: dict[tuple[str, str], Callable] = {
    key: _numpy_attr(*key) for key in _NUMPY_GLOBALS
}
ALLOWED_GLOBALS[("_codecs", "encode")] = _latin1_encode
# A bytearray below protocol 5 is a call of bytearray, which protocols 0-2 name with the
# Python 2 module (__builtin__) and protocols 3-4 with builtins.
ALLOWED_GLOBALS[("builtins", "bytearray")] = bytearray
ALLOWED_GLOBALS[("__builtin__", "bytearray")] = bytearray


class _RefusedGlobal(Exception):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose ``find_class`` knows only :data:`ALLOWED_GLOBALS`."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(module, name) from None


def safe_loads(data: bytes, filename: str) -> Any:
    """Unpickle ``data`` allowing nothing but numpy arrays and plain containers.

    ``encoding="bytes"`` keeps Python 2 byte strings as bytes, which is what numpy needs to
    rebuild an array written by Python 2; keys are normalised to str afterwards.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise UnsafeInputError(
            f"{filename}: refused to unpickle global '{exc}'; a CIFAR batch holds only numpy "
            "arrays, lists and strings, so this file was not loaded"
        ) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, OverflowError) as exc:  # fmt: skip
        raise SourceError(f"{filename}: not a valid CIFAR pickle ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) < 120 else text[:117] + "..."


def _as_str(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)


def load_dict(data: bytes, filename: str, required: tuple[str, ...]) -> dict[str, Any]:
    obj = safe_loads(data, filename)
    if not isinstance(obj, dict):
        raise SourceError(f"{filename}: expected a pickled dict, found {type(obj).__name__}")
    out = {_as_str(k): v for k, v in obj.items()}
    missing = [k for k in required if k not in out]
    if missing:
        raise SourceError(f"{filename}: missing key(s) {', '.join(missing)} (found: {', '.join(sorted(out))})")
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


def check_labels(values: Any, n: int, num_classes: int, key: str, filename: str) -> np.ndarray:
    try:
        labels = np.asarray(values, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise SourceError(f"{filename}: '{key}' is not a list of integers") from None
    if len(labels) != n:
        raise SourceError(f"{filename}: {len(labels)} {key} for {n} images")
    if n and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise SourceError(f"{filename}: label {bad} in '{key}' is outside 0..{num_classes - 1}")
    return labels


def _filenames(d: dict[str, Any], n: int, filename: str) -> list[str]:
    names = d.get("filenames")
    if isinstance(names, list) and len(names) == n:
        return [f"{filename}:{_as_str(x)}" for x in names]
    return [filename] * n


def _batch_number(name: str) -> int:
    return int(re.fullmatch(r"data_batch_(\d+)", name).group(1))


def read_cifar10(files: dict[str, Callable[[], bytes]]) -> tuple[tuple[str, ...], dict[str, list[Batch]], list[str]]:
    """CIFAR-10 python layout from ``files`` (base name -> reader). Returns names, batches, notes."""
    notes: list[str] = []
    if "batches.meta" in files:
        meta = load_dict(files["batches.meta"](), "batches.meta", ("label_names",))
        class_names = tuple(_as_str(x) for x in meta["label_names"])
    else:
        class_names = CIFAR10_CLASSES
        notes.append("batches.meta not found: using the standard CIFAR-10 class names")
    train = sorted((n for n in files if re.fullmatch(r"data_batch_\d+", n)), key=_batch_number)
    layout = {"train": train, "test": [n for n in ("test_batch",) if n in files]}
    batches: dict[str, list[Batch]] = {}
    for split, names in layout.items():
        for name in names:
            d = load_dict(files[name](), name, ("data", "labels"))
            data = check_pixels(d["data"], name)
            labels = check_labels(d["labels"], len(data), len(class_names), "labels", name)
            batches.setdefault(split, []).append(
                Batch(split, planar_to_hwc(data), labels, _filenames(d, len(data), name))
            )
    return class_names, batches, notes


def read_cifar100(files: dict[str, Callable[[], bytes]]) -> tuple[tuple[str, ...], tuple[str, ...], dict[str, list[Batch]]]:
    """CIFAR-100 python layout: ``train``, ``test`` and ``meta`` with fine and coarse labels."""
    if "meta" not in files:
        raise SourceError("meta: file not found; CIFAR-100 needs it for the class names")
    meta = load_dict(files["meta"](), "meta", ("fine_label_names", "coarse_label_names"))
    fine = tuple(_as_str(x) for x in meta["fine_label_names"])
    coarse = tuple(_as_str(x) for x in meta["coarse_label_names"])
    if len(fine) != CIFAR100_NUM_FINE or len(coarse) != CIFAR100_NUM_COARSE:
        raise SourceError(f"meta: {len(fine)} fine and {len(coarse)} coarse names, expected 100 and 20")
    batches: dict[str, list[Batch]] = {}
    for split in ("train", "test"):
        if split not in files:
            continue
        d = load_dict(files[split](), split, ("data", "fine_labels", "coarse_labels"))
        data = check_pixels(d["data"], split)
        labels = check_labels(d["fine_labels"], len(data), len(fine), "fine_labels", split)
        coarse_labels = check_labels(d["coarse_labels"], len(data), len(coarse), "coarse_labels", split)
        batches[split] = [Batch(split, planar_to_hwc(data), labels, _filenames(d, len(data), split), coarse_labels)]
    return fine, coarse, batches
