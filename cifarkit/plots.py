"""Training curves and confusion matrices as PNG files, drawn with numpy alone.

A plotting library would be a large dependency for two small charts, so the charts are drawn
into an RGB array: axes, "nice" ticks, lines and a legend, with text from a 5x7 bitmap font
(upper case, digits and a little punctuation), and written with cifarkit's own PNG encoder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from .writers.atomic import write_bytes
from .writers.png import encode_png

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

GLYPH_W, GLYPH_H = 5, 7
# One column of space between glyphs, two rows between lines.
ADVANCE = GLYPH_W + 1
LINE_HEIGHT = GLYPH_H + 2

PANEL_W, PANEL_H = 480, 320  # one chart of curves.png
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 58, 16, 30, 34
TARGET_TICKS = 6  # about this many tick labels per axis
HEATMAP_SIDE = 520  # pixels the cells of a confusion matrix span at most
MAX_CELL, MIN_CELL = 48, 3
LABEL_CHARS = 14  # class names are cut to this many characters

_FONT_ROWS = {
    "A": ".###. #...# #...# ##### #...# #...# #...#", "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.", "D": "####. #...# #...# #...# #...# #...# ####.",
    "E": "##### #.... #.... ####. #.... #.... #####", "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .###.", "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.", "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#", "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#", "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.", "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#", "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.", "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.", "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.", "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..", "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.", "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####", "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.", "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.", "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.", "9": ".###. #...# #...# .#### ....# ...#. .##..",
    ".": "..... ..... ..... ..... ..... .##.. .##..", "-": "..... ..... ..... ##### ..... ..... .....",
    "%": "##... ##..# ...#. ..#.. .#... #..## ...##", "/": "..... ....# ...#. ..#.. .#... #.... .....",
    "(": "...#. ..#.. .#... .#... .#... ..#.. ...#.", ")": ".#... ..#.. ...#. ...#. ...#. ..#.. .#...",
    ":": "..... .##.. .##.. ..... .##.. .##.. .....", "_": "..... ..... ..... ..... ..... ..... #####",
    "=": "..... ..... ##### ..... ##### ..... .....", "+": "..... ..#.. ..#.. ##### ..#.. ..#.. .....",
    " ": "..... ..... ..... ..... ..... ..... .....", "?": ".###. #...# ....# ...#. ..#.. ..... ..#..",
}  # fmt: skip
FONT = {ch: np.array([[c == "#" for c in row] for row in rows.split()], bool) for ch, rows in _FONT_ROWS.items()}


def text_width(text: str, scale: int = 1) -> int:
    return max(0, len(text) * ADVANCE - 1) * scale


def draw_text(image: np.ndarray, x: int, y: int, text: str, colour=BLACK, scale: int = 1) -> None:
    """Write ``text`` (upper-cased; unknown characters become '?') with its top-left at (x, y)."""
    for i, ch in enumerate(text.upper()):
        glyph = FONT.get(ch, FONT["?"])
        if scale > 1:
            glyph = glyph.repeat(scale, axis=0).repeat(scale, axis=1)
        gx = x + i * ADVANCE * scale
        _blit(image, gx, y, glyph, colour)


def _blit(image: np.ndarray, x: int, y: int, mask: np.ndarray, colour) -> None:
    """Paint ``mask`` at (x, y), clipped to the image."""
    h, w = mask.shape
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + w, image.shape[1]), min(y + h, image.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    sub = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    image[y0:y1, x0:x1][sub] = colour


def canvas(width: int, height: int) -> np.ndarray:
    return np.full((height, width, 3), WHITE, np.uint8)


def draw_line(image: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour, width: int = 2) -> None:
    """A straight segment, sampled at every pixel step along its longer axis, ``width`` pixels thick."""
    steps = int(max(abs(x1 - x0), abs(y1 - y0))) + 1
    xs = np.rint(np.linspace(x0, x1, steps)).astype(int)
    ys = np.rint(np.linspace(y0, y1, steps)).astype(int)
    for dx in range(width):
        for dy in range(width):
            px, py = xs + dx - width // 2, ys + dy - width // 2
            keep = (px >= 0) & (px < image.shape[1]) & (py >= 0) & (py < image.shape[0])
            image[py[keep], px[keep]] = colour


def fill_rect(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, colour) -> None:
    image[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = colour


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


def line_chart(series: dict[str, tuple[Sequence[float], Sequence[float], tuple]], title: str,
               width: int = PANEL_W, height: int = PANEL_H, x_label: str = "epoch") -> np.ndarray:
    """One chart: ``series`` maps a legend name to (x values, y values, colour)."""
    image = canvas(width, height)
    points = [(x, y) for xs, ys, _ in series.values() for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
    draw_text(image, MARGIN_L, 8, title, BLACK, scale=2)
    if not points:
        draw_text(image, MARGIN_L, height // 2, "no data yet", AXIS)
        return image
    x_all, y_all = [p[0] for p in points], [p[1] for p in points]
    x_ticks = nice_ticks(min(x_all), max(max(x_all), min(x_all) + 1))
    x_ticks = [t for t in x_ticks if float(t).is_integer()] or x_ticks  # epochs are whole numbers
    y_ticks = nice_ticks(min(y_all), max(y_all))
    x_lo, x_hi = min(x_ticks[0], min(x_all)), max(x_ticks[-1], max(x_all))
    y_lo, y_hi = y_ticks[0], y_ticks[-1]
    left, right, top, bottom = MARGIN_L, width - MARGIN_R, MARGIN_T, height - MARGIN_B

    def px(x):
        return left + (x - x_lo) / ((x_hi - x_lo) or 1) * (right - left)

    def py(y):
        return bottom - (y - y_lo) / ((y_hi - y_lo) or 1) * (bottom - top)

    y_step = y_ticks[1] - y_ticks[0] if len(y_ticks) > 1 else 1.0
    for t in y_ticks:
        row = int(round(py(t)))
        fill_rect(image, left, row, right + 1, row + 1, GRID)
        label = _tick_label(t, y_step)
        draw_text(image, left - 6 - text_width(label), row - GLYPH_H // 2, label, AXIS)
    x_step = x_ticks[1] - x_ticks[0] if len(x_ticks) > 1 else 1.0
    for t in x_ticks:
        col = int(round(px(t)))
        fill_rect(image, col, top, col + 1, bottom, GRID)
        fill_rect(image, col, bottom, col + 1, bottom + 4, AXIS)
        label = _tick_label(t, x_step)
        draw_text(image, col - text_width(label) // 2, bottom + 7, label, AXIS)
    fill_rect(image, left, top, left + 1, bottom + 1, AXIS)
    fill_rect(image, left, bottom, right + 1, bottom + 1, AXIS)
    draw_text(image, (left + right - text_width(x_label)) // 2, height - GLYPH_H - 4, x_label, AXIS)

    legend_x = right
    for name, (xs, ys, colour) in reversed(list(series.items())):
        legend_x -= text_width(name) + 16
        fill_rect(image, legend_x, 12, legend_x + 8, 20, colour)
        draw_text(image, legend_x + 11, 13, name, BLACK)
    for name, (xs, ys, colour) in series.items():
        pts = [(px(x), py(y)) for x, y in zip(xs, ys) if y is not None and math.isfinite(y)]
        for (ax, ay), (bx, by) in zip(pts, pts[1:]):
            draw_line(image, ax, ay, bx, by, colour)
        for ax, ay in pts:  # markers, so that a run of one or two epochs still shows its points
            fill_rect(image, int(ax) - 2, int(ay) - 2, int(ax) + 3, int(ay) + 3, colour)
    return image


def curves_image(history: Sequence[dict]) -> np.ndarray:
    """Loss and accuracy per epoch, training and validation, side by side."""
    epochs = [row["epoch"] for row in history]

    def column(key):
        return [_number(row.get(key)) for row in history]

    loss = line_chart({"train": (epochs, column("loss"), TRAIN_COLOUR),
                       "val": (epochs, column("val_loss"), VAL_COLOUR)}, "loss")  # fmt: skip
    accuracy = line_chart({"train": (epochs, column("accuracy"), TRAIN_COLOUR),
                           "val": (epochs, column("val_accuracy"), VAL_COLOUR)}, "accuracy")  # fmt: skip
    return np.concatenate([loss, canvas(8, PANEL_H), accuracy], axis=1)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def confusion_image(matrix: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """Rows are true classes, columns predictions; a cell's shade is its share of the row, and the
    count is written in it where the cell is large enough."""
    matrix = np.asarray(matrix, np.int64)
    n = len(class_names)
    cell = int(np.clip(HEATMAP_SIDE // max(n, 1), MIN_CELL, MAX_CELL))
    names = [f"{i} {name[:LABEL_CHARS]}" for i, name in enumerate(class_names)]
    show_names = cell >= LINE_HEIGHT
    label_w = max(text_width(s) for s in names) + 8 if show_names else 8
    numbered = cell >= text_width(str(n - 1)) + 2  # column numbers fit above the cells
    top = 48 if numbered else 34
    left = max(label_w, text_width("true") + 8) + 4
    width, height = left + n * cell + 16, top + n * cell + 16
    image = canvas(max(width, text_width("confusion (row = true class)", 2) + 16), height)
    draw_text(image, 8, 6, "confusion (row = true class)", BLACK, scale=1)
    draw_text(image, left, 22, "predicted", AXIS)
    totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    colours = (HEAT_LOW + (HEAT_HIGH - HEAT_LOW) * shares[..., None]).round().astype(np.uint8)
    grid = colours.repeat(cell, axis=0).repeat(cell, axis=1)
    image[top : top + n * cell, left : left + n * cell] = grid
    if cell >= 6:  # hairlines between cells
        for k in range(n + 1):
            fill_rect(image, left + k * cell, top, left + k * cell + 1, top + n * cell, GRID)
            fill_rect(image, left, top + k * cell, left + n * cell + 1, top + k * cell + 1, GRID)
    for i in range(n):
        if show_names:
            draw_text(image, left - 6 - text_width(names[i]), top + i * cell + (cell - GLYPH_H) // 2, names[i], AXIS)
        if numbered:
            label = str(i)
            draw_text(image, left + i * cell + (cell - text_width(label)) // 2, top - LINE_HEIGHT - 1, label, AXIS)
        for j in range(n):
            count = str(int(matrix[i, j]))
            if matrix[i, j] and cell >= text_width(count) + 4 and cell >= GLYPH_H + 4:
                ink = WHITE if shares[i, j] > 0.5 else BLACK
                draw_text(image, left + j * cell + (cell - text_width(count)) // 2 + 1,
                          top + i * cell + (cell - GLYPH_H) // 2 + 1, count, ink)  # fmt: skip
    return image


def save_png(image: np.ndarray, path: Path) -> None:
    write_bytes(Path(path), encode_png(np.ascontiguousarray(image, np.uint8)))
