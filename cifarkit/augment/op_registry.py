"""The base class of augmentation ops and the registry that names them.

An op registers itself under a name (``@register_op("crop")``) when :mod:`cifarkit.augment.ops`
is imported; :func:`make_op` builds one from its name and arguments, the form recipes are written
in. Import ``make_op`` from :mod:`cifarkit.augment.ops`, which guarantees every op is registered.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import ClassVar

OPS: dict[str, type[Op]] = {}


class Op:
    """One step of a recipe. Subclasses are frozen dataclasses whose fields are the arguments."""

    name: ClassVar[str]
    # The leaf of the seed tree this op draws from on the host (each level splits a seed in two):
    # distinct per random op, and fixed, so a recipe's host output depends on the seed only.
    seed_path: ClassVar[tuple[int, ...]] = ()
    visible: ClassVar[bool] = True  # False: the preview shows no row for it (it shifts values only)
    uses_epoch: ClassVar[bool] = False  # True: the op reads the batch's training epoch

    @property
    def args(self) -> tuple:
        return dataclasses.astuple(self)

    def out_size(self, size: int) -> int:
        """Side of the images after this op, given the side before it."""
        return size

    def caption(self) -> str:
        """A few characters for the preview row that adds this op."""
        raise NotImplementedError

    def phrase(self) -> str:
        """What the op does, in words, for ``Recipe.describe``."""
        raise NotImplementedError

    def host(self, batch) -> None:
        raise NotImplementedError

    def draw(self, rng, count, size: int, mode: str):
        """The op's random choice for a batch of ``count`` images of side ``size``, or None."""
        return None

    def device(self, batch, value) -> None:
        raise NotImplementedError


def register_op(name: str) -> Callable[[type[Op]], type[Op]]:
    def decorator(cls: type[Op]) -> type[Op]:
        if name in OPS:
            raise ValueError(f"an op is already registered under this name. Received: name={name!r}")
        cls.name = name
        OPS[name] = cls
        return cls

    return decorator


def make_op(name: str, *args) -> Op:
    """The op ``name`` with its arguments; an unknown name or bad argument fails loudly."""
    try:
        cls = OPS[name]
    except KeyError:
        raise ValueError(f"unknown augmentation op; choose one of {', '.join(OPS)}. Received: name={name!r}") from None
    return cls(*args)


def check_positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
