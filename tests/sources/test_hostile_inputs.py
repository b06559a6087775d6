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
from cifarkit.sources.safe_pickle import safe_loads

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
    if len(data) < 256:
        return b"\x8a" + bytes([len(data)]) + data  # LONG1
    return b"\x8b" + struct.pack("<i", len(data)) + data  # LONG4


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
from cifarkit.sources.safe_pickle import safe_loads
from cifarkit.sources.spill import arrays_on_disk
path = Path(sys.argv[1])
data = path.read_bytes() if path.suffix == ".pkl" else None
def peak_kb():
    # VmHWM, reset first: ru_maxrss starts at the forking parent's size, which can hide the growth.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    Path("/proc/self/clear_refs").write_text("5")
except OSError:
    pass
before = peak_kb()
try:
    if data is not None:
        safe_loads(data, path.name)
    elif sys.argv[2:] == ["spill"]:  # as export reads it: members streamed into temporary files
        with arrays_on_disk():
            open_source(path, verify=False)
    else:
        open_source(path, verify=False)
    outcome = ["ok", ""]
except CifarkitError as exc:
    outcome = [type(exc).__name__, str(exc)]
after = peak_kb()
print(json.dumps({"outcome": outcome, "grew_mb": (after - before) / 1024}))
"""


def run_child(path: Path, *how: str) -> dict:
    """Open ``path`` in a fresh interpreter (``"spill"``: as export does): its exit status,
    outcome and memory growth."""
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path), *how], capture_output=True, text=True, timeout=120)
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
    ids=[
        "object",
        "void-fields",
        "fields-state",
        "subarray",
        "elsize",
        "flags",
        "metadata",
        "order",
        "bytes",
        "datetime",
    ],
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
    ids=[
        "ndarray-call",
        "reconstruct-shape",
        "reconstruct-subtype",
        "frombuffer-list",
        "frombuffer-str-dtype",
        "bytearray-int",
        "bytes-int",
        "build-on-global",
    ],
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


# ---------------------------------------------------------------------------
# Item 2: memory bounded by what the file holds (measured in a child process)
# ---------------------------------------------------------------------------

GROWTH_BOUND_MB = 120  # a small synthetic dataset needs a few MB; every bomb below needs far more


def _memo_bomb() -> bytes:
    # LONG_BINPUT 2**25: the C unpickler grew its memo array to that index (9 bytes -> 0.5 GB).
    return b"\x80\x02N" + b"r" + struct.pack("<I", 2**25) + b"."


def _dict_bomb() -> bytes:
    # 4 million EMPTY_DICT opcodes, one byte each, 64+ bytes each once built (4 MB -> 300 MB).
    return b"\x80\x02](" + b"}" * 4_000_000 + b"e."


MEMORY_BOMBS = {
    "bytearray-int": (assemble({"data": Call(BYTEARRAY, 600_000_000)}), "bytearray"),
    "memo-index": (_memo_bomb(), None),  # a valid pickle of None: it loads, cheaply
    "empty-dicts": (_dict_bomb(), "more pickle opcodes"),
    "bytearray8-length": (b"\x80\x05\x96" + struct.pack("<Q", 600_000_000) + b".", "bytearray of 600000000 bytes"),
}


@pytest.mark.parametrize("case", sorted(MEMORY_BOMBS))
def test_pickle_memory_bombs_bounded(tmp_path, case):
    data, pattern = MEMORY_BOMBS[case]
    path = tmp_path / "bomb.pkl"
    path.write_bytes(data)
    result = run_child(path)
    kind, message = result["outcome"]
    if pattern is None:
        assert kind == "ok", message
    else:
        assert kind in ("SourceError", "UnsafeInputError") and pattern in message, message
    assert result["grew_mb"] < GROWTH_BOUND_MB, f"{case}: grew {result['grew_mb']:.0f} MB for {len(data)} bytes"


# BINBYTES8 declaring a terabyte: a buffered file allocates what a read asks for before reading.
DECLARED_TERABYTE = b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"."


def test_a_spilled_member_declaring_a_terabyte_is_refused_cheaply(tmp_path):
    path = cifar10_tar(tmp_path, {"data_batch_1": DECLARED_TERABYTE})
    result = run_child(path, "spill")
    kind, message = result["outcome"]
    assert kind == "SourceError" and message.startswith("data_batch_1: not a valid CIFAR pickle"), message
    assert result["grew_mb"] < GROWTH_BOUND_MB, f"grew {result['grew_mb']:.0f} MB"


def test_a_pickle_read_from_a_file_never_asks_it_for_more_than_it_holds():
    import io

    asked = []

    class Recording(io.BytesIO):
        def read(self, n=-1):
            asked.append(n)
            return super().read(n)

    with pytest.raises(SourceError, match="not a valid CIFAR pickle"):
        safe_loads(Recording(DECLARED_TERABYTE), "data_batch_1", len(DECLARED_TERABYTE))
    assert asked and max(asked) <= len(DECLARED_TERABYTE), asked


def test_a_spilled_pickle_holds_its_pixels_once(tmp_path):
    """CIFAR-100's train member is one pickle of all 50,000 images (154 MB): read as export reads it,
    the pixels are in memory once while it is parsed, not also as the pickle's bytes."""
    images = 20_000  # 61 MB of pixels
    path = synth.make_cifar100_python(tmp_path, train=images, test=10).path
    pixels_mb = images * 3072 / 2**20
    result = run_child(path, "spill")
    assert result["outcome"] == ["ok", ""], result
    assert result["grew_mb"] < 1.5 * pixels_mb, f"grew {result['grew_mb']:.0f} MB for {pixels_mb:.0f} MB of pixels"


