"""Unpickling untrusted dataset files: numeric numpy arrays and plain containers, nothing else.

``pickle.load`` will call any function a file names, so a dataset file from the internet could
run ``os.system``. Naming only harmless functions is not enough either: numpy's own
reconstructors trust their arguments (a dtype rebuilt with an object field lets a file choose a
pointer that numpy then follows; ``numpy.ndarray((2_000_000, 3072))`` hands out uninitialised
memory). So a pickle here never reaches anything real. Each global a CIFAR batch names resolves
to a small stand-in that checks its arguments: ``dtype`` takes plain numeric types only,
``_reconstruct``/``_frombuffer`` build arrays only over bytes that came from the file, ``scalar``
gives a plain number, and ``_codecs.encode``/``bytearray``/``bytes`` only copy what the file holds.
Real numpy arrays appear once loading has finished. Every other global is refused before it is
called. This covers the Python 2 spelling the dataset's home page serves (protocol 2,
``numpy.core.multiarray._reconstruct``, byte-string keys) and what Python 3 and numpy 2 write
(protocols 2 to 5, ``numpy._core``, ``_frombuffer`` for protocol 5).

The unpickler is pickle's pure-Python one: its memo is a dict (the C unpickler sizes an array by
the largest memo index a file names, so a 9-byte pickle could take gigabytes), and its opcodes
can be counted, which bounds what a file can allocate by the file's size. It costs about 15 ms
a real batch.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np

from ..constants import IMAGE_BYTES, PICKLE_OPS_BASE, PICKLE_OPS_PER_IMAGE
from ..errors import SourceError, UnsafeInputError

# dtype names numpy writes for plain numbers; no objects, strings, records or subarrays.
_PLAIN_TYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8"})
_MAX_DIMS = 32


class _Refused(Exception):
    """Something a CIFAR batch never needs, refused before it runs: becomes UnsafeInputError."""


class _Budget:
    """What one file may still spend: opcodes executed, and bytes copied by the stand-ins."""

    __slots__ = ("ops", "copies")

    def __init__(self, size: int):
        self.ops = PICKLE_OPS_BASE + PICKLE_OPS_PER_IMAGE * (size // IMAGE_BYTES)
        self.copies = 2 * size + 4096  # bytearray(_codecs.encode(...)) copies its bytes twice

    def copy(self, n: int) -> None:
        # Stand-ins that copy (bytearray, _codecs.encode) could copy one memoised buffer many times.
        self.copies -= n
        if self.copies < 0:
            raise _Refused("to copy more bytes than the file holds")


class PickledDType:
    """A dtype a pickle asked for: a plain numeric type; BUILD may set its byte order, nothing else."""

    __slots__ = ("dtype", "built")

    def __init__(self, dtype: np.dtype):
        self.dtype, self.built = dtype, False

    def __setstate__(self, state: Any) -> None:
        # numpy writes (3, order, None, None, None, -1, -1, 0); version 4 appends metadata (None).
        # Fields, subarrays, sizes and flags are how a file makes a dtype that holds pointers.
        ok = (
            not self.built
            and type(state) is tuple
            and len(state) in (8, 9)
            and _is_int(state[0], 3, 4)
            and all(x is None for x in state[2:5])
            and _is_int(state[5], -1)
            and _is_int(state[6], -1)
            and _is_int(state[7], 0)
            and (len(state) == 8 or state[8] is None)
        )
        order = _text(state[1]) if ok else None
        if order not in ("<", ">", "|", "="):
            raise _Refused(f"a numpy dtype state other than a plain {self.dtype} one")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)
        self.built = True


class PickledArray:
    """An array a pickle is building; filled once (BUILD or _frombuffer) from the file's bytes."""

    __slots__ = ("array",)

    def __init__(self, array: np.ndarray | None = None):
        self.array = array

    def __setstate__(self, state: Any) -> None:
        # ndarray.__reduce__'s state: (1, shape, dtype, is_fortran, raw); numpy also takes it
        # without the version.
        if self.array is not None or type(state) is not tuple or len(state) not in (4, 5):
            raise pickle.UnpicklingError("an array state that numpy never writes")
        if len(state) == 5:
            if not _is_int(state[0], 1):
                raise pickle.UnpicklingError("an array state of an unknown version")
            state = state[1:]
        shape, dtype, fortran, raw = state
        if not _is_int(fortran, 0, 1):
            raise pickle.UnpicklingError("an array state whose order is not a flag")
        self.array = _array_from(raw, dtype, shape, "F" if fortran else "C")


