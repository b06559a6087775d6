"""``cifarkit augment-preview``: a PNG grid of what the network will see.

Each row is one source image (with its class name) followed by augmented views of it. With
``stages=True`` every image gets one row per op of the recipe (resize, crop, flip, colour: the
prefixes of its op list, :func:`cifarkit.augment.recipes.preview_stages`), all drawn with the same
seeds, so each row differs from the one above by exactly one op.
Views are shown before mean subtraction (which only shifts values) and clipped to [0, 1].
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..readers.stats import Stats
from ..writers.atomic import write_bytes
from .recipes import Recipe, preview_stages

if TYPE_CHECKING:
    from PIL import Image

LABEL_HEIGHT = 14  # pixels of caption strip above each cell
GAP = 4  # pixels between cells
BACKGROUND = (255, 255, 255)


def pick_images(images: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` images taken round-robin over classes, so the grid shows variety."""
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    picked: list[int] = []
    depth = 0
    while len(picked) < min(count, len(labels)):
        for members in by_class:
            if depth < len(members) and len(picked) < count:
                picked.append(int(members[depth]))
        depth += 1
    return np.array(picked, dtype=np.int64)


def render_rows(
    images: np.ndarray, recipe: Recipe, stats: Stats, *, views: int, seed: int, stages: bool
) -> list[tuple[str, int, list[np.ndarray]]]:
    """(caption, index of the source image, [view images as uint8]) per row."""
    import tensorflow as tf

    steps = preview_stages(recipe, stats)
    if not stages:
        steps = [("augmented", steps[-1][1])]
    rows: list[tuple[str, int, list[np.ndarray]]] = []
    rendered = {}
    for name, fn in steps:
        per_view = []
        for view in range(views):
            out = fn(tf.constant(images), tf.constant([seed, view], tf.int64))
            per_view.append(np.round(out.numpy() * 255).astype(np.uint8))
        rendered[name] = per_view
    for i in range(len(images)):
        for name, _ in steps:
            rows.append((name, i, [v[i] for v in rendered[name]]))
    return rows


def draw_grid(rows, images: np.ndarray, captions: list[str], *, cell: int) -> Image:
    from PIL import Image, ImageDraw

    columns = 1 + max(len(r[2]) for r in rows)
    width = columns * (cell + GAP) + GAP
    height = len(rows) * (cell + LABEL_HEIGHT + GAP) + GAP
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for r, (stage, index, views) in enumerate(rows):
        top = GAP + r * (cell + LABEL_HEIGHT + GAP)
        cells = [(captions[index], images[index])] + [(stage if c == 0 else "", v) for c, v in enumerate(views)]
        for c, (caption, pixels) in enumerate(cells):
            left = GAP + c * (cell + GAP)
            # Nearest neighbour keeps CIFAR's 32x32 pixels visible as pixels instead of a blur.
            tile = Image.fromarray(pixels).resize((cell, cell), Image.NEAREST)
            canvas.paste(tile, (left, top + LABEL_HEIGHT))
            if caption:
                draw.text((left + 1, top), caption[: cell // 6], fill=(0, 0, 0))
    return canvas


def write_preview(
    out: Path,
    images: np.ndarray,
    captions: list[str],
    recipe: Recipe,
    stats: Stats,
    *,
    views: int = 6,
    seed: int = 0,
    stages: bool = False,
    cell: int = 96,
) -> tuple[int, int]:
    """Render and write the grid atomically; returns its (width, height) in pixels."""
    rows = render_rows(images, recipe, stats, views=views, seed=seed, stages=stages)
    canvas = draw_grid(rows, images, captions, cell=cell)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    write_bytes(Path(out), buffer.getvalue())
    return canvas.size
