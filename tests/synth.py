"""Builders for small synthetic CIFAR datasets in the real on-disk layouts.

Every builder is deterministic for a given ``seed`` and returns a
:class:`SynthDataset` holding the exact pixels, labels and file names that
were written, so tests can compare decoded data bit for bit.

Layouts follow the dataset home page:

* CIFAR-10 python   ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta,readme.html}``
* CIFAR-100 python  ``cifar-100-python/{train,test,meta}``
* CIFAR-10 binary   ``cifar-10-batches-bin/{data_batch_1..5.bin,test_batch.bin,batches.meta.txt,readme.html}``
* CIFAR-100 binary  ``cifar-100-binary/{train.bin,test.bin,fine_label_names.txt,coarse_label_names.txt}``

The python pickles are written by default the way the originals were:
Python 2 protocol-2 pickles whose byte strings use the ``SHORT_BINSTRING`` /
``BINSTRING`` opcodes and whose numpy references are ``GLOBAL`` opcodes naming
``numpy.core.multiarray _reconstruct``, ``numpy ndarray`` and ``numpy dtype``.
Such files only load in Python 3 with ``encoding="bytes"`` (or ``"latin1"``).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import shlex
import struct
import tarfile
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR100_COARSE",
    "CIFAR100_FINE",
    "CIFAR100_FINE_TO_COARSE",
    "CIFAR10_PY_TAR_ORDER",
    "EVIL_MEMBER",
    "SplitTruth",
    "SynthDataset",
    "make_cifar10_binary",
    "make_cifar10_python",
    "make_cifar100_binary",
    "make_cifar100_python",
    "make_image_folder",
    "malicious_pickle",
    "pickle_py2",
    "truncate_file",
    "write_evil_tar",
    "write_tar_gz",
]

# ---------------------------------------------------------------------------
# Class names
# ---------------------------------------------------------------------------

CIFAR10_CLASSES: list[str] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]

# Superclass -> its five classes (the table on the home page).
_CIFAR100_GROUPS: dict[str, tuple[str, ...]] = {
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
}
CIFAR100_COARSE: list[str] = sorted(_CIFAR100_GROUPS)
CIFAR100_FINE: list[str] = sorted(n for names in _CIFAR100_GROUPS.values() for n in names)
#: fine label index -> coarse label index
CIFAR100_FINE_TO_COARSE: np.ndarray = np.array(
    [
        next(CIFAR100_COARSE.index(c) for c, names in _CIFAR100_GROUPS.items() if fine in names)
        for fine in CIFAR100_FINE
    ],
    dtype=np.int64,
)
assert len(CIFAR100_FINE) == 100 and len(CIFAR100_COARSE) == 20

# Member order of the files inside the real cifar-10-python.tar.gz.
CIFAR10_PY_TAR_ORDER: list[str] = [
    "data_batch_4",
    "readme.html",
    "test_batch",
    "data_batch_3",
    "batches.meta",
    "data_batch_2",
    "data_batch_5",
    "data_batch_1",
]
_CIFAR10_BIN_TAR_ORDER: list[str] = [
    "data_batch_1.bin",
    "batches.meta.txt",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "test_batch.bin",
    "readme.html",
    "data_batch_2.bin",
    "data_batch_5.bin",
]
_CIFAR100_PY_TAR_ORDER: list[str] = ["file.txt~", "train", "test", "meta"]
_CIFAR100_BIN_TAR_ORDER: list[str] = [
    "coarse_label_names.txt",
    "test.bin",
    "train.bin",
    "fine_label_names.txt",
]

_README_HTML = (
    b"<html><head><title>CIFAR (synthetic)</title></head>\n"
    b"<body><p>Synthetic CIFAR-format data for tests.</p></body></html>\n"
)

# ---------------------------------------------------------------------------
# Truth containers
# ---------------------------------------------------------------------------


@dataclass
class SplitTruth:
    """What a loader should produce for one split."""

    images: np.ndarray | list[np.ndarray]  # (N, 32, 32, 3) uint8 HWC, or a ragged list
    labels: np.ndarray  # (N,) int64; fine labels for CIFAR-100
    coarse_labels: np.ndarray | None = None
    filenames: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class SynthDataset:
    path: Path  # the archive file or the folder written
    class_names: list[str]
    splits: dict[str, SplitTruth]
    coarse_class_names: list[str] | None = None


# ---------------------------------------------------------------------------
# Pixel / label generation
# ---------------------------------------------------------------------------


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


def _labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """Labels covering every class at least once when ``n >= num_classes``."""
    if n >= num_classes:
        labels = np.arange(n, dtype=np.int64) % num_classes
        rng.shuffle(labels)
    else:
        labels = rng.choice(num_classes, size=n, replace=False).astype(np.int64)
    return labels


def hwc_to_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) HWC -> (N, 3072) rows: 1024 R, 1024 G, 1024 B, each row-major."""
    images = np.asarray(images, dtype=np.uint8)
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), 3072))