class _Zeros:
    """A file object of ``n`` zero bytes, so a test can tar gigabytes without holding them."""

    def __init__(self, n: int):
        self.left = n

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        self.left -= size
        return bytes(size)


def test_non_dataset_members_skipped_unbuffered(tmp_path):
    # Six 40 MiB members that no CIFAR layout reads, next to a valid dataset: the archive loads
    # and they are never held in memory (they used to be, 240 MB of them).
    import tarfile

    folder = synth.make_cifar10_python(tmp_path / "members", archive=False).path
    path = tmp_path / "padded.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        for p in sorted(folder.iterdir()):
            tar.add(p, arcname=f"cifar-10-batches-py/{p.name}")
        for i in range(6):
            info = tarfile.TarInfo(f"cifar-10-batches-py/junk_{i}.bin")
            info.size = 40 * 2**20
            tar.addfile(info, _Zeros(info.size))
    assert path.stat().st_size < 2 * 2**20
    result = run_child(path)
    assert result["outcome"] == ["ok", ""]
    assert result["grew_mb"] < GROWTH_BOUND_MB, f"grew {result['grew_mb']:.0f} MB"


def test_archive_dataset_files_capped_in_total(tmp_path, monkeypatch):
    # The total is checked from each member's header, before its bytes are read.
    from cifarkit.sources import archive, layouts

    path = cifar10_tar(tmp_path, {})
    files = (tmp_path / "members" / "cifar-10-batches-py").iterdir()
    total = sum(p.stat().st_size for p in files if layouts.is_dataset_file(p.name))  # not readme.html
    monkeypatch.setattr(archive, "MAX_DATASET_BYTES", total - 1)
    with pytest.raises(UnsafeInputError, match="more than any CIFAR dataset"):
        open_source(path)
    monkeypatch.setattr(archive, "MAX_DATASET_BYTES", total)
    assert open_source(path).count("train") == 30


def test_dataset_cap_holds_the_largest_real_source():
    from cifarkit import constants

    # cifar-100-python: train 50,000 and test 10,000 images, ~35 bytes an image of labels/names;
    # re-written by Python 3 at protocol 2 (pixels as UTF-8 text), the pixels of white images
    # take two bytes each.
    official = 60_000 * (3072 + 35) + 1_600
    white_py3_protocol2 = 60_000 * (2 * 3072 + 100)
    assert official < white_py3_protocol2 < constants.MAX_DATASET_BYTES < 400 * 10**6


