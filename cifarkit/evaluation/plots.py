"""Training curves and confusion matrices as PNG files, drawn with Pillow.

Two small charts do not justify a plotting library; Pillow (already needed for reading photos)
draws the lines, shapes and text. Text uses Pillow's bundled scalable font, so the pictures look
the same on every machine, with no system fonts needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..formats.codecs.png import encode_png
from ..writers.atomic import write_bytes

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GRID = (228, 228, 228)
AXIS = (90, 90, 90)
# Colours that stay apart for colour-blind readers (the first two of the Okabe-Ito palette).
TRAIN_COLOUR = (0, 114, 178)
VAL_COLOUR = (213, 94, 0)
# Heat map: white for 0, dark blue for a whole row in one cell.
HEAT_LOW = np.array((255, 255, 255), np.float64)
HEAT_HIGH = np.array((8, 48, 107), np.float64)

TEXT_SIZE = 11  # pixels; titles are drawn at twice this
PANEL_W, PANEL_H = 480, 320  # one chart of curves.png
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 16, 34, 36
TARGET_TICKS = 6  # about this many tick labels per axis
HEATMAP_SIDE = 520  # pixels the cells of a confusion matrix span at most
MAX_CELL, MIN_CELL = 48, 3
LABEL_CHARS = 14  # class names are cut to this many characters


def font(size: int = TEXT_SIZE) -> ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels (its fixed bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size)
    except (TypeError, ImportError, OSError):  # Pillow < 10.1, or no FreeType
        return ImageFont.load_default()


def text_width(text: str, size: int = TEXT_SIZE) -> int:
    left, _, right, _ = font(size).getbbox(text)
    return int(math.ceil(right - left))


def nice_ticks(low: float, high: float, target: int = TARGET_TICKS) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0) * 0.1
    raw = (high - low) / max(target - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    ticks = [round(first, 10)]
    while ticks[-1] < high - step * 1e-9:  # the last tick at or above the highest value
        ticks.append(round(first + len(ticks) * step, 10))
    return ticks


def _tick_label(value: float, step: float) -> str:
    if step >= 1 and float(value).is_integer():
        return str(int(value))
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 2
    return f"{value:.{min(decimals, 6)}f}"


class _Axes:
    """Data coordinates to pixels for one chart's plotting area."""

    def __init__(self, x_range, y_range, box):
        (self.x_lo, self.x_hi), (self.y_lo, self.y_hi) = x_range, y_range
        self.left, self.right, self.top, self.bottom = box

    def px(self, x: float) -> float:
        return self.left + (x - self.x_lo) / ((self.x_hi - self.x_lo) or 1) * (self.right - self.left)

    def py(self, y: float) -> float:
        return self.bottom - (y - self.y_lo) / ((self.y_hi - self.y_lo) or 1) * (self.bottom - self.top)