def rows_to_hwc(rows: np.ndarray) -> np.ndarray:
    """Inverse of :func:`hwc_to_rows`."""
    rows = np.asarray(rows, dtype=np.uint8)
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _filenames(class_names: Sequence[str], labels: np.ndarray, start: int) -> list[str]:
    return [f"{class_names[int(lab)]}_s_{start + i:06d}.png" for i, lab in enumerate(labels)]


# ---------------------------------------------------------------------------
# Pickling
# ---------------------------------------------------------------------------


def _py2_global(obj: object, name: str | None) -> tuple[str, str] | None:
    """The (module, name) a Python 2 numpy would have written for ``obj``."""
    if obj is np.ndarray:
        return "numpy", "ndarray"
    if obj is np.dtype:
        return "numpy", "dtype"
    module = getattr(obj, "__module__", None) or ""
    qualname = name or getattr(obj, "__qualname__", None) or getattr(obj, "__name__", "")
    for prefix in ("numpy._core.", "numpy.core."):
        if module.startswith(prefix):
            return "numpy.core." + module[len(prefix) :], qualname
    return None


class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """A pure-Python pickler that writes what Python 2 ``cPickle`` wrote.

    * ``bytes`` -> ``SHORT_BINSTRING`` / ``BINSTRING`` (a Python 2 ``str``)
    * ``str`` that fits latin-1 -> the same (Python 2 code had no unicode here)
    * numpy globals -> ``GLOBAL`` lines in the old ``numpy.core`` namespace
    """

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def _write_binstring(self, data: bytes) -> None:
        n = len(data)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + data)

    def save_py2_bytes(self, obj: bytes) -> None:
        self._write_binstring(obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_bytes

    def save_py2_text(self, obj: str) -> None:
        try:
            data = obj.encode("latin-1")
        except UnicodeEncodeError:
            pickle._Pickler.save_str(self, obj)  # type: ignore[attr-defined]
            return
        self._write_binstring(data)
        self.memoize(obj)

    dispatch[str] = save_py2_text

    def save_global(self, obj, name=None):  # noqa: D401 - pickle API
        target = _py2_global(obj, name)
        if target is None:
            return super().save_global(obj, name)
        module, qualname = target
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode("ascii"))
        self.memoize(obj)

    dispatch[types.FunctionType] = save_global


def pickle_py2(obj: object, protocol: int = 2) -> bytes:
    """Pickle ``obj`` the way Python 2 did (protocol 1 or 2, default 2)."""
    if protocol not in (1, 2):
        raise ValueError("Python 2 style pickles support protocol 1 or 2")
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=protocol, fix_imports=False).dump(obj)
    return buf.getvalue()


def _text(value: str, as_str: bool) -> str | bytes:
    return value if as_str else value.encode("ascii")