class _Global:
    """What ``find_class`` returns: calling it runs a checked stand-in; BUILD on it is refused."""

    __slots__ = ("name", "func", "budget")

    def __init__(self, name: str, func: Callable, budget: _Budget):
        self.name, self.func, self.budget = name, func, budget

    def __call__(self, *args: Any) -> Any:
        return self.func(self.budget, *args)

    def __setstate__(self, state: Any) -> None:
        raise _Refused(f"to set attributes on '{self.name}'")


def _is_int(value: Any, *allowed: int) -> bool:
    return type(value) in (int, bool) and value in allowed


def _text(value: Any) -> str | None:
    """A short name a pickle gives as str (Python 3) or bytes (Python 2), or None."""
    if isinstance(value, bytes) and len(value) <= 16:
        return value.decode("latin1")
    return value if isinstance(value, str) and len(value) <= 16 else None


def _dims(shape: Any) -> tuple[int, ...]:
    if type(shape) is not tuple or len(shape) > _MAX_DIMS or not all(type(d) is int and d >= 0 for d in shape):
        raise pickle.UnpicklingError("an array shape that is not a tuple of sizes")
    return shape


def _array_from(buf: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """A view of bytes the file holds, as an array; never memory the file did not provide."""
    if not isinstance(dtype, PickledDType):
        raise _Refused(f"an array whose dtype is a {type(dtype).__name__}")
    dims = _dims(shape)
    if isinstance(buf, memoryview):  # a protocol-5 buffer marked read-only
        if buf.ndim != 1 or buf.format != "B":
            raise _Refused("an array over a buffer that is not plain bytes")
    elif not isinstance(buf, (bytes, bytearray)):
        raise _Refused(f"an array whose data is a {type(buf).__name__}, not bytes from the file")
    need = math.prod(dims) * dtype.dtype.itemsize
    if len(buf) != need:
        raise pickle.UnpicklingError(f"an array of shape {dims} needs {need} bytes, the file gives {len(buf)}")
    flat = np.frombuffer(buf, dtype.dtype) if need else np.empty(0, dtype.dtype)
    return flat.reshape(dims, order=order)


def _make_dtype(budget: _Budget, name: Any, align: Any = False, copy: Any = True) -> PickledDType:
    text = _text(name)
    if text not in _PLAIN_TYPES or not _is_int(align, 0, 1) or not _is_int(copy, 0, 1):
        shown = repr(text) if text is not None else f"a {type(name).__name__}"
        raise _Refused(f"numpy.dtype({shown}): only plain numeric dtypes are allowed")
    return PickledDType(np.dtype(text))


def _reconstruct(budget: _Budget, subtype: Any, shape: Any, typecode: Any) -> PickledArray:
    # ndarray.__reduce__ writes _reconstruct(ndarray, (0,), b'b'); BUILD then gives the data.
    is_ndarray = isinstance(subtype, _Global) and subtype.name == "numpy.ndarray"
    if not is_ndarray or shape != (0,) or type(shape[0]) is not int or _text(typecode) != "b":
        raise _Refused("a numpy _reconstruct call other than the one ndarray pickles write")
    return PickledArray()


def _frombuffer(budget: _Budget, buf: Any, dtype: Any, shape: Any, order: Any, axis_order: Any = None) -> PickledArray:
    # ndarray.__reduce_ex__(5): the buffer travels in-band as bytes or bytearray.
    order = _text(order)
    if order == "K":  # numpy 2: C-order data of a transposed array, with the axes to restore
        axes = list(axis_order) if type(axis_order) in (list, tuple) else None
        if axes is None or sorted(a for a in axes if type(a) is int) != list(range(len(_dims(shape)))):
            raise pickle.UnpicklingError("_frombuffer with order 'K' and no valid axis order")
        return PickledArray(_array_from(buf, dtype, shape, "C").transpose(axes))
    if order not in ("C", "F") or axis_order is not None:
        raise pickle.UnpicklingError("_frombuffer with an order numpy never writes")
    return PickledArray(_array_from(buf, dtype, shape, order))


def _scalar(budget: _Budget, dtype: Any, data: Any = None) -> int | float | bool:
    # A numpy integer in a label list: scalar(dtype('i8'), 8 raw bytes). Given as a Python number.
    if not isinstance(dtype, PickledDType):
        raise _Refused(f"a numpy scalar whose dtype is a {type(dtype).__name__}")
    if not isinstance(data, bytes) or len(data) != dtype.dtype.itemsize:
        raise pickle.UnpicklingError("a numpy scalar whose bytes do not fit its dtype")
    return np.frombuffer(data, dtype.dtype)[0].item()


def _latin1_encode(budget: _Budget, text: Any, encoding: Any = "latin1", errors: Any = "strict") -> bytes:
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1"); any other
    # codec (zlib, bz2, ...) has no business in a CIFAR batch.
    name = encoding.lower().replace("-", "").replace("_", "") if isinstance(encoding, str) else None
    if name != "latin1" or errors != "strict" or not isinstance(text, str):
        raise _Refused(f"_codecs.encode with encoding {short_text(repr(encoding))}")
    budget.copy(len(text))
    return text.encode("latin1")


def _bytearray(budget: _Budget, *args: Any) -> bytearray:
    # Pickles write bytearray(), bytearray(b"...") or bytearray("...", "latin-1"); bytearray(n)
    # would allocate n bytes the file never held.
    if len(args) == 2:
        args = (_latin1_encode(budget, *args),)
    if args and not isinstance(args[0], (bytes, bytearray)) or len(args) > 1:
        raise _Refused("bytearray() of anything but bytes from the file")
    budget.copy(len(args[0]) if args else 0)
    return bytearray(*args)


def _empty_bytes(budget: _Budget, *args: Any) -> bytes:
    # Python 3 writes b"" at protocol 2 as bytes(); bytes(n) would allocate n bytes.
    if args:
        raise _Refused("bytes() with arguments")
    return b""


def _ndarray(budget: _Budget, *args: Any) -> None:
    raise _Refused("numpy.ndarray(...) called directly: arrays must come from bytes in the file")


_STANDINS: dict[tuple[str, str], Callable] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # ndarray.__reduce__, protocols 0-4
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,  # a numpy integer inside a label list
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,  # ndarray.__reduce_ex__(5)
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _ndarray,  # only ever an argument of _reconstruct
    ("numpy", "dtype"): _make_dtype,
    ("_codecs", "encode"): _latin1_encode,
    # Protocols 0-2 name builtins with the Python 2 module (__builtin__), 3-4 with builtins.
    ("builtins", "bytearray"): _bytearray,
    ("__builtin__", "bytearray"): _bytearray,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
}
ALLOWED_GLOBALS = frozenset(_STANDINS)


