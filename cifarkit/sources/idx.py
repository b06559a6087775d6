"""The MNIST family: MNIST, Fashion-MNIST and KMNIST as IDX files, and Keras's ``mnist.npz``.

IDX (LeCun's format): 2 zero bytes, a type code, the number of dimensions, one big-endian 4-byte
size per dimension, then the values row-major. A file is read only after its header has been
checked against what the file can hold: the type must be unsigned bytes, the dimensions those of
images (N, rows, cols) or labels (N,), and the sizes must account for the file exactly, so a
truncated file or one with bytes after its data is named, and a header claiming 10^9 images in a
100-byte file is refused before anything is allocated. Gzipped files are decompressed in chunks,
never past what the header announced (itself capped), and read to their end so that the gzip
checksum is verified.

Images keep their one grey channel: (N, 28, 28, 1) uint8, 0 the background.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..constants import (
    IDX_IMAGE_DIMS,
    IDX_LABEL_DIMS,
    IDX_MD5,
    IDX_TYPE_UBYTE,
    KERAS_MNIST_NPZ,
    KERAS_MNIST_SHA256,
    MAX_IDX_BYTES,
    MNIST_CLASSES,
    MNIST_FAMILY_CLASSES,
)
from ..errors import ChecksumError, SourceError, UnsafeInputError, no_verify
from .labelled import Batch, LabelledImages

# train-images-idx3-ubyte(.gz) and friends; some mirrors (Kaggle's) write "train-images.idx3-ubyte".
IDX_FILE = re.compile(r"(train|t10k)-(images|labels)[-.]idx([13])-ubyte(\.gz)?")
_SPLIT = {"train": "train", "t10k": "test"}
_CHUNK = 1 << 20  # decompress 1 MiB at a time: memory follows the data, not the header
# Pixels one image may have: the MNIST family's are 28 x 28; an IDX file of 1024 x 1024 images is
# far beyond it, and a header claiming one 16000 x 16000 image (256 MB, 2 GB once statistics
# turn it into floats) is refused before anything is read.
MAX_IMAGE_PIXELS = 1024 * 1024
# What a gzipped file may decompress to: this many times its own size, or FLOOR bytes whatever it
# is. The MNIST family's files decompress 1.8 to 4.9 times (train-images: 9.9 MB to 47 MB); a
# file of zeros, 1,000 times (256 MB from 249 KB).
GZIP_RATIO = 32
GZIP_FLOOR = 16 << 20
_FORMAT = "MNIST family, IDX files"
# Folder names that say which dataset the (unverifiable) files are; checked on the folder and its parent.
_FOLDER_HINTS = (("fashion", "fashion_mnist"), ("kmnist", "kmnist"), ("kuzushiji", "kmnist"), ("mnist", "mnist"))


def idx_files(folder: Path) -> dict[tuple[str, str], Path]:
    """(split, "images" | "labels") -> file, for the IDX files directly in ``folder`` (a
    gzipped file wins over its uncompressed twin: its checksum is known)."""
    found: dict[tuple[str, str], Path] = {}
    for path in sorted(folder.iterdir()):
        match = IDX_FILE.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        key = (_SPLIT[match.group(1)], match.group(2))
        if key not in found or path.suffix == ".gz":
            found[key] = path
    return found


def has_idx_files(folder: Path) -> bool:
    return any(IDX_FILE.fullmatch(p.name) for p in folder.iterdir())


def is_mnist_family(path: Path) -> bool:
    """Whether ``path`` names MNIST-family data (IDX files, a folder of them, torchvision's
    ``raw/``, a ``.npz``), judged by names alone: nothing is read."""
    try:
        if path.is_file():
            return path.suffix == ".npz" or IDX_FILE.fullmatch(path.name) is not None
        return path.is_dir() and (has_idx_files(path) or ((path / "raw").is_dir() and has_idx_files(path / "raw")))
    except OSError:
        return False


def _read_upto(stream: BinaryIO, limit: int) -> bytearray:
    """At most ``limit`` bytes, in chunks: a lying size never becomes one big allocation."""
    data = bytearray()
    while len(data) < limit:
        chunk = stream.read(min(_CHUNK, limit - len(data)))
        if not chunk:
            break
        data += chunk
    return data


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_idx(
    stream: BinaryIO, name: str, ndim: int, file_size: int | None = None, max_body: int | None = None
) -> np.ndarray:
    """The array an IDX stream holds, its header checked first; ``file_size`` (uncompressed
    files) lets a header be checked against the file before any of the data is read, and
    ``max_body`` bounds what a compressed one may claim."""
    head = bytes(_read_upto(stream, 4))
    if len(head) < 4:
        raise SourceError(f"{name}: truncated: {len(head)} bytes, shorter than an IDX header")
    if head[:2] != b"\0\0":
        raise SourceError(
            f"{name}: not an IDX file (magic number {head.hex()}, expected 0000 then type and dimensions)"
        )
    if head[2] != IDX_TYPE_UBYTE:
        raise SourceError(f"{name}: IDX type code 0x{head[2]:02x}; the MNIST family stores unsigned bytes (0x08)")
    if head[3] != ndim:
        what = "images (count, rows, columns)" if ndim == IDX_IMAGE_DIMS else "labels (count)"
        raise SourceError(f"{name}: {head[3]} dimensions; {what} have {ndim}")
    sizes = bytes(_read_upto(stream, 4 * ndim))
    if len(sizes) < 4 * ndim:
        raise SourceError(f"{name}: truncated inside its IDX header")
    dims = struct.unpack(f">{ndim}I", sizes)
    if min(dims) < 1:
        raise SourceError(f"{name}: IDX dimensions {'x'.join(map(str, dims))} hold no data")
    body, header = math.prod(dims), 4 + 4 * ndim
    what = "x".join(map(str, dims[1:])) + " images" if ndim > 1 else "labels"
    claim = f"its header says {dims[0]:,} {what} ({body:,} bytes)"
    if body > MAX_IDX_BYTES:
        raise UnsafeInputError(
            f"{name}: refused: {claim}, more than the {MAX_IDX_BYTES // 2**20} MiB an MNIST-family file can hold"
        )
    if ndim > 1 and math.prod(dims[1:]) > MAX_IMAGE_PIXELS:
        raise UnsafeInputError(
            f"{name}: refused: {claim}; an MNIST-family image has at most {MAX_IMAGE_PIXELS:,} pixels"
        )
    if max_body is not None and body > max_body:
        raise UnsafeInputError(
            f"{name}: refused: {claim}, more than {GZIP_RATIO} times the gzipped file's size "
            "(the MNIST family's files hold at most 5): a decompression bomb?"
        )
    if file_size is not None and file_size != header + body:
        raise _size_error(name, claim, body, file_size - header)
    data = _read_upto(stream, body + 1)
    if len(data) != body:
        raise _size_error(name, claim, body, len(data))
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def _size_error(name: str, claim: str, body: int, held: int) -> SourceError:
    if held < body:
        return SourceError(f"{name}: truncated: {claim} but the file holds {max(held, 0):,}")
    return SourceError(f"{name}: {claim} but the file holds more; not an IDX file of this shape")


def read_idx_file(path: Path, ndim: int) -> tuple[np.ndarray, str | None]:
    """(array, md5 of the file's bytes for a gzipped file, else None)."""
    try:
        size = path.stat().st_size
        if size > MAX_IDX_BYTES:
            raise UnsafeInputError(f"{path}: refused: {size:,} bytes, more than an MNIST-family file can hold")
        if path.suffix != ".gz":
            with open(path, "rb") as fh:
                return parse_idx(fh, str(path), ndim, size), None
        md5 = file_digest(path, "md5")
        with gzip.open(path, "rb") as fh:
            array = parse_idx(fh, str(path), ndim, max_body=max(GZIP_FLOOR, GZIP_RATIO * size))
            if fh.read(1):  # parse_idx stops one byte past the data; this reaches the end and the CRC
                raise SourceError(f"{path}: more data after the IDX array; not an IDX file of this shape")
        return array, md5
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise SourceError(f"{path}: not a valid gzip file or truncated ({exc})") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _check_pair(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if len(images) != len(labels):
        raise SourceError(f"{where}: {len(images):,} images but {len(labels):,} labels")


def _name_hint(*names: str) -> str | None:
    """The dataset a file or folder name points to (fashion-mnist/, KMNIST/raw/, ...), if any."""
    return next(
        (
            dataset
            for part in names
            for word, dataset in _FOLDER_HINTS
            if word in part.lower().replace("-", "").replace("_", "")
        ),
        None,
    )


def _identify(folder: Path, md5s: dict[str, str], verify: bool) -> tuple[str, str, list[str]]:
    """(dataset name, verification line, notes): from the official checksums, else the folder's
    name. Files of one official set beside a modified one are refused unless not ``verify``."""
    matches = {name for name, table in IDX_MD5.items() for file, md5 in md5s.items() if table.get(file) == md5}
    if len(matches) > 1:
        raise SourceError(f"{folder}: its files are from different datasets ({', '.join(sorted(matches))})")
    if matches:
        name = matches.pop()
        unmatched = [f for f, md5 in md5s.items() if IDX_MD5[name].get(f) != md5]
        if not unmatched:
            return name, f"verified: {len(md5s)} files match the official {name} md5s", []
        if verify:
            raise ChecksumError(
                f"{folder / unmatched[0]}: md5 {md5s[unmatched[0]]} is not the official {name} "
                f"file's (the others are); corrupt or modified. Pass {no_verify()} to read it anyway"
            )
        return (
            name,
            f"NOT verified: {', '.join(unmatched)} differ from the official {name} files ({no_verify()})",
            [],
        )
    hint = _name_hint(folder.name, folder.parent.name)
    why = "no file with an official checksum" if md5s else "uncompressed files have no published checksum"
    if hint is not None:
        return hint, f"not verified: {why}; named {hint} after the folder", []
    return (
        "mnist",
        f"not verified: {why}",
        [f"{folder.name}: not recognisable as Fashion-MNIST or KMNIST; read as MNIST digits"],
    )


def class_names_for(name: str, labels: list[np.ndarray], where: str) -> tuple[str, ...]:
    names = MNIST_FAMILY_CLASSES.get(name, MNIST_CLASSES)
    top = max((int(lab.max()) for lab in labels if len(lab)), default=0)
    if top >= len(names):
        raise SourceError(f"{where}: label {top} out of range for {name}'s {len(names)} classes")
    return names


def read_idx_folder(folder: Path, *, verify: bool = True) -> LabelledImages:
    """The splits whose images and labels both are in ``folder`` (t10k alone: a test split only)."""
    files = idx_files(folder)
    splits = [s for s in ("train", "test") if (s, "images") in files or (s, "labels") in files]
    if not splits:
        raise SourceError(f"{folder}: no IDX files (train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz, ...)")
    arrays, md5s = {}, {}
    for split in splits:
        missing = [kind for kind in ("images", "labels") if (split, kind) not in files]
        if missing:
            raise SourceError(f"{folder}: the {split} split has no {missing[0]} file")
        images, images_md5 = read_idx_file(files[split, "images"], IDX_IMAGE_DIMS)
        labels, labels_md5 = read_idx_file(files[split, "labels"], IDX_LABEL_DIMS)
        _check_pair(images, labels, f"{folder} ({split})")
        for kind, md5 in (("images", images_md5), ("labels", labels_md5)):
            if md5 is not None:
                md5s[files[split, kind].name] = md5
        arrays[split] = (images, labels)
    name, verification, notes = _identify(folder, md5s, verify)
    class_names = class_names_for(name, [labels for _, labels in arrays.values()], str(folder))
    batches = {
        split: [Batch(split, images[..., None], labels.astype(np.int64), [files[split, "images"].name] * len(labels))]
        for split, (images, labels) in arrays.items()
    }
    return LabelledImages(
        name=name,
        format=_FORMAT,
        location=folder,
        class_names=class_names,
        batches=batches,
        verification=verification,
        notes=notes,
    )


def _npz_array(archive: zipfile.ZipFile, key: str, ndim: int, path: Path) -> np.ndarray:
    """One array of an ``.npz``, its .npy header checked before its data is read (numpy's own
    reader would allocate whatever the header claims)."""
    where = f"{path}: {key}"
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        raise SourceError(
            f"{path}: no '{key}' array (a Keras MNIST cache holds x_train, y_train, x_test, y_test)"
        ) from None
    if info.file_size > MAX_IDX_BYTES:
        raise UnsafeInputError(f"{where}: refused: {info.file_size:,} bytes, more than an MNIST-family array can hold")
    if info.file_size > max(GZIP_FLOOR, GZIP_RATIO * info.compress_size):
        raise UnsafeInputError(
            f"{where}: refused: {info.file_size:,} bytes from {info.compress_size:,} compressed, "
            f"more than {GZIP_RATIO} times: a decompression bomb?"
        )
    with archive.open(info) as fh:
        try:
            major, _ = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
        except ValueError as exc:
            raise SourceError(f"{where}: not a .npy array ({exc})") from None
        if (
            fortran
            or dtype.kind not in "iu"
            or dtype.hasobject
            or len(shape) != ndim
            or (ndim == 3 and dtype != np.uint8)
        ):
            raise SourceError(
                f"{where}: a {dtype} array of shape {shape}; expected "
                f"{'uint8 (N, rows, cols)' if ndim == 3 else 'integer (N,)'} in C order"
            )
        body = math.prod(shape) * dtype.itemsize
        if body > MAX_IDX_BYTES or (ndim == 3 and math.prod(shape[1:]) > MAX_IMAGE_PIXELS):
            raise UnsafeInputError(f"{where}: refused: its header claims {shape} ({body:,} bytes)")
        data = _read_upto(fh, body + 1)
    if len(data) != body:
        raise SourceError(
            f"{where}: truncated or padded: its header says {shape} ({body:,} bytes), it holds {len(data):,}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def read_keras_npz(path: Path, *, verify: bool = True) -> LabelledImages:
    """Keras's MNIST cache (``~/.keras/datasets/mnist.npz``), or any npz of the same four arrays."""
    try:
        sha = file_digest(path, "sha256")
        with zipfile.ZipFile(path) as archive:
            arrays = {
                split: (_npz_array(archive, f"x_{split}", 3, path), _npz_array(archive, f"y_{split}", 1, path))
                for split in ("train", "test")
            }
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise SourceError(f"{path}: not a valid npz (zip) file or truncated ({exc})") from None
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for split, (images, labels) in arrays.items():
        _check_pair(images, labels, f"{path} ({split})")
        if len(labels) and (int(labels.min()) < 0):
            raise SourceError(f"{path}: negative label in y_{split}")
    if sha == KERAS_MNIST_SHA256:
        name, verification = "mnist", f"verified: sha256 {sha[:16]}... is Keras's {KERAS_MNIST_NPZ}"
    else:
        name = _name_hint(path.stem, path.parent.name) or "mnist"
        verification = f"not verified: sha256 {sha[:16]}... is not Keras's {KERAS_MNIST_NPZ}"
    class_names = class_names_for(name, [labels for _, labels in arrays.values()], str(path))
    batches = {
        split: [Batch(split, images[..., None], labels.astype(np.int64), [path.name] * len(labels))]
        for split, (images, labels) in arrays.items()
    }
    return LabelledImages(
        name=name,
        format="MNIST family, Keras npz cache",
        location=path,
        class_names=class_names,
        batches=batches,
        verification=verification,
    )