def _to_str_keys(obj: object) -> object:
    """Recursively turn bytes keys and bytes values into str (a "rewritten" file)."""
    if isinstance(obj, dict):
        return {_to_str_keys(k): _to_str_keys(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_str_keys(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.decode("latin-1")
    return obj


def _dump(obj: dict, flavour: str, protocol: int, str_keys: bool) -> bytes:
    if flavour == "py2":
        if str_keys:
            raise ValueError("str_keys only applies to flavour='py3'")
        return pickle_py2(obj, protocol=protocol)
    if flavour == "py3":
        if not 2 <= protocol <= 5:
            raise ValueError("flavour='py3' supports protocols 2..5")
        if str_keys:
            obj = _to_str_keys(obj)  # type: ignore[assignment]
        return pickle.dumps(obj, protocol=protocol)
    raise ValueError(f"unknown flavour {flavour!r} (expected 'py2' or 'py3')")


class _SystemCall:
    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def malicious_pickle(marker: Path) -> bytes:
    """A pickle whose *loading* runs ``touch <marker>``. Building it runs nothing."""
    cmd = f"touch {shlex.quote(str(marker))}"
    return pickle.dumps(_SystemCall(cmd), protocol=2)


# ---------------------------------------------------------------------------
# Archives
# ---------------------------------------------------------------------------


def _file_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.rstrip("/"))
    info.type = tarfile.DIRTYPE
    info.mtime = 0
    info.mode = 0o755
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_tar(path: Path, entries: Iterable[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    with open(path, "wb") as fh:
        with gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0) as gz:
            gz.write(raw.getvalue())
    return path


def write_tar_gz(
    path: Path,
    members: dict[str, bytes] | list[tuple[str, bytes]],
    *,
    dirs: Sequence[str] = (),
) -> Path:
    """Write a deterministic ``.tar.gz`` (mtime 0) of regular files.

    ``dirs`` are directory entries written first (the real archives start with
    their top folder entry).
    """
    items = list(members.items()) if isinstance(members, dict) else list(members)
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [(_dir_info(d), None) for d in dirs]
    entries += [(_file_info(name, len(data)), data) for name, data in items]
    return _write_tar(path, entries)


def _order(files: dict[str, bytes], order: Sequence[str]) -> list[tuple[str, bytes]]:
    names = [n for n in order if n in files] + [n for n in files if n not in order]
    return [(n, files[n]) for n in names]


def _emit(
    dest: Path,
    folder: str,
    files: dict[str, bytes],
    order: Sequence[str],
    archive: bool,
    archive_name: str,
) -> Path:
    dest = Path(dest)
    ordered = _order(files, order)
    if archive:
        return write_tar_gz(
            dest / archive_name,
            [(f"{folder}/{n}", data) for n, data in ordered],
            dirs=[folder],
        )
    root = dest / folder
    root.mkdir(parents=True, exist_ok=True)
    for name, data in ordered:
        (root / name).write_bytes(data)
    return root


# ---------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100, python version
# ---------------------------------------------------------------------------


def _cifar10_split_data(rng, per_batch, test, batches):
    n_train = per_batch * batches
    train_labels = _labels(rng, n_train, 10)
    train_images = _images(rng, n_train)
    test_labels = _labels(rng, test, 10)
    test_images = _images(rng, test)
    train = SplitTruth(
        images=train_images,
        labels=train_labels,
        filenames=_filenames(CIFAR10_CLASSES, train_labels, 0),
    )
    test_t = SplitTruth(
        images=test_images,
        labels=test_labels,
        filenames=_filenames(CIFAR10_CLASSES, test_labels, n_train),
    )
    return train, test_t


def _cifar10_batch_dict(truth: SplitTruth, lo: int, hi: int, batch_label: str) -> dict:
    return {
        b"batch_label": batch_label.encode("ascii"),
        b"labels": [int(x) for x in truth.labels[lo:hi]],
        b"data": hwc_to_rows(truth.images[lo:hi]),
        b"filenames": [f.encode("ascii") for f in truth.filenames[lo:hi]],
    }


def make_cifar10_python(
    dest: Path,
    *,
    per_batch: int = 6,
    test: int = 10,
    batches: int = 5,
    seed: int = 0,
    flavour: str = "py2",
    protocol: int = 2,
    str_keys: bool = False,
    archive: bool = True,
    archive_name: str = "cifar10-synth-python.tar.gz",
) -> SynthDataset:
    """Synthetic ``cifar-10-python.tar.gz`` (or its extracted folder).

    ``flavour="py2"`` writes Python 2 style pickles; ``"py3"`` writes
    ``pickle.dumps(obj, protocol)``, with every bytes key/value turned into
    ``str`` when ``str_keys`` is true.
    """
    rng = np.random.default_rng(seed)
    train, test_t = _cifar10_split_data(rng, per_batch, test, batches)
    files: dict[str, bytes] = {}
    for b in range(batches):
        d = _cifar10_batch_dict(train, b * per_batch, (b + 1) * per_batch, f"training batch {b + 1} of {batches}")
        files[f"data_batch_{b + 1}"] = _dump(d, flavour, protocol, str_keys)
    files["test_batch"] = _dump(
        _cifar10_batch_dict(test_t, 0, test, "testing batch 1 of 1"), flavour, protocol, str_keys
    )
    meta = {
        b"num_cases_per_batch": per_batch,
        b"label_names": [n.encode("ascii") for n in CIFAR10_CLASSES],
        b"num_vis": 3072,
    }
    files["batches.meta"] = _dump(meta, flavour, protocol, str_keys)
    files["readme.html"] = _README_HTML
    path = _emit(dest, "cifar-10-batches-py", files, CIFAR10_PY_TAR_ORDER, archive, archive_name)
    return SynthDataset(path, list(CIFAR10_CLASSES), {"train": train, "test": test_t})


def _cifar100_split(rng, n: int, start: int) -> SplitTruth:
    fine = _labels(rng, n, 100)
    return SplitTruth(
        images=_images(rng, n),
        labels=fine,
        coarse_labels=CIFAR100_FINE_TO_COARSE[fine].astype(np.int64),
        filenames=_filenames(CIFAR100_FINE, fine, start),
    )


def make_cifar100_python(
    dest: Path,
    *,
    train: int = 20,
    test: int = 10,
    seed: int = 0,
    flavour: str = "py2",
    protocol: int = 2,
    str_keys: bool = False,
    stray_file: bool = True,
    archive: bool = True,
    archive_name: str = "cifar100-synth-python.tar.gz",
) -> SynthDataset:
    """Synthetic ``cifar-100-python.tar.gz``.

    Like the real archive it also holds a stray ``file.txt~`` (set
    ``stray_file=False`` to leave it out).
    """
    rng = np.random.default_rng(seed)
    splits = {"train": _cifar100_split(rng, train, 0), "test": _cifar100_split(rng, test, train)}
    files: dict[str, bytes] = {}
    if stray_file:
        files["file.txt~"] = b""
    for split, label in (("train", "training batch 1 of 1"), ("test", "testing batch 1 of 1")):
        t = splits[split]
        d = {
            b"filenames": [f.encode("ascii") for f in t.filenames],
            b"batch_label": label.encode("ascii"),
            b"fine_labels": [int(x) for x in t.labels],
            b"coarse_labels": [int(x) for x in t.coarse_labels],  # type: ignore[union-attr]
            b"data": hwc_to_rows(t.images),
        }
        files[split] = _dump(d, flavour, protocol, str_keys)
    meta = {
        b"fine_label_names": [n.encode("ascii") for n in CIFAR100_FINE],
        b"coarse_label_names": [n.encode("ascii") for n in CIFAR100_COARSE],
    }
    files["meta"] = _dump(meta, flavour, protocol, str_keys)
    path = _emit(dest, "cifar-100-python", files, _CIFAR100_PY_TAR_ORDER, archive, archive_name)
    return SynthDataset(path, list(CIFAR100_FINE), splits, list(CIFAR100_COARSE))


# ---------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100, binary version
# ---------------------------------------------------------------------------


def _records(label_columns: Sequence[np.ndarray], images: np.ndarray) -> bytes:
    n = len(images)
    cols = [np.asarray(c, dtype=np.uint8).reshape(n, 1) for c in label_columns]
    return np.concatenate(cols + [hwc_to_rows(images)], axis=1).tobytes()


def make_cifar10_binary(
    dest: Path,
    *,
    per_batch: int = 6,
    test: int = 10,
    batches: int = 5,
    seed: int = 0,
    archive: bool = True,
    archive_name: str = "cifar10-synth-binary.tar.gz",
) -> SynthDataset:
    """Synthetic ``cifar-10-binary.tar.gz``: records of 1 label byte + 3072 pixels."""
    rng = np.random.default_rng(seed)
    train, test_t = _cifar10_split_data(rng, per_batch, test, batches)
    train.filenames, test_t.filenames = [], []  # the binary version has no file names
    files: dict[str, bytes] = {}
    for b in range(batches):
        lo, hi = b * per_batch, (b + 1) * per_batch
        files[f"data_batch_{b + 1}.bin"] = _records([train.labels[lo:hi]], train.images[lo:hi])
    files["test_batch.bin"] = _records([test_t.labels], test_t.images)
    files["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode("ascii")
    files["readme.html"] = _README_HTML
    path = _emit(dest, "cifar-10-batches-bin", files, _CIFAR10_BIN_TAR_ORDER, archive, archive_name)
    return SynthDataset(path, list(CIFAR10_CLASSES), {"train": train, "test": test_t})


def make_cifar100_binary(
    dest: Path,
    *,
    train: int = 20,
    test: int = 10,
    seed: int = 0,
    archive: bool = True,
    archive_name: str = "cifar100-synth-binary.tar.gz",
) -> SynthDataset:
    """Synthetic ``cifar-100-binary.tar.gz``: records of coarse byte, fine byte, 3072 pixels."""
    rng = np.random.default_rng(seed)
    splits = {"train": _cifar100_split(rng, train, 0), "test": _cifar100_split(rng, test, train)}
    files: dict[str, bytes] = {}
    for split in ("train", "test"):
        t = splits[split]
        t.filenames = []
        files[f"{split}.bin"] = _records([t.coarse_labels, t.labels], t.images)  # type: ignore[list-item]
    files["fine_label_names.txt"] = ("\n".join(CIFAR100_FINE) + "\n").encode("ascii")
    files["coarse_label_names.txt"] = ("\n".join(CIFAR100_COARSE) + "\n").encode("ascii")
    path = _emit(dest, "cifar-100-binary", files, _CIFAR100_BIN_TAR_ORDER, archive, archive_name)
    return SynthDataset(path, list(CIFAR100_FINE), splits, list(CIFAR100_COARSE))


# ---------------------------------------------------------------------------
# Image folder
# ---------------------------------------------------------------------------

_LOSSLESS = {"png", "bmp", "tif", "tiff", "ppm"}


def make_image_folder(
    dest: Path,
    *,
    classes: Sequence[str] = ("cat", "dog"),
    per_class: dict[str, int] | None = None,
    sizes: Sequence[tuple[int, int]] = ((40, 30), (17, 23)),
    ext: str = "png",
    seed: int = 0,
    with_splits: bool = True,
) -> SynthDataset:
    """A folder of RGB images: ``dest/<split>/<class>/<class>_NNN.<ext>``.

    With ``with_splits=False`` the layout is ``dest/<class>/*`` and only the
    ``"train"`` count is used. Image sizes (H, W) cycle through ``sizes``.
    Class indices follow sorted class names; each split's truth lists images
    as cifarkit reads the tree, classes interleaved (each class's files in name
    order), as a ragged list of HWC arrays, with
    file names relative to the split folder. For lossy formats (jpg) the
    truth is the file read back with Pillow.
    """
    from PIL import Image

    per_class = dict(per_class) if per_class is not None else {"train": 3, "test": 2}
    ext = ext.lower().lstrip(".")
    class_names = sorted(classes)
    rng = np.random.default_rng(seed)
    root = Path(dest)
    split_names = list(per_class) if with_splits else ["train"]
    splits: dict[str, SplitTruth] = {}
    k = 0
    for split in split_names:
        count = per_class[split]
        base = root / split if with_splits else root
        images: list[np.ndarray] = []
        labels: list[int] = []
        names: list[str] = []
        for ci, cls in enumerate(class_names):
            (base / cls).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = sizes[k % len(sizes)]
                k += 1
                img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
                rel = f"{cls}/{cls}_{i:03d}.{ext}"
                target = base / rel
                Image.fromarray(img).save(target)
                if ext not in _LOSSLESS:
                    with Image.open(target) as im:
                        img = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
                images.append(img)
                labels.append(ci)
                names.append(rel)
        # Read back as cifarkit reads a tree: its classes interleaved (folder.stratified_order).
        order = sorted(range(len(labels)), key=lambda j: ((j % count + 0.5) / count, labels[j]))
        splits[split] = SplitTruth(
            images=[images[j] for j in order],
            labels=np.array([labels[j] for j in order], dtype=np.int64),
            filenames=[names[j] for j in order],
        )
    return SynthDataset(root, class_names, splits)


# ---------------------------------------------------------------------------
# Hostile and broken inputs
# ---------------------------------------------------------------------------

#: kind -> name of the offending member written by :func:`write_evil_tar`
EVIL_MEMBER: dict[str, str] = {
    "absolute": "/tmp/evil",
    "dotdot": "cifar-10-batches-py/../../evil",
    "symlink": "cifar-10-batches-py/data_batch_1",
    "hardlink": "cifar-10-batches-py/data_batch_1",
    "device": "cifar-10-batches-py/evil_device",
}


def write_evil_tar(path: Path, kind: str, *, seed: int = 0) -> Path:
    """A small CIFAR-10 python archive with one hostile member.

    * ``absolute``: extra regular file ``/tmp/evil``
    * ``dotdot``:   extra regular file ``cifar-10-batches-py/../../evil``
    * ``symlink``:  ``data_batch_1`` is a symlink to ``/etc/passwd``
    * ``hardlink``: ``data_batch_1`` is a hard link to ``/etc/passwd``
    * ``device``:   extra character device ``cifar-10-batches-py/evil_device`` (1, 3)
    """
    if kind not in EVIL_MEMBER:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(EVIL_MEMBER)}")
    rng = np.random.default_rng(seed)
    per_batch, batches = 2, 5
    train, test_t = _cifar10_split_data(rng, per_batch, 2, batches)
    files: dict[str, bytes] = {}
    for b in range(batches):
        d = _cifar10_batch_dict(train, b * per_batch, (b + 1) * per_batch, f"training batch {b + 1} of {batches}")
        files[f"data_batch_{b + 1}"] = pickle_py2(d)
    files["test_batch"] = pickle_py2(_cifar10_batch_dict(test_t, 0, 2, "testing batch 1 of 1"))
    files["batches.meta"] = pickle_py2(
        {
            b"num_cases_per_batch": per_batch,
            b"label_names": [n.encode("ascii") for n in CIFAR10_CLASSES],
            b"num_vis": 3072,
        }
    )
    files["readme.html"] = _README_HTML

    folder = "cifar-10-batches-py"
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = [(_dir_info(folder), None)]
    for name, data in _order(files, CIFAR10_PY_TAR_ORDER):
        full = f"{folder}/{name}"
        if kind in ("symlink", "hardlink") and full == EVIL_MEMBER[kind]:
            info = _file_info(full, 0)
            info.type = tarfile.SYMTYPE if kind == "symlink" else tarfile.LNKTYPE
            info.linkname = "/etc/passwd"
            info.mode = 0o777 if kind == "symlink" else 0o644
            entries.append((info, None))
        else:
            entries.append((_file_info(full, len(data)), data))
    if kind in ("absolute", "dotdot"):
        payload = b"evil\n"
        entries.append((_file_info(EVIL_MEMBER[kind], len(payload)), payload))
    elif kind == "device":
        info = _file_info(EVIL_MEMBER[kind], 0)
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        entries.append((info, None))
    return _write_tar(path, entries)


def truncate_file(path: Path, keep_fraction: float = 0.5) -> Path:
    """Cut ``path`` in place to ``keep_fraction`` of its size."""
    if not 0.0 <= keep_fraction < 1.0:
        raise ValueError("keep_fraction must be in [0, 1)")
    path = Path(path)
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * keep_fraction))
    return path


# Ten well-separated colours: the class shows in every crop and mirror of an image.
PALETTE = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [128, 128, 0],
        [0, 0, 128],
    ],
    np.float64,
)


