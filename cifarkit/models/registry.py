"""The model registry: families register builders under a name; everything else creates by name.

A builder is ``build(num_classes=10, input_shape=None, **options) -> keras.Model``. Registering
stores it with what a user needs to choose a model (a one-line description, the native input size,
the augmentation recipe it is meant to train with) and builds nothing. The families import Keras
inside their builders, so listing models (``cifarkit models``) never pays for importing TensorFlow.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..augment.recipes import RECIPES
from ..errors import UsageError

if TYPE_CHECKING:
    import keras

# Recipes a model may name as its default: the names of cifarkit.augment.recipes' table (the paper's
# ImageNet-style augmentation for 227x227 inputs, crop-and-flip for native 32x32 CIFAR images).
KNOWN_RECIPES = tuple(RECIPES)
# Training defaults a model may declare (cifarkit.training.defaults.TRAINING_DEFAULTS): the paper's
# optimiser and schedule, the usual ones for small networks on 32x32 CIFAR images, or
# "airbench": the fast-training defaults of airbench (Jordan 2024) for its family.
KNOWN_TRAINING = ("paper", "cifar", "airbench")

# Arguments every builder takes; anything else in its signature is a model-specific option.
_COMMON_ARGUMENTS = ("num_classes", "input_shape")


@dataclass(frozen=True)
class ModelInfo:
    """One registered model: its builder and what a user needs to pick it."""

    name: str
    build: Callable[..., keras.Model]
    description: str
    input_size: int
    recipe: str
    training: str = "cifar"  # which training defaults the model is meant to train with

    @property
    def options(self) -> tuple[str, ...]:
        """Model-specific keyword options, e.g. ``("groups", "init", "dropout")`` for alexnet."""
        parameters = inspect.signature(self.build).parameters.values()
        return tuple(p.name for p in parameters if p.name not in _COMMON_ARGUMENTS and p.kind is not p.VAR_KEYWORD)

    @property
    def option_defaults(self) -> dict:
        """Each option's default as the builder declares it: a run records these beside the options
        it was given, so a later change of a default cannot silently change what a run resumes."""
        parameters = inspect.signature(self.build).parameters
        declared = {name: parameters[name].default for name in self.options}
        return {name: value for name, value in declared.items() if value is not inspect.Parameter.empty}

    @property
    def open_ended(self) -> bool:
        """True when the builder takes ``**kwargs``, so its options cannot be checked up front."""
        return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.build).parameters.values())


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str, *, input_size: int, recipe: str, training: str | None = None, description: str | None = None
):
    """Decorator that registers a builder; the description defaults to its docstring's first line,
    the training defaults to those named like its recipe."""
    if recipe not in KNOWN_RECIPES:
        raise ValueError(f"recipe must be one of {', '.join(KNOWN_RECIPES)}. Received: recipe={recipe!r}")
    training = recipe if training is None else training
    if training not in KNOWN_TRAINING:
        raise ValueError(f"training must be one of {', '.join(KNOWN_TRAINING)}. Received: training={training!r}")
    if not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"input_size must be a positive integer. Received: input_size={input_size!r}")

    def decorator(build: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        if name in _REGISTRY:
            raise ValueError(f"a model is already registered under this name. Received: name={name!r}")
        text = description if description is not None else (inspect.getdoc(build) or "").split("\n", 1)[0]
        _REGISTRY[name] = ModelInfo(name, build, text.strip(), input_size, recipe, training)
        return build

    return decorator


def list_models() -> list[ModelInfo]:
    """Every registered model, sorted by name."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def model_info(name: str) -> ModelInfo:
    """The registry entry for ``name``; an unknown name is a :class:`UsageError` listing the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UsageError(f"unknown model {name!r}; known models: {known}") from None


def check_options(name: str, options: dict) -> ModelInfo:
    """The registry entry for ``name``, with a :class:`UsageError` for an option its builder does
    not take (its values are the builder's to check, when it builds)."""
    info = model_info(name)
    if not info.open_ended:
        accepted = ("input_shape", *info.options)
        unknown = [key for key in options if key not in accepted]
        if unknown:
            raise UsageError(f"model {name!r} has no option {unknown[0]!r}; its options: {', '.join(accepted)}")
    return info


def create_model(name: str, num_classes: int = 10, **kwargs) -> keras.Model:
    """Build the model registered as ``name``, with its options checked before anything is built.

    Bad arguments (an option the model does not have, a value its builder rejects) become a
    :class:`UsageError`, so the CLI reports them in one line with exit code 2.
    """
    info = check_options(name, kwargs)
    try:
        return info.build(num_classes=num_classes, **kwargs)
    except ValueError as exc:  # the builders' argument checks: one line that names the bad value
        raise UsageError(f"cannot build {name!r}: {str(exc).strip().splitlines()[0]}") from exc
