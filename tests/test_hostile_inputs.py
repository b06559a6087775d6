"""Crafted files that attack the readers: pointers, memory bombs, CRC, malformed labels and names.

The pickles are assembled opcode by opcode (no pickler is asked to write them), so each test holds
exactly the bytes an attacker would send. Anything that could crash the interpreter or take
gigabytes runs in a child process, where a segfault is a failed exit status and the memory it took
is the child's ru_maxrss.
"""

from __future__ import annotations

import gzip
import json
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

try:
    import synth
except ImportError:  # tests/ imported as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import synth

from cifarkit.errors import SourceError, UnsafeInputError
from cifarkit.sources import open_source
from cifarkit.sources.pickled import safe_loads

# ---------------------------------------------------------------------------
# A pickle assembler: Global, Call and Build nodes over plain Python literals
# ---------------------------------------------------------------------------


class Global:
    def __init__(self, module: str, name: str):
        self.module, self.name = module, name


class Call:
    def __init__(self, func, *args):
        self.func, self.args = func, args


class Build:
    def __init__(self, obj, state):
        self.obj, self.state = obj, state


class Raw:
    """Opcode bytes spliced in as they are."""

    def __init__(self, data: bytes):
        self.data = data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data  # LONG1


def emit(node) -> bytes:
    """The opcodes that push ``node`` (protocol 3)."""
    if isinstance(node, Raw):
        return node.data
    if node is None or isinstance(node, bool):
        return {None: b"N", True: b"\x88", False: b"\x89"}[node]
    if isinstance(node, int):
        return _int(node)
    if isinstance(node, float):
        return b"G" + struct.pack(">d", node)
    if isinstance(node, str):
        data = node.encode("utf-8")
        return b"X" + struct.pack("<I", len(data)) + data
    if isinstance(node, bytes):
        return b"B" + struct.pack("<I", len(node)) + node
    if isinstance(node, tuple):
        return b"(" + b"".join(emit(x) for x in node) + b"t"
    if isinstance(node, list):
        return b"](" + b"".join(emit(x) for x in node) + b"e"
    if isinstance(node, dict):
        return b"}(" + b"".join(emit(k) + emit(v) for k, v in node.items()) + b"u"
    if isinstance(node, Global):
        return f"c{node.module}\n{node.name}\n".encode()
    if isinstance(node, Call):
        return emit(node.func) + emit(tuple(node.args)) + b"R"
    if isinstance(node, Build):
        return emit(node.obj) + emit(node.state) + b"b"
    raise TypeError(node)


def assemble(node) -> bytes:
    return b"\x80\x03" + emit(node) + b"."


DTYPE = Global("numpy", "dtype")
NDARRAY = Global("numpy", "ndarray")
RECONSTRUCT = Global("numpy.core.multiarray", "_reconstruct")
SCALAR = Global("numpy.core.multiarray", "scalar")
FROMBUFFER = Global("numpy._core.numeric", "_frombuffer")
BYTEARRAY = Global("builtins", "bytearray")


def dtype(name: str, state=(3, "|", None, None, None, -1, -1, 0)):
    return Build(Call(DTYPE, name, False, True), state)


def array(data: bytes, shape: tuple, dt="u1", order="C"):
    """An array the way protocol 5 pickles one: _frombuffer(bytes, dtype, shape, order)."""
    return Call(FROMBUFFER, data, dtype(dt) if isinstance(dt, str) else dt, shape, order)


# A V8 dtype whose one field is a Python object at offset 0, with its flags cleared so numpy does
# not know it holds references: reading it follows whatever 8 bytes the file gives as a pointer.
OBJECT_DTYPE = dtype("O8", (3, "|", None, None, None, -1, -1, 63))
POINTER_DTYPE = dtype("V8", (3, "|", None, ("f",), {"f": (OBJECT_DTYPE, 0)}, 8, 1, 0))