@dataclass
class Learnable:
    path: Path
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def lenet5_train_args(data, workdir, *extra: str, quiet: bool = True) -> list[str]:
    """``cifarkit train`` arguments for the tests' quick run: two epochs of lenet5 at batch 16 on
    ``data`` (a :class:`Learnable` or any dataset with a ``path``)."""
    command = ["train", "lenet5", "--data", str(data.path), "--workdir", str(workdir), "--epochs", "2"]
    return [*command, "--batch-size", "16", *(["--quiet"] if quiet else []), *extra]


class TrainingCrash(RuntimeError):
    """What :func:`crash_during_training` raises inside a training run."""


def crash_during_training(monkeypatch, epoch: int, batch: int | None = None) -> None:
    """Make the next training run raise :class:`TrainingCrash` at the start of ``epoch`` (0-based),
    or after its ``batch``-th step, as a kill there would stop it: through the callback the loop
    takes for TensorBoard, so the run's own backups and history are as a real crash leaves them."""
    import keras

    from cifarkit.training import loop

    class Crash(keras.callbacks.Callback):
        def on_epoch_begin(self, at, logs=None):
            self.epoch = at
            if at == epoch and batch is None:
                raise TrainingCrash

        def on_train_batch_end(self, at, logs=None):
            if self.epoch == epoch and at == batch:
                raise TrainingCrash

    monkeypatch.setattr(loop, "tensorboard_callback", lambda log_dir, say=None: Crash())


