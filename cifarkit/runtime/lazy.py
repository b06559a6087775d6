"""TensorFlow and Keras for cifarkit's modules, imported the first time they are used.

``from ..runtime.lazy import keras, ops, tf`` at the top of a module costs nothing: each name is
a stand-in that imports the real module when one of its attributes is first read, and hands every
read on to it after that. ``import cifarkit`` and the command line's option checks therefore
never load TensorFlow (seconds), and no function needs an import statement of its own.

So that this holds, nothing may read an attribute of these names while a module is being
imported: no module-level ``@tf.function``, no ``tf.X`` in a default argument or a class body
(a module whose classes subclass Keras's imports ``keras`` itself, and is imported lazily in
turn, see :mod:`cifarkit.modelio.layer_registry`).

The first read imports through Python's import system, as an ``import`` statement would: the
quiet TensorFlow import that :mod:`cifarkit.runtime.tensorflow` puts on ``sys.meta_path`` (the
command line does so before any command runs, after its oneDNN setting) filters TensorFlow's
start-up banners, and :mod:`cifarkit.modelio.layer_registry` registers cifarkit's layers once
Keras has loaded. ``keras`` and ``ops`` import TensorFlow only on Keras's TensorFlow backend.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any


class LazyModule:
    """Stands for the module ``name`` and imports it on the first attribute read."""

    __slots__ = ("_name", "_module")

    def __init__(self, name: str):
        self._name = name
        self._module = None

    def _load(self):
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{'' if self._module is not None else ' (not imported yet)'}>"


if TYPE_CHECKING:  # type checkers and editors see the real modules
    import keras
    import tensorflow as tf
    from keras import ops
else:
    tf = LazyModule("tensorflow")
    keras = LazyModule("keras")
    ops = LazyModule("keras.ops")

__all__ = ["LazyModule", "keras", "ops", "tf"]
