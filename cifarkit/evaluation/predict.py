"""``cifarkit predict``: class probabilities for image files of any size and format.

Each image is brought to the model's input size the way the data reader brings mixed-size folder
images to one size (its central square, resized), then scored by the same inference function as
evaluation (:func:`cifarkit.evaluation.evaluate.scorer`), so a test image gets the probabilities
``evaluate`` gave it. A file that cannot be read is refused by name (:class:`UnreadableImage`), or
left out and reported through ``on_bad`` where the caller asks to go on without it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..modelio.exported import ExportedModel
from ..modelio.keras_file import model_parts
from ..runtime.lazy import tf
from ..writers.manifest import csv_text
from .evaluate import beside_model, on_tensorflow, scorer

PREDICT_BATCH = 64

# A JPEG of more pixels than this is decoded at 1/2, 1/4 or 1/8 scale (libjpeg scales as it
# decodes), to between a quarter of this and this: sides of 1,000 pixels and more, for a model that
# takes 32 or 227. A 50-megapixel photo then takes 12 MB instead of 200.
PREDICT_PIXELS = 2048 * 2048


class UnreadableImage(SourceError):
    """An image file that cannot be decoded (or is larger than cifarkit reads); ``reason`` is the
    message without the path it starts with."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def default_predictions_csv(run: Path, model_path: Path) -> Path:
    """Where ``predict`` writes its CSV unless told: inside the run folder it was given, like
    ``evaluate``'s files, or beside a model file or exported model given directly."""
    run = Path(run).expanduser()
    if run.is_dir() and model_path.parent == run and model_path.suffix == ".keras":
        return run / "predictions.csv"
    return beside_model(model_path, "predictions.csv")


def find_images(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders searched recursively for image files, in sorted order."""
    from ..sources.folder import IMAGE_EXTENSIONS
    from ..sources.source_path import check_source_path

    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS))
        else:
            check_source_path(path)  # a device or pipe: refused by name, not read
            found.append(path)
    if not found:
        raise SourceError(f"no image files in {', '.join(map(str, paths))}")
    return found


def prepare_image(image: np.ndarray, size: int) -> np.ndarray:
    """An (H, W, 3) uint8 image at the model's ``size`` x ``size``: its central square, resized,
    as the reader squares mixed-size folder images (untouched when it is that size already)."""
    if image.shape[:2] == (size, size):
        return image
    height, width = image.shape[:2]
    side = min(height, width)  # the square is cut here, a view: only it is handed to the resize
    top, left = (height - side) // 2, (width - side) // 2
    image = image[top : top + side, left : left + side]
    if not on_tensorflow():
        from ..readers.squaring import resize_shorter_centre_ops

        return resize_shorter_centre_ops(image, size)
    from ..readers.squaring import resize_shorter_centre

    return resize_shorter_centre(tf.constant(image), size).numpy()


@dataclass
class Prediction:
    path: Path
    size: tuple[int, int]  # the file's (height, width)
    probabilities: np.ndarray  # (C,)

    def top(self, k: int, names: Sequence[str]) -> list[tuple[str, float]]:
        order = np.argsort(-self.probabilities, kind="stable")[:k]
        return [(names[i], float(self.probabilities[i])) for i in order]


def read_for_prediction(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """(the image at the model's ``size``, the file's (height, width)); :class:`UnreadableImage`
    for a file that does not decode."""
    from ..sources.image_file import read_image_scaled

    try:
        original, file_size = read_image_scaled(path, PREDICT_PIXELS // 4)
    except SourceError as exc:
        message, prefix = str(exc), f"{path}: "
        raise UnreadableImage(path, message.removeprefix(prefix)) from None
    return prepare_image(original, size), file_size


def predict_files(
    model, paths: Sequence[Path], on_bad: Callable[[UnreadableImage], None] | None = None
) -> list[Prediction]:
    """A prediction per image file, in order. A file that cannot be read raises
    :class:`UnreadableImage`, or, given ``on_bad``, is handed to it and left out (the list is
    then shorter than ``paths``, and empty when no file could be read)."""
    if not isinstance(model, ExportedModel):
        model_parts(model)  # a clear error for a model that is not ours
    size, infer = scorer(model)
    grey = _channels(model) == 1

    results: list[Prediction] = []
    for start in range(0, len(paths), PREDICT_BATCH):
        # One original at a time, brought to the model's size as soon as it is decoded: a chunk of
        # big photos is never held at once (read_image refuses headers over MAX_PIXELS).
        read, sizes, prepared = [], [], []
        for path in paths[start : start + PREDICT_BATCH]:
            try:
                image, file_size = read_for_prediction(path, size)
            except UnreadableImage as bad:
                if on_bad is None:
                    raise
                on_bad(bad)
                continue
            read.append(path)
            sizes.append(file_size)
            prepared.append(to_grey(image) if grey else image)
        if prepared:
            probabilities = infer(np.stack(prepared))
            results += [Prediction(p, hw, prob) for p, hw, prob in zip(read, sizes, probabilities)]
    return results


def _channels(model) -> int:
    """The channels a model takes: a Keras model says; an exported one takes RGB."""
    shape = getattr(model, "input_shape", None)
    return int(shape[-1]) if shape and shape[-1] else 3


def to_grey(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 1) as Pillow's "L" conversion computes it (ITU-R 601-2 luma,
    fixed point), so a grey file read as RGB comes back to exactly its own values."""
    weights = np.array([19595, 38470, 7471], np.uint32)
    luma = (image.astype(np.uint32) @ weights + 0x8000) >> 16
    return luma.astype(np.uint8)[..., None]


def predictions_csv(predictions: Sequence[Prediction], names: Sequence[str], k: int) -> str:
    header = ["file", "height", "width"]
    for rank in range(1, k + 1):
        header += [f"class_{rank}", f"probability_{rank}"]
    rows = []
    for p in predictions:
        row = [str(p.path), p.size[0], p.size[1]]
        for name, probability in p.top(k, names):
            row += [name, f"{probability:.6f}"]
        rows.append(row)
    return csv_text(header, rows)


def format_predictions(predictions: Sequence[Prediction], names: Sequence[str], k: int) -> str:
    width = max(4, *(len(str(p.path)) for p in predictions))
    lines = [f"{'file':<{width}}  top {k}"]
    for p in predictions:
        classes = "  ".join(f"{name} {prob:.3f}" for name, prob in p.top(k, names))
        lines.append(f"{str(p.path):<{width}}  {classes}")
    return "\n".join(lines)
