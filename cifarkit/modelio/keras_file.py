"""The saved model: what training writes and what evaluation and prediction read back.

A model saved by ``cifarkit train`` takes uint8 images of one size; its first layer is the
recipe's :class:`~cifarkit.augment.layer.Augmentation` (the centre view outside training), then
the network, then :class:`ClassNames`, which turns the logits into probabilities (softmax) and
carries the class names. So a ``.keras`` file needs nothing else to label its own predictions,
and ``model.predict`` on uint8 images gives class probabilities. A file whose ``ClassNames`` has
no ``activation`` ends in logits; :func:`outputs_probabilities` tells the two apart, so readers
apply the softmax only where the file does not.

Loading needs only ``import cifarkit`` (:mod:`cifarkit.modelio.layer_registry` registers the layers).

This module is the contract between the trainer and its readers, and sits below both. Which
file a run folder or a path means is :mod:`cifarkit.modelio.model_path` (no Keras import), whose names
are also here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras

from ..errors import SourceError
from .model_path import BEST_MODEL, CONFIG_FILE, LAST_MODEL, resolve_model_path  # noqa: F401 (their names here too)

ACTIVATIONS = ("linear", "softmax")


@keras.saving.register_keras_serializable(package="cifarkit")
class ClassNames(keras.layers.Layer):
    """The model's last layer: the softmax of the logits (``activation="linear"``: the logits, as
    files without an ``activation`` in its config are read); its config stores the class names,
    so a ``.keras`` file can label
    its own predictions."""

    def __init__(self, names: Sequence[str], activation: str = "linear", **kwargs):
        kwargs.setdefault("dtype", "float32")  # a softmax in float32, whatever the compute dtype
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}. Received: activation={activation!r}")
        self.names = [str(n) for n in names]
        self.activation = activation

    def call(self, logits):
        if self.activation == "softmax":
            return keras.ops.softmax(logits, axis=-1)
        return logits

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "names": self.names, "activation": self.activation}


def load_model(path: Path):
    """A ``.keras`` file written by ``cifarkit train``."""
    from .layer_registry import register_layers

    register_layers()  # done by `import cifarkit` already; here for a caller that imported this module alone

    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such model file")
    _check_archive(path)
    try:
        # safe_mode: a config that asks for code (a Lambda layer's bytecode) is refused, never run
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras and h5py raise many kinds for a file that is not a whole model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise SourceError(
            f"{path}: cannot load the model ({type(exc).__name__}{': ' if first else ''}{first})"
        ) from None


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


def model_parts(model):
    """(augmentation layer, network, class names) of a model saved by ``cifarkit train``."""
    from ..augment.layer import Augmentation

    augmentation = next((layer for layer in model.layers if isinstance(layer, Augmentation)), None)
    labels = next((layer for layer in model.layers if isinstance(layer, ClassNames)), None)
    if augmentation is None or labels is None:
        raise SourceError(
            f"model {model.name!r} was not saved by cifarkit train (no preprocessing layer or class names in it)"
        )
    index = model.layers.index(augmentation)
    network = model.layers[index + 1]
    return augmentation, network, labels.names


def outputs_probabilities(model) -> bool:
    """Whether the model ends in a softmax, not in logits (a ``ClassNames`` without ``activation``)."""
    last = model.layers[-1] if model.layers else None
    if isinstance(last, ClassNames):
        return last.activation == "softmax"
    activation = getattr(last, "activation", None)  # a bare network: Dense/Activation(softmax) or Softmax
    return isinstance(last, keras.layers.Softmax) or getattr(activation, "__name__", None) == "softmax"


def load_any(path: Path, *, trust: bool = False):
    """A Keras model for a ``.keras`` file (safe mode, always), else the exported model
    (:mod:`cifarkit.modelio.exported`), which runs only if this user's export-model wrote it or ``trust``."""
    if Path(path).suffix == ".keras":
        return load_model(path)
    from .exported import open_exported

    return open_exported(path, trust=trust)


def input_size(model) -> int:
    """The side of the square uint8 images the saved model takes."""
    return int(model.input_shape[1])


def input_channels(model) -> int:
    """The channels of the uint8 images the saved model takes: 3, or 1 for grey images (MNIST)."""
    return int(model.input_shape[-1])
