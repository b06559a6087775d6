"""``cifarkit export-model --format onnx``: ``OUT/<name>.onnx`` for ONNX Runtime and other ONNX
runners, converted by Keras's own ``model.export(format="onnx")`` (tf2onnx underneath).

The graph is the TFLite export's: uint8 images of the training size (``images``, [N, S, S, C])
through the recipe's evaluation view in plain ops (:func:`cifarkit.modelio.export.static_eval_view`),
the network and the softmax, out as ``probabilities`` (float32 [N, classes]) and ``class_names``
(strings [N, classes]). It never resizes: the any-size path of the SavedModel squares and resizes
with ``ScaleAndTranslate``, which has no ONNX form (tf2onnx on a SavedModel "converts" it, and
ONNX Runtime then refuses the file). ONNX Runtime checks the declared input shape itself, so
another size is refused before anything runs. The class names and the training size are also
in the file's metadata (``custom_metadata_map`` in ONNX Runtime).

Before the file is written, ONNX Runtime runs it on a few probe images and its probabilities
must match the Keras model's: an op the converter left as TensorFlow's (ONNX has no such op) is
refused in one line naming it, as is a file ONNX Runtime cannot run.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ..errors import OutputError, UsageError
from ..runtime.lazy import keras, tf
from ..writers.atomic import write_bytes
from .export import Exported, serving_function
from .exported import CLASS_NAMES, IMAGES, PROBABILITIES

EXTRA = "pip install 'cifarkit[onnx]'"
MODULES = ("tf2onnx", "onnx", "onnxruntime")  # converter, file format, the runner the export is checked with
PROBES = 4  # images the converted file is checked on
TOLERANCE = 1e-4  # the largest difference in a probability allowed between ONNX Runtime and Keras
# What a call of a function left in the graph is: one TensorFlow compiles with XLA, which the
# converter does not inline; Keras's TensorFlow backend compiles grouped convolutions so.
FUNCTION_CALL = "a function compiled with XLA, as Keras compiles grouped convolutions (alexnet's groups=2)"
# Metadata keys in the file (ModelProto.metadata_props).
META_CLASS_NAMES, META_IMAGE_SIZE, META_PRODUCER = "class_names", "image_size", "cifarkit"


def require_modules() -> None:
    """One line naming the extra where the converter or ONNX Runtime is missing."""
    import importlib.util

    missing = [name for name in MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--format onnx needs {', '.join(missing)}: {EXTRA}")


@functools.cache
def _register_erfc() -> None:
    """tf2onnx has no conversion of TensorFlow's Erfc, which the exact GELU uses (``whitenet``):
    erfc(x) = 1 - erf(x), and ONNX has Erf. Registered once, for this process's conversions."""
    from tf2onnx import utils
    from tf2onnx.handler import tf_op

    @tf_op("Erfc")
    class Erfc:
        @classmethod
        def version_9(cls, ctx, node, **kwargs):
            node.type = "Erf"
            dtype = utils.map_onnx_to_numpy_type(ctx.get_dtype(node.output[0]))
            one = ctx.make_const(utils.make_name(f"{node.name}_one"), np.array(1, dtype))
            ctx.insert_new_node_on_output("Sub", node.output[0], inputs=[one.output[0], node.output[0]])


def serving_model(model):
    """A Keras model around the fixed-size serving function, for ``model.export``, which traces a
    model's ``call``."""

    class Serving(keras.Model):
        def __init__(self, inner):
            super().__init__(name=f"{inner.name}_serving")
            self.inner = inner  # tracked: its variables are the graph's weights
            # ONNX Runtime checks the declared input shape itself: no in-graph size check
            self.serve = serving_function(inner, any_size=False, check_size=False)

        def call(self, images):
            return self.serve(images)

    return Serving(model)


def onnx_bytes(model) -> bytes:
    """The ONNX file of ``model``'s fixed-size serving graph, checked with ONNX Runtime."""
    import onnx

    from .keras_file import input_channels, input_size, model_parts

    require_modules()
    _register_erfc()
    size, channels = input_size(model), input_channels(model)
    serving = serving_model(model)
    probes = probe_images(size, channels)
    expected = serving(probes)[PROBABILITIES].numpy()
    with tempfile.TemporaryDirectory(prefix="cifarkit-onnx-") as scratch:
        path = Path(scratch) / "model.onnx"
        _convert(serving, path, tf.TensorSpec([None, size, size, channels], tf.uint8, name=IMAGES))
        proto = onnx.load(str(path))
    refuse_foreign_ops(proto, model.name)
    names = model_parts(model)[2]
    _describe(proto, names, size)
    data = proto.SerializeToString()
    check_with_runtime(data, probes, expected, names, model.name)
    return data