def _counted(op: Callable) -> Callable:
    def run(self: RestrictedUnpickler) -> None:
        self.budget.ops -= 1
        if self.budget.ops < 0:
            raise _Refused("to run more pickle opcodes than a CIFAR file of this size needs")
        op(self)

    return run


class _Opcodes(dict):
    def __missing__(self, code: int) -> Callable:
        raise pickle.UnpicklingError(f"unknown opcode 0x{code:02x}")


class _Bounded:
    """A file read no further than ``size`` bytes, and never asked for more than is left: a buffered
    file allocates the length a read asks for before reading, and a pickle declares lengths."""

    def __init__(self, raw: BinaryIO, size: int):
        self.raw, self.left = raw, size

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(self.left if n is None or n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self.raw.readline(self.left)
        self.left -= len(line)
        return line

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")[: self.left]
        count = self.raw.readinto(view)
        self.left -= count
        return count


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Pickle's pure-Python unpickler with stand-ins for :data:`ALLOWED_GLOBALS`, every opcode counted."""

    dispatch = _Opcodes({code: _counted(op) for code, op in pickle._Unpickler.dispatch.items()})  # type: ignore[attr-defined]

    def __init__(self, data: bytes | BinaryIO, size: int | None = None):
        # encoding="bytes" keeps Python 2 byte strings as bytes (keys are normalised later).
        self.size = len(data) if size is None else size
        stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else _Bounded(data, self.size)
        super().__init__(stream, encoding="bytes")
        self.budget = _Budget(self.size)
        self.globals: dict[tuple[str, str], _Global] = {}

    def find_class(self, module: str, name: str) -> _Global:
        key = (module, name)
        if key not in _STANDINS:
            raise _Refused(f"to unpickle global '{module}.{name}'")
        if key not in self.globals:
            self.globals[key] = _Global(f"{module}.{name}", _STANDINS[key], self.budget)
        return self.globals[key]

    def _load_bytearray8(self) -> None:
        # The stock loader allocates the declared size before reading a byte of it.
        (size,) = struct.unpack("<Q", self.read(8))
        if size > self.size:
            raise pickle.UnpicklingError(f"a bytearray of {size} bytes in a file of {self.size}")
        data = self.read(size)
        if len(data) != size:
            raise pickle.UnpicklingError("the file ends inside a bytearray")
        self.append(bytearray(data))

    dispatch[pickle.BYTEARRAY8[0]] = _counted(_load_bytearray8)


def _real(value: Any) -> Any:
    if isinstance(value, PickledArray):
        if value.array is None:
            raise pickle.UnpicklingError("an array that was never given its data")
        return value.array
    return value.dtype if isinstance(value, PickledDType) else value


def _finish(obj: Any) -> Any:
    """Real numpy objects for the stand-ins at the top, in a dict's values or in a list."""
    if isinstance(obj, dict):
        return {key: _real(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_real(value) for value in obj]
    return _real(obj)


def safe_loads(data: bytes | BinaryIO, filename: str, size: int | None = None) -> Any:
    """Unpickle ``data`` (bytes, or a binary file of ``size`` bytes) allowing nothing but numeric
    numpy arrays and plain containers.

    Arrays come back as numpy arrays at the top, as a dict's values and as a list's items; any
    failure is a :class:`SourceError` (an :class:`UnsafeInputError` for what was refused)."""
    try:
        return _finish(RestrictedUnpickler(data, size).load())
    except _Refused as exc:
        raise UnsafeInputError(
            f"{filename}: refused {short_text(str(exc))}; a CIFAR batch holds only numpy arrays, "
            "lists and strings, so this file was not loaded"
        ) from None
    except Exception as exc:  # noqa: BLE001 - anything a hostile file provokes is "not valid"
        raise SourceError(f"{filename}: not a valid CIFAR pickle ({_describe(exc)})") from None


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - str() of an exception carrying hostile values
        text = ""
    if " " not in text.strip():  # KeyError: 255 (an unknown opcode), IndexError: ... say which
        text = f"{type(exc).__name__} {text}".strip()
    return short_text(text)


def short_text(text: str) -> str:
    """``text`` on one line, cut to fit a message."""
    text = " ".join(text.split())
    return text if len(text) < 120 else text[:117] + "..."
