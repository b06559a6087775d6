"""A ``.tflite`` file run in a child process (:mod:`cifarkit.modelio.tflite_worker`), so that a damaged file
that crashes the TFLite interpreter ends in one line here, not in a segmentation fault.

One child per model, started when the model is opened and kept for every batch, so a command
pays for one start (TensorFlow's import, which the parent's own import of TensorFlow overlaps
with), not one per image. The child runs under an address-space limit; what it prints goes to
a temporary file, so the interpreter's start-up lines never reach the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

import numpy as np

from ..errors import SourceError
from .tflite_worker import FRAME

WORKER = Path(__file__).with_name("tflite_worker.py")
# The child runs the worker file as a program: the current folder stays off its import path.
BOOT = (
    "import sys, runpy\nif sys.path and sys.path[0] in ('', '.'): del sys.path[0]\n"
    "sys.argv = sys.argv[1:]\nrunpy.run_path(sys.argv[0], run_name='__main__')"
)
MEMORY_FLOOR = 4 << 30  # address space: TensorFlow's import maps about 1.5 GB of it before any model
MEMORY_PER_MODEL_BYTE = 8  # weights, their prepacked copies, activations: a few times the file
MAX_ANSWER_HEADER = 16 << 20  # class names: a million names of 16 bytes


def memory_limit(path: Path) -> int:
    """The child's address-space limit for the model file at ``path``."""
    return MEMORY_FLOOR + MEMORY_PER_MODEL_BYTE * Path(path).stat().st_size


# How long the child may take to answer: a damaged file can send the interpreter into a loop that
# never ends. Generous beside what a real model needs (milliseconds an image on a CPU).
ANSWER_SECONDS = 120.0
ANSWER_SECONDS_PER_IMAGE = 2.0


class InterpreterProcess:
    """The TFLite interpreter of one file, in a child process: :meth:`describe`, :meth:`run`."""

    def __init__(self, path: Path, threads: int):
        self.path = Path(path)
        self._log = tempfile.TemporaryFile()
        command = [sys.executable, "-c", BOOT, str(WORKER), str(self.path), str(threads), str(memory_limit(self.path))]
        try:
            self._child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        except OSError as exc:
            self._log.close()
            raise SourceError(
                f"{self.path}: cannot start the TFLite interpreter's process ({exc.strerror or exc})"
            ) from None
        self._stop = weakref.finalize(self, _stop, self._child, self._log)

    def describe(self) -> dict:
        """What the child found: image_size, channels, class_names, classes; or error (and why)."""
        header, _ = self._receive(ANSWER_SECONDS)
        return header

    def run(self, images: np.ndarray) -> np.ndarray:
        """(N, S, S, C) uint8 -> (N, classes) float32."""
        images = np.ascontiguousarray(images, np.uint8)
        request = json.dumps({"shape": list(images.shape)}).encode()
        try:
            self._child.stdin.write(FRAME.pack(len(request), images.nbytes) + request)
            self._child.stdin.write(memoryview(images).cast("B"))
            self._child.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._ended() from None
        header, payload = self._receive(ANSWER_SECONDS + ANSWER_SECONDS_PER_IMAGE * len(images))
        if "error" in header:
            raise SourceError(
                f"{self.path}: the TFLite interpreter failed on {len(images)} images ({header.get('why')})"
            )
        shape = header.get("shape")
        if (
            not (isinstance(shape, list) and len(shape) == 2 and shape[0] == len(images))
            or len(payload) != 4 * shape[0] * shape[1]
        ):
            raise SourceError(f"{self.path}: the TFLite model gave {shape} probabilities for {len(images)} images")
        return np.frombuffer(payload, "<f4").reshape(shape).astype(np.float32)

    def close(self) -> None:
        self._stop()

    def _receive(self, seconds: float) -> tuple[dict, bytes]:
        """The child's next answer; the child is stopped if it gives none within ``seconds``."""
        import threading

        self._timed_out = False
        watchdog = threading.Timer(seconds, self._give_up)
        watchdog.daemon = True
        watchdog.start()
        try:
            return self._answer()
        finally:
            watchdog.cancel()

    def _give_up(self) -> None:
        self._timed_out = True
        self._child.kill()

    def _answer(self) -> tuple[dict, bytes]:
        head = self._read(FRAME.size)
        header_size, payload_size = FRAME.unpack(head)
        if header_size > MAX_ANSWER_HEADER or payload_size > MAX_ANSWER_HEADER * 64:
            raise SourceError(f"{self.path}: the TFLite interpreter's process answered {payload_size:,} bytes")
        try:
            header = json.loads(self._read(header_size))
        except ValueError:
            header = None
        if not isinstance(header, dict):
            raise SourceError(f"{self.path}: the TFLite interpreter's process answered something unreadable")
        return header, self._read(payload_size)

    def _read(self, size: int) -> bytes:
        data = self._child.stdout.read(size) if size else b""
        if len(data) < size:
            raise self._ended()
        return data

    def _ended(self) -> SourceError:
        """The child is gone mid-conversation: its signal or its exit status, in one line."""
        code = self._child.wait()
        if getattr(self, "_timed_out", False):
            return SourceError(
                f"{self.path}: the TFLite interpreter gave no answer in time and was stopped; the file is damaged "
                "(or the model far slower than any cifarkit exports)"
            )
        if code < 0:
            return SourceError(
                f"{self.path}: the TFLite interpreter crashed reading it (signal {-code}: "
                f"{_signal_name(-code)}); the file is damaged"
            )
        return SourceError(
            f"{self.path}: the TFLite interpreter's process ended (exit status {code}){self._last_words()}"
        )

    def _last_words(self) -> str:
        """The last line the child wrote, for an exit that is not a crash (an import that failed)."""
        try:
            self._log.seek(0, os.SEEK_END)
            self._log.seek(max(0, self._log.tell() - 2000))
            lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return f": {lines[-1][:300]}" if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown"


def _stop(child: subprocess.Popen, log) -> None:
    """Close the channel (the child then exits), and make sure it has."""
    try:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        child.kill()
        child.wait()
    finally:
        if child.stdout:
            child.stdout.close()
        log.close()
