"""The saved model: what training writes and what evaluation and prediction read back.

A model saved by ``cifarkit train`` takes uint8 images of one size; its first layer is the
recipe's :class:`~cifarkit.augment_layer.Augmentation` (the centre view outside training), then
the network, then :class:`ClassNames`, which passes the logits through and carries the class
names. So a ``.keras`` file needs nothing else to label its own predictions.

This module is the contract between the trainer and its readers, and sits below both: it also
names the files a run folder exposes its model under (``best.keras``, ``last.keras``) and its
configuration (``config.json``), so finding a run's model needs no import of the trainer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import keras

from .errors import SourceError, UsageError

BEST_MODEL = "best.keras"  # highest validation accuracy
LAST_MODEL = "last.keras"  # the end of the latest epoch
CONFIG_FILE = "config.json"  # the run's settings, defaults resolved


@keras.saving.register_keras_serializable(package="cifarkit")
class ClassNames(keras.layers.Layer):
    """Identity on the logits; its config stores the class names, so a ``.keras`` file can label
    its own predictions."""

    def __init__(self, names: Sequence[str], **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.names = [str(n) for n in names]

    def call(self, logits):
        return logits

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "names": self.names}


def load_model(path: Path):
    """A ``.keras`` file written by ``cifarkit train`` (the custom layers are registered on import)."""
    from .augment_layer import Augmentation  # noqa: F401  (registers it)
    from .models import layers  # noqa: F401  (registers LocalResponseNormalization)

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such model file")
    _check_archive(path)
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # Keras and h5py raise many kinds for a file that is not a whole model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SourceError(f"{path}: cannot load the model ({type(exc).__name__}{': ' if first else ''}{first})") from None


def _check_archive(path: Path) -> None:
    """A ``.keras`` file is a zip archive with a CRC for every member: check them all first, so a
    damaged or truncated file is named as such, not as whatever Keras trips over inside it."""
    import zipfile
    import zlib

    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise SourceError(f"{path}: not a whole .keras model file ({exc}); is it truncated?") from None
    except (OSError, EOFError, ValueError, NotImplementedError, zlib.error) as exc:
        raise SourceError(f"{path}: damaged .keras model file ({type(exc).__name__}: {exc})") from None
    if bad is not None:
        raise SourceError(f"{path}: damaged .keras model file ({bad} does not match its checksum)")


def resolve_model_path(path: Path, check_config: Callable[[Any, Path], object] | None = None) -> tuple[Path, dict | None]:
    """A run folder (its best.keras, falling back to last.keras, and its config) or a ``.keras`` file.

    ``check_config(data, where)`` checks a run folder's config.json as read (the trainer's
    :func:`cifarkit.training.run_config`), raising :class:`SourceError` for a damaged one; it is
    passed in because the trainer sits above this module."""
    path = Path(path).expanduser()
    if path.is_dir():
        config_file = path / CONFIG_FILE
        try:
            config = json.loads(config_file.read_text()) if config_file.is_file() else None
        except (OSError, ValueError) as exc:
            raise SourceError(f"{config_file}: unreadable run configuration ({exc})") from None
        if config is not None and check_config is not None:
            try:
                check_config(config, config_file)  # a list, {} or "data": null: one line here, not a crash later
            except SourceError as exc:
                raise SourceError(f"{exc}; evaluate its {BEST_MODEL} with --data instead") from None
        for name in (BEST_MODEL, LAST_MODEL):
            if (path / name).is_file():
                return path / name, config
        raise SourceError(f"{path}: no {BEST_MODEL} or {LAST_MODEL} in this folder (not a training run, or one "
                          "that has not finished an epoch)")  # fmt: skip
    if not path.exists():
        raise SourceError(f"{path}: no such run folder or model file")
    if path.suffix != ".keras":
        raise UsageError(f"expected a run folder or a .keras file. Received: {path}")
    return path, None


def model_parts(model):
    """(augmentation layer, network, class names) of a model saved by ``cifarkit train``."""
    from .augment_layer import Augmentation

    augmentation = next((layer for layer in model.layers if isinstance(layer, Augmentation)), None)
    labels = next((layer for layer in model.layers if isinstance(layer, ClassNames)), None)
    if augmentation is None or labels is None:
        raise SourceError(f"model {model.name!r} was not saved by cifarkit train (no preprocessing layer or "
                          "class names in it)")  # fmt: skip
    index = model.layers.index(augmentation)
    network = model.layers[index + 1]
    return augmentation, network, labels.names


def input_size(model) -> int:
    """The side of the square uint8 images the saved model takes."""
    return int(model.input_shape[1])