def test_folder_file_over_cap_refused_unread(tmp_path):
    folder = synth.make_cifar10_python(tmp_path, archive=False).path
    with open(folder / "data_batch_2", "r+b") as fh:
        fh.truncate(2**40)  # sparse: a terabyte that takes no disk
    result = run_child(folder)
    kind, message = result["outcome"]
    assert kind == "UnsafeInputError" and "data_batch_2: refused" in message
    assert result["grew_mb"] < GROWTH_BOUND_MB


def test_folder_dataset_files_capped_in_total(tmp_path, monkeypatch):
    from cifarkit.sources import layouts

    folder = synth.make_cifar10_python(tmp_path, archive=False).path
    monkeypatch.setattr(layouts, "MAX_DATASET_BYTES", 3 * (folder / "data_batch_1").stat().st_size)
    with pytest.raises(UnsafeInputError, match="refused: more bytes than a CIFAR file can hold"):
        open_source(folder, verify=False)


# ---------------------------------------------------------------------------
# Item 3: compressed archives are read to the end, so their CRC and length are checked
# ---------------------------------------------------------------------------


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("offset,pattern", [(-8, "CRC check failed"), (-1, "Incorrect length")], ids=["crc", "length"])
def test_gzip_trailer_checked(tmp_path, offset, pattern):
    truth = synth.make_cifar10_python(tmp_path)
    _flip(truth.path, offset)
    with pytest.raises(SourceError, match=f"corrupt or truncated archive.*{pattern}") as info:
        open_source(truth.path, verify=False)
    assert truth.path.name in str(info.value)


