"""Models written by ``cifarkit export-model``, read back for ``evaluate`` and ``predict``: a
SavedModel folder or a ``.tflite`` file, behind the same small interface (class names, input
size, uint8 images -> probabilities) that :mod:`cifarkit.evaluation.evaluate` uses for a ``.keras`` model.

Both are programs, so :func:`open_exported` runs only those this user's ``export-model`` wrote,
unless told to trust the file (:mod:`cifarkit.modelio.trust`); a ``.tflite`` file runs in a child
process (:mod:`cifarkit.modelio.tflite_process`) whatever its origin.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import SourceError, UsageError
from ..runtime.lazy import tf

# The exported signature, as cifarkit.modelio.export writes it:
SIGNATURE = "serving_default"
IMAGES = "images"  # uint8 [N, H, W, C]: C is 3, or 1 for a model of grey images
PROBABILITIES = "probabilities"  # float32 [N, C]
CLASS_NAMES = "class_names"  # string [N, C]
RESIZE = "resize"  # the SavedModel's metadata: how the signature treats other sizes, in words
VERSION = re.compile(r"[0-9]{1,18}")  # a TensorFlow Serving version folder: an int64


def is_savedmodel(path: Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


def latest_version(path: Path) -> Path | None:
    """A TensorFlow Serving model folder (``<name>/<version>/saved_model.pb``): its highest version."""
    path = Path(path)
    versions = [p for p in path.iterdir() if VERSION.fullmatch(p.name) and is_savedmodel(p)] if path.is_dir() else []
    return max(versions, key=lambda p: int(p.name), default=None)


class ExportedModel:
    """An exported model: ``class_names``, ``image_size`` and :meth:`probabilities`."""

    kind = "exported"
    path: Path
    class_names: list[str]
    image_size: int

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, channels) uint8 -> (N, classes) float32."""
        raise NotImplementedError


class SavedModelClassifier(ExportedModel):
    kind = "SavedModel"

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._loaded = tf.saved_model.load(str(self.path))
        except Exception as exc:  # TensorFlow raises many kinds for a damaged folder
            raise SourceError(
                f"{self.path}: cannot load the SavedModel ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        self._serve = self._loaded.signatures.get(SIGNATURE)
        metadata = getattr(self._loaded, "metadata", None)
        if self._serve is None or metadata is None or PROBABILITIES not in self._serve.structured_outputs:
            raise SourceError(
                f"{self.path}: not a model written by cifarkit export-model (no {SIGNATURE} signature "
                f"with {PROBABILITIES}, or no metadata)"
            )
        info = metadata()
        self.class_names = [name.decode() for name in info[CLASS_NAMES].numpy()]
        self.image_size = int(info["image_size"].numpy())

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self._serve(**{IMAGES: tf.constant(images, tf.uint8)})[PROBABILITIES].numpy()


class TFLiteClassifier(ExportedModel):
    """A ``.tflite`` file, run in a child process (:mod:`cifarkit.modelio.tflite_process`): a damaged file
    that crashes the interpreter is one line, and the interpreter's log stays off the terminal.

    The child starts here and is asked what the file holds on first use, so its start (an import
    of TensorFlow) overlaps with whatever the caller does meanwhile."""

    kind = "TFLite"

    def __init__(self, path: Path):
        from .tflite_process import InterpreterProcess

        self.path = Path(path)
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        self._process = InterpreterProcess(self.path, threads or 1)
        self._description: tuple[int, list[str]] | SourceError | None = None

    @property
    def image_size(self) -> int:
        return self._describe()[0]

    @property
    def class_names(self) -> list[str]:
        return self._describe()[1]

    def _describe(self) -> tuple[int, list[str]]:
        if self._description is None:
            try:
                self._description = self._read_description()
            except SourceError as exc:
                self._process.close()
                self._description = exc  # said again on every use, not asked of a child that is gone
        if isinstance(self._description, SourceError):
            raise self._description
        return self._description

    def _read_description(self) -> tuple[int, list[str]]:
        found = self._process.describe()
        if found.get("error") == "load":
            raise SourceError(f"{self.path}: cannot load the TFLite model ({found.get('why')})")
        if "error" in found:
            raise SourceError(
                f"{self.path}: not a model written by cifarkit export-model (its {SIGNATURE} "
                f"signature needs {IMAGES} in, {PROBABILITIES} and {CLASS_NAMES} out)"
            )
        names = [str(name) for name in found.get("class_names", [])]
        if not names or len(names) != found.get("classes"):
            raise SourceError(f"{self.path}: its class names do not match its {found.get('classes')} outputs")
        return _whole(found.get("image_size"), self.path), names

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        self._describe()
        return self._process.run(images)

    def close(self) -> None:
        self._process.close()


def _whole(value, path: Path) -> int:
    if type(value) is not int or value < 1:
        raise SourceError(f"{path}: the TFLite model takes images of side {value!r}")
    return value


def open_exported(path: Path, *, trust: bool = False) -> ExportedModel:
    """The SavedModel folder (or TensorFlow Serving model folder: its highest version) or ``.tflite``
    file. Unless ``trust``, one that this user's ``cifarkit export-model`` did not write is
    refused before anything of it runs (:mod:`cifarkit.modelio.trust`)."""
    from .trust import check_trusted

    path = Path(path)
    if path.is_file() and path.suffix == ".tflite":
        if not trust:
            check_trusted(path, "tflite")
        return TFLiteClassifier(path)
    folder = (path if is_savedmodel(path) else latest_version(path)) if path.is_dir() else None
    if folder is None:
        raise SourceError(f"{path}: not an exported SavedModel folder or .tflite file")
    if not trust:
        check_trusted(folder, "savedmodel")
    try:
        return SavedModelClassifier(folder)
    except ImportError as exc:  # Keras on JAX or PyTorch, without TensorFlow
        raise UsageError(
            f"{path}: reading a SavedModel needs {exc.name or 'tensorflow'}, which is not importable "
            "here; evaluate the run's .keras file instead"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
