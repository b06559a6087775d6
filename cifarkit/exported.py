"""Models written by ``cifarkit export-model``, read back for ``evaluate`` and ``predict``: a
SavedModel folder or a ``.tflite`` file, behind the same small interface (class names, input
size, uint8 images -> probabilities) that :mod:`cifarkit.evaluate` uses for a ``.keras`` model.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from .errors import SourceError
from .tf_runtime import filtered_stderr

# The exported signature, as cifarkit.model_export writes it:
SIGNATURE = "serving_default"
IMAGES = "images"  # uint8 [N, H, W, C]: C is 3, or 1 for a model of grey images
PROBABILITIES = "probabilities"  # float32 [N, C]
CLASS_NAMES = "class_names"  # string [N, C]
# The interpreter's C++ logger writes this as it makes its CPU delegate, whatever the log level.
TFLITE_BANNERS = ("Created TensorFlow Lite XNNPACK delegate for CPU",)


def is_savedmodel(path: Path) -> bool:
    return (Path(path) / "saved_model.pb").is_file()


def latest_version(path: Path) -> Path | None:
    """A TensorFlow Serving model folder (``<name>/<version>/saved_model.pb``): its highest version."""
    path = Path(path)
    versions = [p for p in path.iterdir() if p.name.isdigit() and is_savedmodel(p)] if path.is_dir() else []
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
        import tensorflow as tf

        self.path = Path(path)
        try:
            self._loaded = tf.saved_model.load(str(self.path))
        except Exception as exc:  # TensorFlow raises many kinds for a damaged folder
            raise SourceError(f"{self.path}: cannot load the SavedModel ({type(exc).__name__}: {_first_line(exc)})") from None
        self._serve = self._loaded.signatures.get(SIGNATURE)
        metadata = getattr(self._loaded, "metadata", None)
        if self._serve is None or metadata is None or PROBABILITIES not in self._serve.structured_outputs:
            raise SourceError(f"{self.path}: not a model written by cifarkit export-model (no {SIGNATURE} signature "
                              f"with {PROBABILITIES}, or no metadata)")  # fmt: skip
        info = metadata()
        self.class_names = [name.decode() for name in info[CLASS_NAMES].numpy()]
        self.image_size = int(info["image_size"].numpy())

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        return self._serve(**{IMAGES: tf.constant(images, tf.uint8)})[PROBABILITIES].numpy()


class TFLiteClassifier(ExportedModel):
    kind = "TFLite"

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self._interpreter = _interpreter(self.path)
            self._runner = self._interpreter.get_signature_runner(SIGNATURE)
        except Exception as exc:  # a damaged flatbuffer raises ValueError or RuntimeError
            raise SourceError(f"{self.path}: cannot load the TFLite model ({type(exc).__name__}: {_first_line(exc)})") from None
        shape = self._runner.get_input_details().get(IMAGES, {}).get("shape_signature")
        outputs = self._runner.get_output_details()
        if shape is None or len(shape) != 4 or PROBABILITIES not in outputs or CLASS_NAMES not in outputs:
            raise SourceError(f"{self.path}: not a model written by cifarkit export-model (its {SIGNATURE} signature "
                              f"needs {IMAGES} in, {PROBABILITIES} and {CLASS_NAMES} out)")  # fmt: skip
        self.image_size = int(shape[1])
        with filtered_stderr(TFLITE_BANNERS):  # the delegate is made on the first call
            first = self._runner(**{IMAGES: np.zeros((1, self.image_size, self.image_size, int(shape[3])), np.uint8)})
        self.class_names = [name.decode() for name in first[CLASS_NAMES][0]]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        return self._runner(**{IMAGES: np.ascontiguousarray(images, np.uint8)})[PROBABILITIES]


def _interpreter(path: Path):
    """LiteRT's interpreter where installed (TensorFlow's is deprecated), else TensorFlow's."""
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the deprecation notice, on every construction
            return tf.lite.Interpreter(model_path=str(path), num_threads=threads)
    return Interpreter(model_path=str(path), num_threads=threads)


def open_exported(path: Path) -> ExportedModel:
    """The SavedModel folder (or TensorFlow Serving model folder: its highest version) or ``.tflite`` file."""
    path = Path(path)
    if path.is_file() and path.suffix == ".tflite":
        return TFLiteClassifier(path)
    if path.is_dir():
        folder = path if is_savedmodel(path) else latest_version(path)
        if folder is not None:
            return SavedModelClassifier(folder)
    raise SourceError(f"{path}: not an exported SavedModel folder or .tflite file")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
