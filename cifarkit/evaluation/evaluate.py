"""``cifarkit evaluate``: metrics, ten-crop testing and confusion matrices from a saved model
alone; the inference functions that ``cifarkit predict`` (:mod:`.predict`) shares.

A model saved by ``cifarkit train`` takes uint8 images of one size and carries its preprocessing
and class names (:mod:`cifarkit.modelio.keras_file`); so does one exported by ``cifarkit export-model``
(:mod:`cifarkit.modelio.exported`), which both accept too. So evaluation feeds uint8 batches
exactly as the validation during training did, and prediction brings any image to the model's
input size the way the data reader brings mixed-size folder images to one size, then does the
same. A ``.keras`` file whose last layer gives logits
(:func:`~cifarkit.modelio.keras_file.outputs_probabilities`) gets the softmax applied here, so
files of either kind give the same probabilities.

On Keras's TensorFlow backend the batches come from tf.data and inference runs in a
``tf.function``; on the JAX and PyTorch backends the batches come from :mod:`cifarkit.readers.feed`
(in-memory sources: CIFAR archives, MNIST IDX files) and inference runs in Keras's own compiled
predict step, so neither needs TensorFlow installed.

The trainer's final report is an evaluation, so this module sits below :mod:`cifarkit.training`
and imports nothing of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..modelio.exported import ExportedModel
from ..modelio.keras_file import input_size, model_parts, outputs_probabilities
from ..runtime.lazy import tf
from ..writers.atomic import write_text
from ..writers.manifest import csv_text

TOP_K = 5
EVAL_BATCH = 256
# The input pixels one call into the network may see: 256 CIFAR images, 32 of AlexNet's 227x227
# crops, 3 images' ten crops; its activations then stay near a training batch's. AlexNet's
# ten-crop pass had taken 5.8 GB beside training's 2.8 GB for 64 images (640 views at once).
EVAL_PIXELS = 32 * 227 * 227
TEN_VIEWS = 10  # four corners, the centre and their mirrors


def beside_model(model_path: Path, suffix: str) -> Path:
    """``<model>-<suffix>`` next to a model file, or next to an exported SavedModel's model folder
    (``m/3`` -> ``m-v3-<suffix>``: nothing is written inside a folder TensorFlow Serving reads)."""
    if model_path.is_dir():
        return model_path.parent.with_name(f"{model_path.parent.name}-v{model_path.name}-{suffix}")
    return model_path.with_name(f"{model_path.stem}-{suffix}")


def class_names_of(model) -> list[str]:
    """The class names a saved or exported model carries."""
    return list(model.class_names) if isinstance(model, ExportedModel) else model_parts(model)[2]


def on_tensorflow() -> bool:
    """Whether Keras runs on TensorFlow (tf.data and tf.function at hand)."""
    from ..runtime.strategy import keras_backend

    return keras_backend() == "tensorflow"


def scorer(model):
    """(input size, uint8 batch -> float32 probabilities) of a Keras model or an exported one."""
    if isinstance(model, ExportedModel):
        return model.image_size, lambda images: model.probabilities(np.asarray(images))
    softmax = not outputs_probabilities(model)  # a file saved when models ended in logits
    if not on_tensorflow():

        def predict(images):
            outputs = np.asarray(model.predict_on_batch(np.asarray(images)), np.float32)
            return _softmax(outputs) if softmax else outputs

        return input_size(model), predict

    @tf.function(input_signature=[uint8_batches(model)])
    def infer(images):
        outputs = tf.cast(model(images, training=False), tf.float32)
        return tf.nn.softmax(outputs) if softmax else outputs

    return input_size(model), lambda images: infer(images).numpy()


def uint8_batches(model):
    """The one input signature of a model's inference function: uint8 batches of any length.
    Traced once: neither a split's last, shorter batch nor the report's second and third
    evaluation (new functions of the same code, which TensorFlow counts together) retrace it."""
    return tf.TensorSpec([None, *model.input_shape[1:]], tf.uint8)


def images_per_call(batch_size: int, side: int, views: int = 1) -> int:
    """The batch an evaluation feeds at once: ``batch_size`` images of ``views`` views each,
    fewer where the pixels of their ``side`` x ``side`` views pass :data:`EVAL_PIXELS`."""
    return max(1, min(batch_size, EVAL_PIXELS // (views * side * side)))


def network_side(model) -> int:
    """The side of the images the network itself sees (AlexNet's 227x227 crops of 32x32
    images); an exported model's network is known by its input only."""
    return model.image_size if isinstance(model, ExportedModel) else int(model_parts(model)[1].input_shape[1])


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def ten_crop_scorer(model):
    """uint8 batch -> float32 probabilities averaged over the paper's ten crops."""
    augmentation, network, _ = model_parts(model)
    if not on_tensorflow():
        from .ten_crop import TenCropModel

        averaged = TenCropModel(augmentation, network)
        return lambda images: np.asarray(averaged.predict_on_batch(np.asarray(images)), np.float32)
    from ..augment.recipes import ten_crop_transform

    views_of = ten_crop_transform(augmentation.recipe, augmentation.stats)
    crop = augmentation.recipe.crop

    @tf.function(input_signature=[uint8_batches(model)])
    def ten_crop_infer(images):
        views = views_of(images)
        batch = tf.shape(views)[0]
        logits = network(tf.reshape(views, [-1, crop, crop, 3]), training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
        return tf.reduce_mean(tf.reshape(probabilities, [batch, 10, -1]), axis=1)

    return lambda images: ten_crop_infer(images).numpy()


def eval_batches(source, split: str, *, batch_size: int, image_size: int | None):
    """(uint8 images, labels) batches of a split in dataset order, every image once: tf.data on
    TensorFlow, :class:`cifarkit.readers.feed.Feed` elsewhere."""
    if on_tensorflow():
        from ..readers.pipeline import eval_batches as tf_eval_batches

        return tf_eval_batches(source, split, None, batch_size=batch_size, image_size=image_size)
    from ..readers.feed import Feed, source_arrays
    from ..runtime.strategy import keras_backend

    images, labels = source_arrays(source, split, keras_backend())
    if not len(labels):
        return iter(())
    return Feed(images, labels, batch_size=batch_size, shuffle=False, drop_remainder=False).epochs(1)


@dataclass
class Evaluation:
    split: str
    class_names: list[str]
    labels: np.ndarray  # (N,) int
    probabilities: np.ndarray  # (N, C) float32
    ten_crop: bool = False
    tta: tuple = ()  # test-time views averaged (cifarkit.evaluation.tta), () for the model's own view
    centre: np.ndarray | None = None  # with tta: the (N, C) probabilities of the unchanged view alone

    @property
    def count(self) -> int:
        return len(self.labels)

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels)) if self.count else float("nan")

    def centre_view(self) -> Evaluation:
        """The same images scored on their unchanged view alone: a test-time evaluation scores it
        among its views, and hands it back here instead of a second pass."""
        if not self.tta:
            return self
        if self.centre is None:
            raise ValueError("this evaluation kept no centre-view probabilities")
        return replace(self, probabilities=self.centre, tta=(), centre=None)

    @property
    def top_k(self) -> int:
        return min(TOP_K, self.probabilities.shape[1])

    @property
    def top_k_accuracy(self) -> float:
        if not self.count:
            return float("nan")
        # Ties broken as Keras' in_top_k does not matter for float probabilities in practice.
        best = np.argsort(-self.probabilities, axis=1, kind="stable")[:, : self.top_k]
        return float(np.mean((best == self.labels[:, None]).any(axis=1)))

    @property
    def confusion(self) -> np.ndarray:
        """(C, C): row = true class, column = predicted class."""
        n = len(self.class_names)
        matrix = np.zeros((n, n), np.int64)
        np.add.at(matrix, (self.labels, self.predictions), 1)
        return matrix

    def per_class(self) -> list[tuple[str, int, int, float]]:
        """(class name, correct, images, accuracy) per class."""
        matrix = self.confusion
        rows = []
        for i, name in enumerate(self.class_names):
            total = int(matrix[i].sum())
            correct = int(matrix[i, i])
            rows.append((name, correct, total, correct / total if total else float("nan")))
        return rows

    def summary(self) -> dict:
        return {
            "split": self.split,
            "images": self.count,
            "ten_crop": self.ten_crop,
            "tta": ",".join(self.tta),
            "accuracy": self.accuracy,
            "top_k": self.top_k,
            "top_k_accuracy": self.top_k_accuracy,
            "per_class_accuracy": {name: acc for name, _, _, acc in self.per_class()},
            **({"centre_view_accuracy": self.centre_view().accuracy} if self.tta else {}),
        }