def pixels(n: int) -> bytes:
    return bytes(range(256)) * (n * 3072 // 256)


def batch_pickle(labels, n: int = 2, **extra) -> bytes:
    return assemble({"data": array(pixels(n), (n, 3072)), "labels": labels, **extra})


def cifar10_tar(tmp_path: Path, replace: dict[str, bytes], name: str = "hostile.tar.gz") -> Path:
    folder = synth.make_cifar10_python(tmp_path / "members", archive=False).path
    members = {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
    members.update(replace)
    return synth.write_tar_gz(tmp_path / name, [(f"cifar-10-batches-py/{n}", d) for n, d in members.items()])


CHILD = """
import json, resource, sys
from pathlib import Path
from cifarkit.errors import CifarkitError
from cifarkit.sources import open_source
from cifarkit.sources.pickled import safe_loads
path = Path(sys.argv[1])
data = path.read_bytes() if path.suffix == ".pkl" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    if data is not None:
        safe_loads(data, path.name)
    else:
        open_source(path, verify=False)
    outcome = ["ok", ""]
except CifarkitError as exc:
    outcome = [type(exc).__name__, str(exc)]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "grew_mb": (after - before) / 1024}))
"""


def run_child(path: Path) -> dict:
    """Open ``path`` in a fresh interpreter: its exit status, outcome and memory growth."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"child died with status {proc.returncode}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------
# Item 1: numpy's reconstructors only with plain numeric dtypes over the file's bytes
# ---------------------------------------------------------------------------

POINTER_PAYLOADS = {
    # labels = _frombuffer(b"A"*8, V8-with-object-field, (1,)): np.asarray(labels, int64) used to
    # dereference 0x4141414141414141 (SIGSEGV).
    "frombuffer-object-field": batch_pickle(array(b"A" * 8, (1,), POINTER_DTYPE), n=1),
    # numpy.core.multiarray.scalar with the same dtype: a RuntimeError traceback.
    "scalar-object-field": batch_pickle([Call(SCALAR, POINTER_DTYPE, b"A" * 8)], n=1),
    # An object array rebuilt the protocol-2 way, its "raw data" a list of objects.
    "reconstruct-object-array": batch_pickle(
        Build(Call(RECONSTRUCT, NDARRAY, (0,), b"b"), (1, (1,), OBJECT_DTYPE, False, [0])), n=1
    ),
}


@pytest.mark.parametrize("case", sorted(POINTER_PAYLOADS))
def test_pointer_payload_refused_in_child(tmp_path, case):
    path = cifar10_tar(tmp_path, {"data_batch_1": POINTER_PAYLOADS[case]})
    result = run_child(path)
    kind, message = result["outcome"]
    assert kind == "UnsafeInputError", message
    assert message.startswith("data_batch_1: refused numpy.dtype(")
    assert "only plain numeric dtypes" in message


@pytest.mark.parametrize(
    "name,state",
    [
        ("O8", (3, "|", None, None, None, -1, -1, 63)),
        ("V8", (3, "|", None, ("f",), {"f": (dtype("u1"), 0)}, 8, 1, 0)),
        ("u1", (3, "|", None, ("f",), {"f": (dtype("u1"), 0)}, 8, 1, 0)),  # fields by state alone
        ("u1", (3, "|", (dtype("u1"), (2,)), None, None, -1, -1, 0)),  # a subarray
        ("u1", (3, "|", None, None, None, 8, 1, 0)),  # a size of its own
        ("u1", (3, "|", None, None, None, -1, -1, 63)),  # object flags
        ("u1", (4, "|", None, None, None, -1, -1, 0, {"meta": 1})),
        ("u1", (3, "?", None, None, None, -1, -1, 0)),
        ("S8", (3, "|", None, None, None, -1, -1, 0)),
        ("M8", (3, "<", None, None, None, -1, -1, 0, ("D", 1, 1, 1))),
    ],
    ids=["object", "void-fields", "fields-state", "subarray", "elsize", "flags", "metadata",
         "order", "bytes", "datetime"],  # fmt: skip
)
def test_dtype_must_be_plain_numeric(name, state):
    data = assemble({"data": array(pixels(1), (1, 3072), dtype(name, state)), "labels": [0]})
    with pytest.raises(UnsafeInputError, match="refused (numpy.dtype|a numpy dtype state)"):
        safe_loads(data, "data_batch_1")


def test_dtype_set_twice_refused():
    twice = Build(dtype("u1"), (3, "|", None, None, None, -1, -1, 0))
    with pytest.raises(UnsafeInputError, match="dtype state"):
        safe_loads(assemble({"data": array(pixels(1), (1, 3072), twice)}), "f")


@pytest.mark.parametrize(
    "node,pattern",
    [
        (Call(NDARRAY, (2, 3072), "u1"), r"numpy\.ndarray\(\.\.\.\) called directly"),
        (Call(RECONSTRUCT, NDARRAY, (2, 3072), b"b"), "_reconstruct call other than"),
        (Call(RECONSTRUCT, Global("numpy", "dtype"), (0,), b"b"), "_reconstruct call other than"),
        (Call(FROMBUFFER, [1, 2, 3], dtype("u1"), (3,), "C"), "data is a list"),
        (Call(FROMBUFFER, b"abc", "u1", (3,), "C"), "dtype is a str"),
        (Call(BYTEARRAY, 50_000_000), "bytearray"),
        (Call(Global("builtins", "bytes"), 50_000_000), "bytes"),
        (Build(Global("numpy", "dtype"), {"x": 1}), "set attributes on 'numpy.dtype'"),
    ],
    ids=["ndarray-call", "reconstruct-shape", "reconstruct-subtype", "frombuffer-list",
         "frombuffer-str-dtype", "bytearray-int", "bytes-int", "build-on-global"],  # fmt: skip
)
def test_numpy_and_builtin_standins_refuse(node, pattern):
    with pytest.raises(UnsafeInputError, match=pattern):
        safe_loads(assemble({"data": node}), "data_batch_1")


@pytest.mark.parametrize(
    "node,pattern",
    [
        (array(b"A" * 8, (2_000_000, 3072)), "needs 6144000000 bytes, the file gives 8"),
        (Call(FROMBUFFER, b"A" * 8, dtype("u1"), (8,), "X"), "order numpy never writes"),
        (Build(Call(RECONSTRUCT, NDARRAY, (0,), b"b"), (1, (4,), dtype("u1"), False, b"abc")), "needs 4 bytes"),
        (Call(RECONSTRUCT, NDARRAY, (0,), b"b"), "never given its data"),
        (Call(SCALAR, dtype("i8"), b"\x01"), "do not fit its dtype"),
    ],
    ids=["frombuffer-short", "frombuffer-order", "reconstruct-short", "reconstruct-no-build", "scalar-short"],
)
def test_arrays_need_their_bytes(node, pattern):
    with pytest.raises(SourceError, match=pattern):
        safe_loads(assemble({"data": node}), "data_batch_1")


def test_valid_assembled_batch_loads_identically(tmp_path):
    # The stand-ins give the same arrays numpy's own reconstructors would: C and Fortran order,
    # big-endian labels, protocol-2 _reconstruct.
    data = pixels(2)
    labels_be = struct.pack(">2q", 3, 9)
    node = {
        "data": Build(Call(RECONSTRUCT, NDARRAY, (0,), b"b"), (1, (2, 3072), dtype("u1"), False, data)),
        "labels": array(labels_be, (2,), dtype("i8", (3, ">", None, None, None, -1, -1, 0))),
        "fortran": array(bytes(range(6)), (2, 3), "u1", "F"),
    }
    got = safe_loads(assemble(node), "f")
    np.testing.assert_array_equal(got["data"], np.frombuffer(data, np.uint8).reshape(2, 3072))
    np.testing.assert_array_equal(got["labels"], [3, 9])
    np.testing.assert_array_equal(got["fortran"], np.arange(6, dtype=np.uint8).reshape(2, 3, order="F"))
    path = cifar10_tar(tmp_path, {"test_batch": assemble({k: node[k] for k in ("data", "labels")})})
    batch = open_source(path).take("test", 0, 2)
    np.testing.assert_array_equal(np.asarray(batch.images), synth.rows_to_hwc(got["data"]))
    np.testing.assert_array_equal(batch.labels, [3, 9])