def _convert(serving, path: Path, spec) -> None:
    """Keras's ONNX export, its converter's log and warnings kept off the terminal."""
    from ..runtime.tensorflow import filtered_stderr

    logger = logging.getLogger("tf2onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), filtered_stderr(("tf2onnx", "onnx")):
            warnings.simplefilter("ignore")  # Keras's patch of tf2onnx for numpy 2 warns about np.object
            serving.export(str(path), format="onnx", input_signature=[spec], verbose=False)
    except UsageError:
        raise
    except Exception as exc:  # tf2onnx raises many kinds for a graph it cannot convert
        raise UsageError(
            f"cannot export {serving.inner.name} as ONNX: the converter failed ({_first_line(exc)})"
        ) from None
    finally:
        logger.setLevel(level)


def probe_images(size: int, channels: int) -> np.ndarray:
    """A black image, a white one and noise: the probabilities of the file are compared on these."""
    noise = np.random.default_rng(0).integers(0, 256, (PROBES - 2, size, size, channels), dtype=np.uint8)
    plain = np.stack([np.zeros((size, size, channels), np.uint8), np.full((size, size, channels), 255, np.uint8)])
    return np.concatenate([plain, noise])


def foreign_ops(proto) -> dict[str, list[str]]:
    """Ops in the graph that no ONNX opset defines, with the layers they are in: TensorFlow's,
    left as they were by a converter that has no conversion for them (tf2onnx keeps them and
    only logs it)."""
    import onnx

    found: dict[str, list[str]] = {}
    for node in proto.graph.node:
        if not onnx.defs.has(node.op_type, node.domain or ""):
            layers = found.setdefault(node.op_type, [])
            layer = _layer_of(node.name)
            if layer and layer not in layers:
                layers.append(layer)
    return found


def _layer_of(node_name: str) -> str | None:
    """The network's layer a node was traced in: the third scope of ``serving/network/layer/...``,
    without TensorFlow's numbering of repeated scopes."""
    parts = node_name.split("/")
    return re.sub(r"_[0-9]+$", "", parts[2]) if len(parts) > 3 else None


def refuse_foreign_ops(proto, name: str) -> None:
    ops = foreign_ops(proto)
    if not ops:
        return
    described = []
    for op, layers in ops.items():
        where = f" (in {', '.join(layers[:4])}{', ...' if len(layers) > 4 else ''})" if layers else ""
        why = f": {FUNCTION_CALL}" if op in ("StatefulPartitionedCall", "PartitionedCall") else ""
        described.append(f"{op}{where}{why}")
    raise UsageError(
        f"cannot export {name} as ONNX: the converter has no ONNX form of TensorFlow's "
        f"{'; '.join(described)}; export it as savedmodel or tflite"
    )


def _describe(proto, names: list[str], size: int) -> None:
    """The class names and the training size in the file's metadata, for a runner's own code."""
    for key, value in ((META_CLASS_NAMES, json.dumps(names)), (META_IMAGE_SIZE, str(size)), (META_PRODUCER, "1")):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "cifarkit"


def check_with_runtime(data: bytes, probes: np.ndarray, expected: np.ndarray, names: list[str], name: str) -> None:
    """ONNX Runtime loads the file and gives the Keras model's probabilities and class names."""
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        got = dict(zip([o.name for o in session.get_outputs()], session.run(None, {IMAGES: probes})))
    except Exception as exc:  # onnxruntime raises its own kinds (InvalidGraph, NotImplemented, Fail)
        raise UsageError(
            f"cannot export {name} as ONNX: ONNX Runtime cannot run the converted model ({_first_line(exc)})"
        ) from None
    probabilities = got.get(PROBABILITIES)
    if probabilities is None or probabilities.shape != expected.shape:
        raise OutputError(f"cannot export {name} as ONNX: the converted model has no {PROBABILITIES} output")
    worst = float(np.max(np.abs(probabilities - expected)))
    if not worst <= TOLERANCE:
        raise OutputError(
            f"cannot export {name} as ONNX: ONNX Runtime's probabilities differ from the model's by {worst:.2g} "
            f"(more than {TOLERANCE:g})"
        )
    rows = got.get(CLASS_NAMES)
    row = [n.decode() if isinstance(n, bytes) else str(n) for n in np.asarray(rows)[0]] if rows is not None else None
    if row != names:
        raise OutputError(f"cannot export {name} as ONNX: the converted model's class names are not the model's")


def export_onnx(model, out: Path, name: str):
    """``out/name.onnx``."""
    path = Path(out) / f"{name}.onnx"
    data = onnx_bytes(model)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot create the folder ({exc.strerror or exc})") from None
    write_bytes(path, data)
    return Exported(path, "onnx", "none", len(data))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:300]}" if text else type(exc).__name__