def evaluate_model(
    model,
    source,
    split: str,
    *,
    image_size: int | None = None,
    ten_crop: bool = False,
    batch_size: int = EVAL_BATCH,
    tta: tuple = (),
) -> Evaluation:
    """Class probabilities for every image of ``split`` in dataset order, and the metrics on them.

    Default: the model as saved (the centre view). ``ten_crop``: the paper's test-time averaging
    of the softmax over the four corner crops, the centre crop and their mirrors. ``tta``: the
    views of :mod:`cifarkit.evaluation.tta` (``("flip", "translate")``), averaged likewise.
    """
    if split not in source.counts:
        raise UsageError(f"{source.location}: no split {split!r}; it has {', '.join(source.counts)}")
    if isinstance(model, ExportedModel) and ten_crop:
        raise UsageError(f"--ten-crop needs the .keras model; {model.path} ({model.kind}) holds the centre view only")
    names = class_names_of(model)
    if len(names) != len(source.class_names):
        raise UsageError(f"the model knows {len(names)} classes but {source.location} has {len(source.class_names)}")
    size, infer = scorer(model)
    if source.image_shape is not None and tuple(source.image_shape[:2]) != (size, size):
        raise UsageError(
            f"the model takes {size}x{size} images but {source.location} holds "
            f"{source.image_shape[0]}x{source.image_shape[1]}"
        )
    if source.image_shape is None:
        image_size = size
    batch_size = images_per_call(batch_size, network_side(model), TEN_VIEWS if ten_crop else 1)
    batches = eval_batches(source, split, batch_size=batch_size, image_size=image_size)
    if ten_crop:
        infer = ten_crop_scorer(model)
    centre = [] if tta else None
    if tta:
        from .tta import tta_scorer

        infer = tta_scorer(infer, tuple(tta), centre)

    probabilities, labels = [], []
    for images, batch_labels in batches:
        probabilities.append(infer(images))
        labels.append(np.asarray(batch_labels))
    if not labels:
        probabilities, labels = [np.zeros((0, len(names)), np.float32)], [np.zeros((0,), np.int64)]
    return Evaluation(
        split,
        list(source.class_names),
        np.concatenate(labels).astype(np.int64),
        np.concatenate(probabilities),
        ten_crop,
        tuple(tta),
        np.concatenate(centre or [np.zeros((0, len(names)), np.float32)]) if tta else None,
    )


