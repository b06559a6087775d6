"""``cifarkit augment-preview``: a PNG grid of what the network will see.

Each row is one source image (with its class name) followed by augmented views of it. With
``stages=True`` every image gets one row per op of the recipe (resize, crop, flip, colour: the
prefixes of its op list, :func:`cifarkit.augment.recipes.preview_stages`), all drawn with the same
seeds, so each row differs from the one above by exactly one op. Where training takes a recipe's
random-resized crop as each file is decoded (inception on a photo tree or TFRecord export,
:func:`cifarkit.readers.pipeline.decode_crop`), the views are those very crops, the rest of the
recipe run on them.
Views are shown with the normalisation undone (it only shifts and scales values; an op after it,
such as cutout, shows the colour the network sees) and clipped to [0, 1].
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..readers.stats import Stats
from ..runtime.lazy import tf
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


def preview_recipe(source, name: str | None, crop: int | None) -> Recipe:
    """The recipe ``name`` (default: paper, or mnist for grey images); one that mixes colours
    (the paper's PCA lighting) is refused for grey images in one line."""
    from .recipes import check_channels, get_recipe

    grey = source.image_shape is not None and source.image_shape[-1] == 1
    recipe = get_recipe(name or ("mnist" if grey else "paper"), crop)
    check_channels(recipe, source.image_shape and source.image_shape[-1], source.location)
    return recipe


def preview_split(counts: Mapping[str, int], asked: str | None) -> str:
    """The split to take images from: the one asked for, else train, else the first the data
    has (a test-only dataset, such as a folder of MNIST's t10k files)."""
    if asked is not None:
        return asked
    return "train" if "train" in counts or not counts else next(iter(counts))


def preview_stats(source, split: str, image_size: int | None) -> tuple[Stats, str | None]:
    """(the statistics the views are drawn with, a note where they are not the training
    split's): the training split's, as training would use them; for data without one, those
    cifarkit ships for its dataset, or else computed from the split shown."""
    from ..readers.stats import bundled_stats, stats_for

    if "train" in source.counts:
        return stats_for(source, "train", image_size=image_size), None
    bundled = bundled_stats(source.name)
    if bundled is not None:
        return bundled, f"statistics: cifarkit's own for {source.name}'s training split (the data has none)"
    stats = stats_for(source, split, image_size=image_size)
    return stats, f"statistics: computed from the {stats.images:,} {split} images (the data has no train split)"


def decoded_views(source, split: str, picked: np.ndarray, recipe: Recipe, seed: int, views: int):
    """(the recipe left to run, [uint8 crops of the ``picked`` images, one array a view]) where the
    reader takes the recipe's random-resized crop as it decodes each file, as training does (each
    pass over the files draws new boxes); None where the recipe's own op crops."""
    from ..readers.pipeline import decode_crop
    from ..readers.reader import to_numpy

    if not source.can_crop_at_decode:
        return None
    first = source.select({split: f"{split}[:{int(picked.max()) + 1}]"})  # only the files up to the last picked
    crop, rest = decode_crop(recipe, first, seed)
    if crop is None:
        return None
    ds = first.dataset(split, crop=crop)
    return rest, [to_numpy(ds)[0][picked] for _ in range(views)]


def render_rows(
    images: np.ndarray, recipe: Recipe, stats: Stats, *, views: int, seed: int, stages: bool, decoded=None
) -> list[tuple[str, int, list[np.ndarray]]]:
    """(caption, index of the source image, [view images as uint8]) per row; ``decoded``: the
    crops taken at decode and the recipe left to run on them (:func:`decoded_views`)."""
    steps = preview_stages(recipe, stats)
    if decoded is not None:
        recipe, cropped = decoded
        shown = steps[0][0]  # the crop's own caption, now the decoded crops themselves
        steps = [(shown, lambda pixels, _seed: tf.cast(pixels, tf.float32) / 255.0), *preview_stages(recipe, stats)]
    if not stages:
        steps = [("augmented", steps[-1][1])]
    rows: list[tuple[str, int, list[np.ndarray]]] = []
    rendered = {}
    for name, fn in steps:
        per_view = []
        for view in range(views):
            pixels = images if decoded is None else cropped[view]
            out = fn(tf.constant(pixels), tf.constant([seed, view], tf.int64))
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
            # Nearest neighbour keeps CIFAR's 32x32 pixels visible as pixels instead of a blur;
            # a grey image (H, W, 1), such as MNIST's, is drawn from its one channel.
            tile = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
            tile = tile.resize((cell, cell), Image.NEAREST)
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
    decoded=None,
) -> tuple[int, int]:
    """Render and write the grid atomically; returns its (width, height) in pixels."""
    rows = render_rows(images, recipe, stats, views=views, seed=seed, stages=stages, decoded=decoded)
    canvas = draw_grid(rows, images, captions, cell=cell)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    write_bytes(Path(out), buffer.getvalue())
    return canvas.size