def make_learnable_cifar10(
    dest: Path, *, per_batch: int = 40, test: int = 50, noise: float = 0.6, seed: int = 0
) -> Learnable:
    """A CIFAR-10 python archive (real layout, Python 2 pickles) whose images are their class's
    colour blended with uniform noise; every class appears equally often in both splits."""
    rng = np.random.default_rng(seed)

    def split(n: int):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        pixels = (1 - noise) * PALETTE[labels][:, None, None, :] + noise * rng.uniform(0, 255, (n, 32, 32, 3))
        return pixels.round().astype(np.uint8), labels

    def batch(images, labels, name: bytes):
        return pickle_py2(
            {
                b"batch_label": name,
                b"labels": [int(x) for x in labels],
                b"data": hwc_to_rows(images),
                b"filenames": [b"img_%05d.png" % i for i in range(len(labels))],
            }
        )

    train_images, train_labels = split(per_batch * 5)
    members = {}
    for b in range(5):
        part = slice(b * per_batch, (b + 1) * per_batch)
        members[f"data_batch_{b + 1}"] = batch(train_images[part], train_labels[part], b"training batch")
    test_images, test_labels = split(test)
    members["test_batch"] = batch(test_images, test_labels, b"testing batch")
    members["batches.meta"] = pickle_py2(
        {b"num_cases_per_batch": per_batch, b"num_vis": 3072, b"label_names": [n.encode() for n in CIFAR10_CLASSES]}
    )
    path = write_tar_gz(
        Path(dest) / "cifar10-learnable-python.tar.gz",
        [(f"cifar-10-batches-py/{k}", v) for k, v in members.items()],
        dirs=["cifar-10-batches-py"],
    )
    return Learnable(path, train_labels, test_images, test_labels)


# --- The MNIST family: IDX files in the layout LeCun's page serves -----------------------------


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An IDX file as LeCun's page describes it: 0, 0, type, ndim, big-endian sizes, the values."""
    head = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + np.ascontiguousarray(array, np.uint8).tobytes()


def write_split(folder: Path, prefix: str, images: np.ndarray, labels: np.ndarray, gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    pack = (lambda b: gzip.compress(b, mtime=0)) if gz else (lambda b: b)
    (folder / f"{prefix}-images-idx3-ubyte{ext}").write_bytes(pack(idx_bytes(images)))
    (folder / f"{prefix}-labels-idx1-ubyte{ext}").write_bytes(pack(idx_bytes(labels)))


def tiny(n: int, seed: int, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8)


def make_mnist_folder(folder: Path, train: int = 30, test: int = 20, gz: bool = True):
    truth = {}
    if train:
        truth["train"] = tiny(train, 1)
        write_split(folder, "train", *truth["train"], gz=gz)
    truth["test"] = tiny(test, 2)
    write_split(folder, "t10k", *truth["test"], gz=gz)
    return truth
