"""``cifarkit export-model``: a trained model as a TensorFlow SavedModel, a TFLite flatbuffer or an
ONNX file (:mod:`cifarkit.modelio.onnx_export`) that runs without cifarkit (or Keras).

All take raw uint8 RGB pixels: the recipe's preprocessing (centre crop, mean, std) is the saved
model's first layer, so it is in the exported graph, and both return ``probabilities`` (N, C)
and ``class_names`` (N, C strings, the same row for every image, so that TensorFlow Serving's
row format, which wants one batch size for every output, works too).

- **SavedModel**, laid out for TensorFlow Serving: ``OUT/<name>/<version>/saved_model.pb`` and
  ``variables/``, the version one more than the highest already there. Its ``serving_default``
  signature takes images of any size (``images``: uint8 [N, H, W, C], C the model's 3 or 1) and brings other sizes to
  the training size as ``cifarkit predict`` does (the central square, resized); a
  ``metadata()`` function returns the class names, the training size and, under ``resize``, how
  other sizes are treated (so that ``saved_model_cli`` shows that the signature resizes).
- **TFLite**: ``OUT/<name>[-float16|-int8].tflite``, one ``serving_default`` signature with the
  same inputs and outputs, images of the training size only (uint8 [N, S, S, C]; the interpreter
  resizes an input tensor to whatever it is given, so the graph itself refuses another size). ``float16``
  stores the weights as float16 (half the size); ``int8`` quantises weights and activations,
  calibrated on training images, keeping uint8 input and float32 probabilities.

Everything is written under a temporary name and renamed when complete, with a signed record of
what was written (:mod:`cifarkit.modelio.trust`), so that ``predict`` and ``evaluate`` run it
without ``--trust-model``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import OutputError, UsageError
from ..runtime.lazy import keras, tf
from ..runtime.tensorflow import filtered_stderr
from ..writers.atomic import partial_path, write_bytes
from .exported import CLASS_NAMES, IMAGES, PROBABILITIES, RESIZE, VERSION
from .trust import record_export

FORMATS = ("savedmodel", "tflite", "onnx")
QUANTIZATIONS = ("none", "float16", "int8")
CALIBRATION_IMAGES = 300  # TFLite's guide suggests a few hundred representative samples
# What the TFLite converter's C++ code prints to stderr when it quantises, whatever the log level:
# "fully_quantize: 0, inference_type: 6, input_inference_type: FLOAT32, ...".
CONVERTER_LINES = ("fully_quantize: ",)


@dataclass
class Exported:
    path: Path  # the version folder, or the .tflite file
    format: str
    quantize: str
    bytes: int
    unrecorded: str | None = None  # why export-model could not record it as its own (cifarkit.modelio.trust)


def check_choice(format: str, quantize: str) -> None:
    if format not in FORMATS:
        raise UsageError(f"format must be one of {', '.join(FORMATS)}. Received: format={format!r}")
    if quantize not in QUANTIZATIONS:
        raise UsageError(f"quantize must be one of {', '.join(QUANTIZATIONS)}. Received: quantize={quantize!r}")
    if format != "tflite" and quantize != "none":
        kept = "a SavedModel" if format == "savedmodel" else "an ONNX model"
        raise UsageError(f"--quantize {quantize} is for --format tflite; {kept} keeps the float32 weights")


def resize_note(size: int) -> str:
    """What the any-size signature does with other sizes, in words (the SavedModel's metadata)."""
    return (
        f"images of any size; other sizes than {size}x{size} are cropped to their central square and resized "
        f"to {size}x{size} (bilinear, antialiased where a side shrinks more than 2x), as cifarkit predict does"
    )


def refuse_other_sizes(images, size: int, channels: int):
    """``images`` as they are if each is size x size x channels; otherwise the graph stops with an
    error when run. The converters fold any comparison with the static shape away (the input's
    shape says size x size), and the TFLite interpreter resizes its input tensor to whatever it is
    given, so a wrong size would run silently (top-1 agreed on 9 of 40 images at 64x64). A
    gather of the batch, offset by how far each image's element count is from the expected one,
    goes out of bounds (the interpreter's "gather index out of bounds") unless that is zero."""
    count = tf.shape(images)[0]
    per_image = tf.size(images) // tf.maximum(count, 1)
    offset = tf.abs(per_image - size * size * channels)
    return tf.gather(images, tf.range(count) + offset)


def serving_function(model, *, any_size: bool, check_size: bool = True) -> Callable:
    """uint8 images -> {probabilities, class_names}, the saved model's own preprocessing inside;
    ``check_size``: a fixed-size graph refuses other sizes itself (:func:`refuse_other_sizes`)."""
    from ..readers.squaring import resize_shorter_centre
    from .keras_file import input_channels, input_size, model_parts, outputs_probabilities

    names = model_parts(model)[2]
    size, channels = input_size(model), input_channels(model)
    softmax = not outputs_probabilities(model)  # a model that ends in logits

    def to_size(images):
        shape = tf.shape(images)
        same = tf.logical_and(tf.equal(shape[1], size), tf.equal(shape[2], size))
        one = tf.TensorSpec([size, size, channels], tf.uint8)
        resized = tf.cond(
            same,
            lambda: images,
            lambda: tf.map_fn(lambda image: resize_shorter_centre(image, size), images, fn_output_signature=one),
        )
        return tf.ensure_shape(resized, [None, size, size, channels])

    def serve(images):
        if any_size:
            outputs = tf.cast(model(to_size(images), training=False), tf.float32)
            probabilities = tf.nn.softmax(outputs) if softmax else outputs
        else:  # TFLite, ONNX: the same view through plain ops that quantise well, then the network
            augmentation, network, _ = model_parts(model)
            images = refuse_other_sizes(images, size, channels) if check_size else images
            view = static_eval_view(augmentation.recipe, augmentation.stats)(images)
            probabilities = tf.nn.softmax(tf.cast(network(view, training=False), tf.float32))
        batch = tf.shape(probabilities)[0]
        # a constant made here, in the traced function, not captured from outside: the ONNX
        # converter turns a captured tensor into an input of the model
        return {PROBABILITIES: probabilities, CLASS_NAMES: tf.tile(tf.constant(names)[None], [batch, 1])}

    return serve


def static_eval_view(recipe, stats) -> Callable:
    """The recipe's evaluation view (uint8 -> float32 network input) in plain TensorFlow ops with
    static shapes: bilinear resize, pad, a centre slice, normalisation. The saved model's
    ``Augmentation`` layer samples its window with gathers whose indices it computes in float;
    int8 quantisation rounds those floats and shifts the pixels read (65.7% instead of 80.8% on a
    real run), while these ops quantise like any other. Training-only ops are left out."""
    mean = tf.constant(stats.mean, tf.float32)
    std = tf.constant(stats.std, tf.float32)

    def view(images):
        x = tf.cast(images, tf.float32) / 255.0
        size = int(images.shape[1])
        for op in recipe.steps:
            if op.name == "resize":
                x = tf.image.resize(x, [op.size, op.size], method="bilinear")
            elif op.name == "pad":
                x = tf.pad(x, [[0, 0], [op.pixels, op.pixels], [op.pixels, op.pixels], [0, 0]], mode=op.mode)
            elif op.name == "crop":
                corner = (size - op.size) // 2  # the evaluation window: the centre
                x = x[:, corner : corner + op.size, corner : corner + op.size, :]
            elif op.name == "normalize":
                x = (x - mean) / std if op.standardize else x - mean
            size = op.out_size(size)
        return x

    return view


def _write_savedmodel(model, folder: Path, *, any_size: bool) -> None:
    from .keras_file import input_channels, input_size, model_parts

    size = input_size(model)
    side = None if any_size else size
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The first endpoint becomes the "serving_default" signature TensorFlow Serving calls.
    archive.add_endpoint(
        "serve",
        serving_function(model, any_size=any_size),
        input_signature=[tf.TensorSpec([None, side, side, input_channels(model)], tf.uint8, name=IMAGES)],
    )
    names = model_parts(model)[2]
    note = resize_note(size) if any_size else f"images of {size}x{size} only"

    def metadata():
        return {CLASS_NAMES: tf.constant(names), "image_size": tf.constant(size), RESIZE: tf.constant(note)}

    archive.add_endpoint("metadata", metadata, input_signature=[])
    archive.write_out(str(folder), verbose=False)


def next_version(folder: Path) -> int:
    """One more than the highest numbered version TensorFlow Serving would find in ``folder``."""
    versions = (
        [int(p.name) for p in folder.iterdir() if VERSION.fullmatch(p.name) and p.is_dir()] if folder.is_dir() else []
    )
    return max(versions, default=0) + 1


def export_savedmodel(model, out: Path, name: str, version: int | None = None) -> Exported:
    """``out/name/version/`` (saved_model.pb, variables/), for tf.saved_model.load and TF Serving."""
    base = Path(out) / name
    version = next_version(base) if version is None else version
    final = base / str(version)
    if final.exists():
        raise OutputError(f"{final} exists already (written by another export at the same time?)")
    tmp = partial_path(final)  # not numbered: TensorFlow Serving never loads a half-written version
    try:
        base.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        _write_savedmodel(model, tmp, any_size=True)
        unrecorded = record_export(tmp, "savedmodel")  # inside, before the rename: never a model without its record
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{final}: cannot write the SavedModel ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Exported(final, "savedmodel", "none", _folder_bytes(final), unrecorded)


def tflite_bytes(model, quantize: str = "none", calibration: np.ndarray | None = None) -> bytes:
    """The flatbuffer: converted from a fixed-size SavedModel of the same serving function."""
    if quantize == "int8" and (calibration is None or not len(calibration)):
        raise UsageError("--quantize int8 needs training images to calibrate on (the run's data, or --data)")
    with tempfile.TemporaryDirectory(prefix="cifarkit-tflite-") as scratch:
        _write_savedmodel(model, Path(scratch), any_size=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch, signature_keys=["serving_default"])
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantize == "int8":
            # One image at a time, as the interpreter will see them; the converter records the
            # range of every activation over these to choose its int8 scales.
            converter.representative_dataset = lambda: ([image[None]] for image in calibration)
        with filtered_stderr(CONVERTER_LINES):
            return converter.convert()


def export_tflite(
    model, out: Path, name: str, quantize: str = "none", calibration: np.ndarray | None = None
) -> Exported:
    """``out/name[-float16|-int8].tflite``."""
    path = Path(out) / (name + ("" if quantize == "none" else f"-{quantize}") + ".tflite")
    data = tflite_bytes(model, quantize, calibration)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot create the folder ({exc.strerror or exc})") from None
    write_bytes(path, data)
    return Exported(path, "tflite", quantize, len(data), record_export(path, "tflite"))


def calibration_images(source, size: int, count: int = CALIBRATION_IMAGES, split: str = "train") -> np.ndarray:
    """``count`` uint8 training images spread evenly over the split (image trees are in class
    order, so a prefix would be one class)."""
    from ..readers.reader import to_numpy

    if split not in source.counts:
        split = next(iter(source.counts))
    stride = max(1, source.counts[split] // max(count, 1))
    images, _ = to_numpy(source.dataset(split, image_size=size).shard(stride, 0), limit=count)
    if images.shape[1:3] != (size, size):
        raise UsageError(
            f"the model takes {size}x{size} images but {source.location} holds {images.shape[1]}x{images.shape[2]}"
        )
    return images


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
