"""The model zoo: families register builders by name; ``create_model`` builds one.

Importing this package registers the families without importing Keras or building anything.

    >>> from cifarkit.models import create_model, list_models
    >>> [m.name for m in list_models()]
    ['alexnet', 'alexnet-cifar', 'lenet5', 'vgg11', 'vgg13', 'vgg16', 'vgg19', 'whitenet']
    >>> model = create_model("alexnet", num_classes=1000, groups=2)
"""

from __future__ import annotations

from . import alexnet, lenet, vgg, whitenet  # noqa: F401  (registers the families)
from .registry import ModelInfo, check_options, create_model, list_models, model_info, register_model

__all__ = ["ModelInfo", "check_options", "create_model", "list_models", "model_info", "register_model"]