def write_evaluation(result: Evaluation, out: Path) -> dict[str, Path]:
    """metrics.json, per_class.csv, confusion.csv and confusion.png in ``out``."""
    from .plots import confusion_image, save_png

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in ("metrics.json", "per_class.csv", "confusion.csv", "confusion.png")}
    write_text(files["metrics.json"], json.dumps(result.summary(), indent=2) + "\n")
    per_class = [(name, correct, total, f"{accuracy:.6f}") for name, correct, total, accuracy in result.per_class()]
    write_text(files["per_class.csv"], csv_text(["class", "correct", "images", "accuracy"], per_class))
    confusion = [[name, *row.tolist()] for name, row in zip(result.class_names, result.confusion)]
    write_text(files["confusion.csv"], csv_text(["true \\ predicted", *result.class_names], confusion))
    save_png(confusion_image(result.confusion, result.class_names), files["confusion.png"])
    return files


def format_summary(result: Evaluation) -> str:
    width = max(12, *(len(n) for n in result.class_names))
    how = "ten-crop average" if result.ten_crop else "centre view"
    how = f"{how}, test-time views {'+'.join(result.tta)} averaged" if result.tta else how
    lines = [
        f"split:          {result.split} ({result.count:,} images, {how})",
        f"accuracy:       {result.accuracy:.4f}",
        *([f"without views:  {result.centre_view().accuracy:.4f}"] if result.tta else []),
        f"top-{result.top_k} accuracy: {result.top_k_accuracy:.4f}",
        "",
        f"{'class':<{width}} {'correct':>8} {'images':>8} {'accuracy':>9}",
    ]
    for name, correct, total, accuracy in result.per_class():
        lines.append(f"{name:<{width}} {correct:>8,} {total:>8,} {accuracy:>9.4f}")
    return "\n".join(lines)
