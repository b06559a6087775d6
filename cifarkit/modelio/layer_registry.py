"""cifarkit's Keras layers, registered as soon as Keras is imported, without importing it.

Keras 3 finds a saved custom class only in its registry (``cifarkit>Augmentation``): unlike its
own layers, it never imports the module a ``.keras`` file names. The modules that define the
layers import Keras (and with it TensorFlow, seconds), so ``import cifarkit`` cannot import them.
Instead :func:`install` registers them at once when Keras is loaded already, and otherwise puts a
finder on ``sys.meta_path`` that waits for the ``keras`` module to finish executing, imports
those modules, and then takes itself off. So ``import cifarkit; import keras;
keras.models.load_model("best.keras")`` works in any order.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import warnings

# The modules whose import registers a layer that saved models hold:
LAYER_MODULES = (
    "cifarkit.augment.layer",  # Augmentation: the recipe's preprocessing, first in every saved model
    "cifarkit.models.layers",  # LocalResponseNormalization (alexnet)
    "cifarkit.models.batch_norm",  # FusedBatchNorm (every model with batch norm)
    "cifarkit.models.whitenet_layers",  # ScaledBias, PartialIdentity (whitenet)
    "cifarkit.training.methods",  # WarmupDecay: the per-step learning-rate schedules
    "cifarkit.modelio.keras_file",  # ClassNames: the class names and the final softmax, last
)


def register_layers() -> None:
    """Import the modules that register cifarkit's layers with Keras (imports Keras)."""
    for name in LAYER_MODULES:
        importlib.import_module(name)


class _Loader(importlib.abc.Loader):
    """Keras's own loader, with the layers registered right after the module has executed."""

    def __init__(self, loader, finder):
        self._loader, self._finder = loader, finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._finder.uninstall()
        try:
            register_layers()
        except Exception as exc:  # a broken cifarkit must not break `import keras` for everyone else
            warnings.warn(f"cifarkit: its Keras layers are not registered ({type(exc).__name__}: {exc})", stacklevel=2)

    def __getattr__(self, name):  # get_resource_reader, is_package, ...: the original's
        return getattr(self._loader, name)


class _AfterKeras(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "keras":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader, self)
                return spec
        return None

    def uninstall(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def install() -> None:
    """Register the layers now if Keras is loaded, else when it is (cheap: imports nothing)."""
    if "keras" in sys.modules:
        register_layers()
        return
    if not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())
