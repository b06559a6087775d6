"""Test-time augmentation: class probabilities averaged over a few views of each image.

The views are made from the uint8 images before the saved model sees them, so they work with any
saved model and any recipe (the model's own preprocessing then normalises each view):

- ``flip``: the image and its mirror, weight 1/2 each;
- ``translate``: the image, and the image shifted one pixel up-left and one down-right (reflect
  padding), weights 1/2, 1/4, 1/4;
- ``flip,translate``: both (six views: each of the three positions and its mirror), the
  weighting of airbench's "level 2" (Jordan 2024, section 3.7), which averages the untranslated
  pair with the mean of the two translated pairs.

Averaging is of the softmax outputs, the probabilities the saved model gives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import UsageError

VIEWS = ("flip", "translate")
TRANSLATE_PIXELS = 1


def parse_views(views: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """The test-time views asked for, in canonical order without repeats: ``"flip,translate"``
    (``--tta``, config.json) or ``("translate", "flip")`` -> ``("flip", "translate")``; ``""``,
    ``"none"``, ``()`` or None -> ``()``. The one parser: what it returns is passed on as it is."""
    if views is None:
        return ()
    parts = str(views).split(",") if isinstance(views, str) else [str(name) for name in views]
    names = [part.strip() for part in parts if part.strip() and part.strip() != "none"]
    unknown = [name for name in names if name not in VIEWS]
    if unknown:
        raise UsageError(f"--tta takes a comma-separated list of {', '.join(VIEWS)} (or none). Received: tta={views!r}")
    return tuple(name for name in VIEWS if name in names)  # canonical order, no repeats


def views_text(views: tuple[str, ...]) -> str:
    """``("flip", "translate")`` -> ``"flip,translate"``: the form of ``--tta`` and config.json."""
    return ",".join(views)


def shift(images: np.ndarray, dy: int, dx: int, pixels: int = TRANSLATE_PIXELS) -> np.ndarray:
    """The images moved by (dy, dx) in [-pixels, pixels], the edge filled by reflection."""
    padded = np.pad(images, [(0, 0), (pixels, pixels), (pixels, pixels), (0, 0)], mode="reflect")
    height, width = images.shape[1:3]
    top, left = pixels - dy, pixels - dx
    return padded[:, top : top + height, left : left + width]


def tta_views(images: np.ndarray, views: tuple[str, ...]) -> list[tuple[float, np.ndarray]]:
    """(weight, images) pairs, weights summing to 1, for uint8 images (N, H, W, C)."""
    images = np.asarray(images)
    positions = [(1.0, images)]
    if "translate" in views:
        # Shifting the content down-right by one pixel reads the padded image from its top-left corner.
        positions = [(0.5, images), (0.25, shift(images, 1, 1)), (0.25, shift(images, -1, -1))]
    if "flip" not in views:
        return positions
    return [pair for weight, view in positions for pair in ((weight / 2, view), (weight / 2, view[:, :, ::-1]))]


def tta_scorer(
    infer: Callable[[np.ndarray], np.ndarray], views: tuple[str, ...], centre: list | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    """``infer`` (uint8 batch -> probabilities) averaged over the views of each batch. ``centre``:
    a list each batch's unchanged view's probabilities are appended to, so that whoever wants the
    centre view's accuracy too need not score it a second time."""
    if not views:
        return infer

    def averaged(images) -> np.ndarray:
        images = np.ascontiguousarray(images)
        total = None
        for weight, view in tta_views(images, views):
            probabilities = np.asarray(infer(np.ascontiguousarray(view)))
            if centre is not None and view is images:
                centre.append(probabilities)
            scores = weight * probabilities.astype(np.float64)
            total = scores if total is None else total + scores
        return total.astype(np.float32)

    return averaged
