"""The child process that runs a ``.tflite`` file for :mod:`cifarkit.modelio.tflite_process`.

The TFLite interpreter reads a flatbuffer without checking it: a damaged file makes it read or
write outside its buffers, and the process dies of a signal. So it runs here, in a process of its
own under an address-space limit, and the parent turns a death into one line.

This file is run as a program (``runpy``) and imports nothing of cifarkit: nothing on the
parent's side can be reached from a crash here. The channel is stdin (requests) and a copy of
the original stdout (answers); fd 1 is pointed at stderr first, so nothing the libraries print
ever lands in the channel. Each message is a 12-byte frame head (header length: u32, payload
length: u64, little-endian), a JSON header, then the payload bytes.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import warnings

FRAME = struct.Struct("<IQ")
MAX_HEADER = 1 << 20  # a request header is a few dozen bytes
SIGNATURE, IMAGES, PROBABILITIES, CLASS_NAMES = "serving_default", "images", "probabilities", "class_names"


def send(channel, header: dict, payload: bytes = b"") -> None:
    text = json.dumps(header).encode()
    channel.write(FRAME.pack(len(text), len(payload)) + text + payload)
    channel.flush()


def receive(stream) -> tuple[dict, bytes] | None:
    head = stream.read(FRAME.size)
    if len(head) < FRAME.size:
        return None  # the parent closed the channel: done
    header_size, payload_size = FRAME.unpack(head)
    if header_size > MAX_HEADER:
        raise ValueError(f"a request header of {header_size} bytes")
    header = json.loads(stream.read(header_size))
    return header, stream.read(payload_size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


# The packages on the way to TensorFlow's interpreter module, whose __init__ files import the
# whole of TensorFlow (3 to 4 s and 400 MB) though the interpreter uses none of it: the module is
# written to run without them too (it is also LiteRT's and tflite_runtime's).
TF_PACKAGES = ("tensorflow", "tensorflow.lite", "tensorflow.lite.python", "tensorflow.python", "tensorflow.python.util")


def _interpreter_class():
    """LiteRT's interpreter where installed (TensorFlow's is deprecated), else TensorFlow's own
    module with its packages as bare namespaces, else TensorFlow's, imported whole."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter
    except ImportError:
        pass
    import importlib.util
    import types

    spec = importlib.util.find_spec("tensorflow")
    if spec is not None and spec.origin:
        root = os.path.dirname(spec.origin)
        for name in TF_PACKAGES:
            package = types.ModuleType(name)
            package.__path__ = [os.path.join(root, *name.split(".")[1:])]
            sys.modules[name] = package
        try:
            from tensorflow.lite.python.interpreter import Interpreter

            return Interpreter
        except Exception:  # another layout of TensorFlow: import it the usual way
            for name in [n for n in sys.modules if n == "tensorflow" or n.startswith("tensorflow.")]:
                del sys.modules[name]
    import tensorflow as tf

    return tf.lite.Interpreter


def _interpreter(path: str, threads: int):
    interpreter = _interpreter_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TensorFlow's deprecation notice, on every construction
        return interpreter(model_path=path, num_threads=threads)


def open_model(path: str, threads: int):
    """(signature runner, description header) of the file; an error header when it is not one."""
    import numpy as np

    try:
        runner = _interpreter(path, threads).get_signature_runner(SIGNATURE)
    except Exception as exc:  # a damaged flatbuffer raises ValueError or RuntimeError
        return None, {"error": "load", "why": _first_line(exc)}
    shape = runner.get_input_details().get(IMAGES, {}).get("shape_signature")
    outputs = runner.get_output_details()
    if (
        shape is None
        or len(shape) != 4
        or shape[1] < 1
        or shape[3] not in (1, 3)
        or PROBABILITIES not in outputs
        or CLASS_NAMES not in outputs
    ):
        return None, {"error": "foreign"}
    try:
        first = runner(**{IMAGES: np.zeros((1, int(shape[1]), int(shape[2]), int(shape[3])), np.uint8)})
        names = [bytes(name).decode("utf-8", "replace") for name in np.asarray(first[CLASS_NAMES]).reshape(-1)]
        classes = int(np.asarray(first[PROBABILITIES]).shape[-1])
    except Exception as exc:
        return None, {"error": "load", "why": _first_line(exc)}
    return runner, {
        "image_size": int(shape[1]),
        "channels": int(shape[3]),
        "class_names": names[:classes],
        "classes": classes,
    }


def serve(runner, requests, channel) -> None:
    """uint8 image batches in, float32 probabilities out, until the parent closes the channel."""
    import numpy as np

    while (request := receive(requests)) is not None:
        header, payload = request
        try:
            images = np.frombuffer(payload, np.uint8).reshape(header["shape"])
            probabilities = np.ascontiguousarray(runner(**{IMAGES: images})[PROBABILITIES], "<f4")
        except Exception as exc:
            send(channel, {"error": "run", "why": _first_line(exc)})
            continue
        send(channel, {"shape": list(probabilities.shape)}, probabilities.tobytes())


def main(argv: list[str]) -> int:
    path, threads, limit = argv[1], int(argv[2]), int(argv[3])
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    if limit:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        except (ImportError, ValueError, OSError):  # no such limit here (Windows; macOS refuses it): the
            pass  # process still keeps a crash away from the parent
    runner, description = open_model(path, threads)
    send(channel, description)
    if runner is None:
        return 1
    serve(runner, sys.stdin.buffer, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