def _draw_ticks(draw: ImageDraw.ImageDraw, axes: _Axes, x_ticks, y_ticks) -> None:
    small = font()
    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for t in y_ticks:
        row = round(axes.py(t))
        draw.line([(axes.left, row), (axes.right, row)], fill=GRID)
        draw.text((axes.left - 6, row), _tick_label(t, y_step), fill=AXIS, font=small, anchor="rm")
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    for t in x_ticks:
        col = round(axes.px(t))
        draw.line([(col, axes.top), (col, axes.bottom)], fill=GRID)
        draw.line([(col, axes.bottom), (col, axes.bottom + 4)], fill=AXIS)
        draw.text((col, axes.bottom + 6), _tick_label(t, x_step), fill=AXIS, font=small, anchor="mt")
    draw.line([(axes.left, axes.top), (axes.left, axes.bottom), (axes.right, axes.bottom)], fill=AXIS)


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float], tuple]],
    title: str,
    width: int = PANEL_W,
    height: int = PANEL_H,
    x_label: str = "epoch",
) -> Image.Image:
    """One chart: ``series`` maps a legend name to (x values, y values, colour)."""
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    draw.text((MARGIN_L, 6), title, fill=BLACK, font=font(2 * TEXT_SIZE))
    points = [(x, y) for xs, ys, _ in series.values() for x, y in zip(xs, ys) if _number(y) is not None]
    if not points:
        draw.text((MARGIN_L, height // 2), "no data yet", fill=AXIS, font=font())
        return image
    x_all, y_all = [p[0] for p in points], [p[1] for p in points]
    x_ticks = nice_ticks(min(x_all), max(max(x_all), min(x_all) + 1))
    x_ticks = [t for t in x_ticks if float(t).is_integer()] or x_ticks  # epochs are whole numbers
    y_ticks = nice_ticks(min(y_all), max(y_all))
    axes = _Axes(
        (min(x_ticks[0], min(x_all)), max(x_ticks[-1], max(x_all))),
        (y_ticks[0], y_ticks[-1]),
        (MARGIN_L, width - MARGIN_R, MARGIN_T, height - MARGIN_B),
    )
    _draw_ticks(draw, axes, x_ticks, y_ticks)
    draw.text(((axes.left + axes.right) // 2, height - 4), x_label, fill=AXIS, font=font(), anchor="mb")
    legend_x = axes.right
    for name, (_, _, colour) in reversed(list(series.items())):
        legend_x -= text_width(name) + 18
        draw.rectangle([legend_x, 12, legend_x + 8, 20], fill=colour)
        draw.text((legend_x + 12, 16), name, fill=BLACK, font=font(), anchor="lm")
    for _, (xs, ys, colour) in series.items():
        pts = [(axes.px(x), axes.py(y)) for x, y in zip(xs, ys) if _number(y) is not None]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2, joint="curve")
        for ax, ay in pts:  # markers, so that a run of one or two epochs still shows its points
            draw.rectangle([ax - 2, ay - 2, ax + 2, ay + 2], fill=colour)
    return image


def curves_image(history: Sequence[dict], val_name: str = "val") -> np.ndarray:
    """Loss and accuracy per epoch, training and validation side by side; ``val_name`` is the
    legend of the validation curves (the split it ran on: "test", "holdout")."""
    epochs = [row["epoch"] for row in history]

    def column(key):
        return [_number(row.get(key)) for row in history]

    loss = line_chart(
        {"train": (epochs, column("loss"), TRAIN_COLOUR), val_name: (epochs, column("val_loss"), VAL_COLOUR)}, "loss"
    )
    accuracy = line_chart(
        {"train": (epochs, column("accuracy"), TRAIN_COLOUR), val_name: (epochs, column("val_accuracy"), VAL_COLOUR)},
        "accuracy",
    )
    both = Image.new("RGB", (2 * PANEL_W + 8, PANEL_H), WHITE)
    both.paste(loss, (0, 0))
    both.paste(accuracy, (PANEL_W + 8, 0))
    return np.asarray(both)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _row_shades(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's share of its row, and the colour that share is drawn in."""
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    return shares, (HEAT_LOW + (HEAT_HIGH - HEAT_LOW) * shares[..., None]).round().astype(np.uint8)


def confusion_image(matrix: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Rows are true classes, columns predictions; a cell's shade is its share of the row, and the
    count is written in it where the cell is large enough."""
    matrix = np.asarray(matrix, np.int64)
    n = len(class_names)
    cell = int(np.clip(HEATMAP_SIDE // max(n, 1), MIN_CELL, MAX_CELL))
    small_size = min(TEXT_SIZE, max(cell - 4, 6))
    small = font(small_size)
    names = [f"{i} {name[:LABEL_CHARS]}" for i, name in enumerate(class_names)]
    show_names = cell >= TEXT_SIZE
    label_w = max(text_width(s) for s in names) + 8 if show_names else 8
    numbered = cell >= text_width(str(n - 1)) + 2  # column numbers fit above the cells
    top, left = (50 if numbered else 36), label_w + 4
    title = "confusion (row = true class)"
    width = max(left + n * cell + 16, text_width(title) + 16)
    image = Image.new("RGB", (width, top + n * cell + 16), WHITE)
    shares, colours = _row_shades(matrix)
    image.paste(Image.fromarray(colours.repeat(cell, axis=0).repeat(cell, axis=1)), (left, top))
    draw = ImageDraw.Draw(image)
    draw.text((8, 6), title, fill=BLACK, font=font())
    draw.text((left, 22), "predicted", fill=AXIS, font=font())
    if cell >= 6:  # hairlines between cells
        for k in range(n + 1):
            draw.line([(left + k * cell, top), (left + k * cell, top + n * cell)], fill=GRID)
            draw.line([(left, top + k * cell), (left + n * cell, top + k * cell)], fill=GRID)
    for i in range(n):
        middle = top + i * cell + cell / 2
        if show_names:
            draw.text((left - 6, middle), names[i], fill=AXIS, font=font(), anchor="rm")
        if numbered:
            draw.text((left + i * cell + cell / 2, top - 3), str(i), fill=AXIS, font=small, anchor="mb")
        for j in range(n):
            count = str(int(matrix[i, j]))
            if matrix[i, j] and cell >= text_width(count, small_size) + 4:
                ink = WHITE if shares[i, j] > 0.5 else BLACK
                draw.text((left + j * cell + cell / 2, middle), count, fill=ink, font=small, anchor="mm")
    return np.asarray(image)


def save_png(image: np.ndarray, path: Path) -> None:
    write_bytes(Path(path), encode_png(np.ascontiguousarray(image, np.uint8)))