def _silent_flip(gz: bytes) -> int:
    """An offset inside the deflate data where one flipped bit still inflates, to other bytes."""
    import zlib

    good = zlib.decompress(gz, 31)
    for offset in range(len(gz) // 2, len(gz) - 8):
        bad = bytearray(gz)
        bad[offset] ^= 1
        try:
            out = zlib.decompressobj(-zlib.MAX_WBITS).decompress(bytes(bad[10:]))  # raw deflate: no CRC
        except zlib.error:
            continue
        if len(out) == len(good) and out != good:
            return offset
    raise AssertionError("no silent flip found")


def test_gzip_bit_flip_in_data_refused(tmp_path):
    # One flipped bit in the compressed pixels: inflate succeeds with other pixels, and only the
    # CRC tells. This archive used to load, with those pixels, under --no-verify or a new name.
    truth = synth.make_cifar10_python(tmp_path, archive_name="mine.tar.gz")
    _flip(truth.path, _silent_flip(truth.path.read_bytes()))
    with pytest.raises(SourceError, match="CRC check failed"):
        open_source(truth.path)


@pytest.mark.parametrize("kind", ["bz2", "xz"])
def test_bz2_and_xz_archives_load_and_are_checked(tmp_path, kind):
    import bz2
    import lzma

    truth = synth.make_cifar10_python(tmp_path)
    tar = gzip.decompress(truth.path.read_bytes())
    compressed = bz2.compress(tar) if kind == "bz2" else lzma.compress(tar)
    path = tmp_path / f"cifar.tar.{kind}"
    path.write_bytes(compressed)
    dataset = open_source(path)
    np.testing.assert_array_equal(np.asarray(dataset.take("test", 0, 10).images), truth.splits["test"].images)
    _flip(path, len(compressed) // 2)
    with pytest.raises(SourceError, match="corrupt or truncated archive"):
        open_source(path)


# ---------------------------------------------------------------------------
# Item 7: labels, class names, keys and member names that used to give a traceback or a guess
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels,pattern",
    [
        ([2**70, 0], r"label of 71 bits in 'labels' is outside 0\.\.9"),
        ([0.9, 9.99], r"'labels' is not a list of integers \(it holds a float\)"),
        (["3", "07"], r"'labels' is not a list of integers \(it holds a str\)"),
        ([True, False], r"'labels' is not a list of integers \(it holds a bool\)"),
        (
            array(struct.pack("<2d", 1.0, 2.0), (2,), "f8"),
            r"'labels' is not a list of integers \(it is an array of float64\)",
        ),
        (None, r"'labels' is not a list of integers \(it is a NoneType\)"),
    ],
    ids=["huge-int", "floats", "strings", "bools", "float-array", "none"],
)
def test_bad_labels_refused(tmp_path, labels, pattern):
    path = cifar10_tar(tmp_path, {"data_batch_1": batch_pickle(labels)})
    with pytest.raises(SourceError, match=f"^data_batch_1: {pattern}"):
        open_source(path)


@pytest.mark.parametrize("names", [5, None, "airplane", [1, 2], []], ids=["int", "none", "str", "ints", "empty"])
def test_bad_label_names_refused(tmp_path, names):
    path = cifar10_tar(tmp_path, {"batches.meta": assemble({"label_names": names})})
    with pytest.raises(SourceError, match="^batches.meta: 'label_names' (is a|is empty)"):
        open_source(path)


def test_cifar100_bad_names_refused(tmp_path):
    folder = synth.make_cifar100_python(tmp_path, archive=False).path
    (folder / "meta").write_bytes(assemble({"fine_label_names": None, "coarse_label_names": ["a"] * 20}))
    with pytest.raises(SourceError, match="^meta: 'fine_label_names' is a NoneType"):
        open_source(folder, verify=False)


def test_huge_int_key_and_filename(tmp_path):
    # str() of an int over 4300 digits raises ValueError: a key or a file name must not reach it.
    huge = 2**20000
    path = cifar10_tar(tmp_path, {"data_batch_1": batch_pickle([0, 1], filenames=[huge, "b.png"])})
    batch = open_source(path).take("train", 0, 2)
    assert list(batch.source_files) == ["data_batch_1", "data_batch_1"]
    data = assemble({"data": array(pixels(1), (1, 3072)), "labels": [0], huge: 1})
    path = cifar10_tar(tmp_path, {"data_batch_1": data}, name="key.tar.gz")
    with pytest.raises(SourceError, match="^data_batch_1: a key is a int"):
        open_source(path)


def test_same_member_twice_refused(tmp_path):
    folder = synth.make_cifar10_python(tmp_path / "members", archive=False).path
    items = [(f"c/{p.name}", p.read_bytes()) for p in sorted(folder.iterdir())]
    items.append(("c/test_batch", batch_pickle([0, 1])))  # a second copy, with other contents
    path = synth.write_tar_gz(tmp_path / "twice.tar.gz", items)
    with pytest.raises(SourceError, match="member 'c/test_batch' appears twice"):
        open_source(path)


def test_python3_protocol2_bytes_values_load(tmp_path):
    # Python 3 writes b"" at protocol 2 as __builtin__.bytes() and other bytes as
    # _codecs.encode(str, "latin1"); both are plain data.
    fields = {
        "batch_label": b"",
        "data": np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072),
        "labels": [4, 7],
        "filenames": [b"", b"\xffcat.png"],
    }
    data = pickle.dumps(fields, protocol=2)
    assert b"c__builtin__\nbytes" in data and b"c_codecs\nencode" in data
    path = cifar10_tar(tmp_path, {"test_batch": data})
    batch = open_source(path).take("test", 0, 2)
    np.testing.assert_array_equal(np.asarray(batch.images), synth.rows_to_hwc(fields["data"]))
    np.testing.assert_array_equal(batch.labels, [4, 7])
    assert list(batch.source_files) == ["test_batch:", "test_batch:\ufffdcat.png"]


# ---------------------------------------------------------------------------
# The binary version
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["batches.meta.txt"])
def test_binary_empty_names_file(tmp_path, name):
    folder = synth.make_cifar10_binary(tmp_path, archive=False).path
    (folder / name).write_bytes(b"\n \n")
    with pytest.raises(SourceError, match=r"^batches\.meta\.txt: no class names"):
        open_source(folder)


def test_cifar100_binary_empty_names_file(tmp_path):
    folder = synth.make_cifar100_binary(tmp_path, archive=False).path
    (folder / "coarse_label_names.txt").write_bytes(b"")
    with pytest.raises(SourceError, match=r"^coarse_label_names\.txt: no class names"):
        open_source(folder)


def test_binary_member_size_claims_checked(tmp_path):
    # A tar header that claims more bytes than follow: refused as truncated, not half-read.
    truth = synth.make_cifar10_binary(tmp_path)
    synth.truncate_file(truth.path, 0.6)
    with pytest.raises(SourceError, match="corrupt or truncated"):
        open_source(truth.path)
