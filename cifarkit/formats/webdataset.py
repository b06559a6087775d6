"""WebDataset tar shards: ``OUT/<split>/<name>-<split>-000000.tar`` ..., each with NVIDIA DALI's
index beside it (``<name>-<split>-000000.idx``).

A sample is three members with one key, the id TFDS's builders give an image (``train_00042``):
``KEY.png`` (or ``KEY.jpg``), ``KEY.cls`` (the label as decimal text) and ``KEY.json`` (the id,
the label and its class name, and for CIFAR-100 the coarse label and its name). The shard numbers
have six digits from 000000, so the brace pattern WebDataset's readers expand
(``train/cifar10-train-{000000..000009}.tar``) names a split's shards; cifarkit_info.json records
it per split and the export prints it. The webdataset library, Hugging Face's
``load_dataset("webdataset", ...)`` and DALI's ``fn.readers.webdataset`` read the shards as they
are; the index (:func:`dali_index`, DALI's ``tools/wds2idx.py`` layout) spares DALI its scan.

Every image of an export has one extension, so that Hugging Face finds one image column and DALI
one ``ext``: under ``--encoding auto`` a photo tree whose files are all JPEGs keeps their bytes as
``.jpg``; anything else is ``.png`` (a PNG file's own bytes where it can be kept, the others
decoded and encoded losslessly). Keys carry the split name, so a split's name must be letters,
digits, ``_`` or ``-``: WebDataset splits a key at its first dot, DALI's index at spaces.

Each shard is written whole by one worker under a temporary name and renamed, its index after it;
a re-run skips the shards whose tar and index both exist. Members are written with fixed headers
(:mod:`.codecs.tar`), so a re-run writes the same bytes. Reading: :mod:`.webdataset_read`.
"""

from __future__ import annotations

import json
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SourceError, UsageError
from ..metadata.export_state import ExportState
from ..sources.image_file import read_image
from ..sources.labelled import LazyImages
from ..writers.atomic import is_partial, open_atomic
from . import sharding, tfds_info
from .base import DEFAULT_QUALITY, FormatAdapter, Owns, Piece, WriteOptions, index_width
from .codecs import encode_image, encode_images, png
from .codecs.tar import archive_end, member_header, padding
from .parallel import run_tasks
from .photos import PASSTHROUGH

IMAGES_PER_SHARD = 5000  # default shard size, as TFRecord's: CIFAR-10's train split is {000000..000009}
ENCODINGS = ("auto", "png", "jpeg")  # --encoding for this format, in --help's order
INDEX_VERSION = "v1.2"  # DALI's tools/wds2idx.py: "<ext> <offset> <size> <name>" per member
SHARD_DIGITS = 6
SPLIT_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a split name that can start a key
MAX_NAME_PART = 64  # characters of the dataset's name in shard file names


def file_prefix(dataset: str) -> str:
    """The dataset's part of a shard's file name: TFDS's form of its name, ASCII, at most 64 characters."""
    return re.sub(r"[^A-Za-z0-9_]", "_", tfds_info.tfds_name(dataset))[:MAX_NAME_PART]


def shard_stem(prefix: str, split: str, index: int) -> str:
    return f"{split}/{prefix}-{split}-{index:0{SHARD_DIGITS}d}"


def brace_pattern(prefix: str, split: str, shards: int) -> str:
    """The split's shards as WebDataset's readers name them: ``train/x-train-{000000..000009}.tar``."""
    last = f"{shards - 1:0{SHARD_DIGITS}d}"
    return f"{split}/{prefix}-{split}-{{{0:0{SHARD_DIGITS}d}..{last}}}.tar"


def check_split_name(split: str, where: object) -> str:
    if not SPLIT_KEY.fullmatch(split):
        raise SourceError(
            f"{where}: the split name {split!r} cannot start a WebDataset key (letters, digits, _ and - only, "
            "at most 64: WebDataset splits a key at its first dot and DALI's index at spaces); "
            "export it with --format tfrecord or png"
        )
    return split


@dataclass(frozen=True)
class Shard(Piece):
    """One tar shard: images ``start:stop`` of the split, in order."""

    index: int = 0
    prefix: str = ""
    ext: str = "png"  # the image members' extension, one for the whole export

    @property
    def tar_name(self) -> str:
        return shard_stem(self.prefix, self.split, self.index) + ".tar"

    @property
    def index_name(self) -> str:
        return shard_stem(self.prefix, self.split, self.index) + ".idx"

    def manifest_paths(self) -> list[str]:
        return [self.tar_name] * (self.stop - self.start)


def image_extension(dataset, splits, encoding: str) -> str:
    """The one image extension of an export (see the module's notes). Under ``auto`` the files
    of a photo tree are opened (headers only) until one is not a JPEG kept as it is."""
    if encoding != "auto":
        return "jpg" if encoding == "jpeg" else "png"
    from PIL import Image

    batches = [b for s in splits for b in dataset.batches[s]]
    if not batches or not all(isinstance(b.images, LazyImages) for b in batches):
        return "png"  # arrays are written as PNG
    for path in (p for b in batches for p in b.images.paths):
        try:
            with Image.open(path) as image:
                if image.format != "JPEG" or image.mode not in PASSTHROUGH["JPEG"]:
                    return "png"
        except Exception:  # checked before (formats.photos): decoded and written as PNG
            return "png"
    return "jpg"


def _own_bytes(path, ext: str) -> bytes | None:
    """A JPEG or PNG file's bytes where they can be written as they are with extension ``ext``."""
    from .photos import stored_bytes

    stored = stored_bytes(path)
    if stored is None:
        return None
    kind = "png" if stored[0][:8] == b"\x89PNG\r\n\x1a\n" else "jpg"
    return stored[0] if kind == ext else None


def image_payloads(images, ext: str, encoding: str, quality: int):
    """The encoded image of each sample: arrays encoded in one pass; image files kept as they are
    under ``auto`` where their kind is the export's, decoded and encoded otherwise."""
    if isinstance(images, LazyImages):
        for path in images.paths:
            own = _own_bytes(path, ext) if encoding == "auto" else None
            yield own if own is not None else encode_image(read_image(path), ext, quality)
        return
    if isinstance(images, list):  # arrays of mixed sizes (a re-exported photo tree)
        yield from (encode_image(image, ext, quality) for image in images)
        return
    yield from encode_images(images, ext, quality)


def sample_json(key: str, label: int, dataset, coarse: int | None) -> bytes:
    """``KEY.json``: the id, the label and its class name (and the coarse ones), fixed key order."""
    record = {"id": key, "label": label, "class_name": dataset.class_names[label]}
    if coarse is not None:
        record["coarse_label"] = coarse
        record["coarse_class_name"] = dataset.coarse_class_names[coarse]
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode()


def write_shard(dataset, shard: Shard, out: str, width: int, encoding: str, quality: int) -> tuple[int, int]:
    """Worker: one tar shard and its DALI index, each atomically; skipped where both exist.
    Returns (written, skipped) image counts."""
    tar, idx = Path(out) / shard.tar_name, Path(out) / shard.index_name
    n = shard.stop - shard.start
    if tar.is_file() and idx.is_file():
        return 0, n
    part = dataset.take(shard.split, shard.start, shard.stop)
    labels = np.asarray(part.labels).tolist()
    coarse = None if part.coarse_labels is None else np.asarray(part.coarse_labels).tolist()
    lines, written = [], 0
    with open_atomic(tar) as handle:
        payloads = image_payloads(part.images, shard.ext, encoding, quality)
        for i, image in enumerate(payloads):
            key = f"{shard.split}_{shard.start + i:0{width}d}"
            c = None if coarse is None else coarse[i]
            members = (
                (shard.ext, image),
                ("cls", str(labels[i]).encode()),
                ("json", sample_json(key, labels[i], dataset, c)),
            )
            chunks, line = [], []
            for ext, data in members:
                name = f"{key}.{ext}"
                chunks += [member_header(name, len(data)), data, padding(len(data))]
                line.append(f"{ext} {written + len(chunks[-3])} {len(data)} {name}")
                written += len(chunks[-3]) + len(data) + len(chunks[-1])
            handle.write(b"".join(chunks))
            lines.append(" ".join(line))
        handle.write(archive_end(written))
    with open_atomic(idx) as handle:
        handle.write(dali_index(lines))
    return n, 0


def dali_index(lines: list[str]) -> bytes:
    """DALI's index of a shard: ``v1.2 <samples>``, then per sample each member's extension, data
    offset, size and name (DALI's tools/wds2idx.py, read by fn.readers.webdataset's index_paths)."""
    return "".join(f"{line}\n" for line in [f"{INDEX_VERSION} {len(lines)}", *lines]).encode("ascii")


def _encoded_sizes(encoding: str, quality: int):
    """The bytes of each image as a shard stores it, for :mod:`.sharding`'s estimate (an image
    file under ``auto`` is its own size, and arrays are PNGs)."""
    ext = "jpg" if encoding == "jpeg" else "png"

    def sizes(images) -> list[int]:
        return [len(payload) for payload in image_payloads(images, ext, encoding, quality)]

    return sizes


SAMPLE_OVERHEAD = 2800  # three members' 512-byte headers and their padding, the .cls and .json bytes


class WebDataset(FormatAdapter):
    """``--format webdataset``: tar shards of ``KEY.png|jpg``, ``KEY.cls`` and ``KEY.json`` per
    image, with a DALI index beside each."""

    name = "webdataset"
    options = ("shards", "shard_size", "encoding", "quality")
    _plans = sharding.ShardPlans(IMAGES_PER_SHARD, _encoded_sizes, SAMPLE_OVERHEAD, capped=False)

    def __init__(self) -> None:
        self._decided: tuple = ()  # (weak reference to the dataset, encoding, extension)

    def check_options(self, options: WriteOptions) -> None:
        if options.encoding not in ENCODINGS:
            raise UsageError(
                f"--format webdataset writes image files (--encoding {', '.join(ENCODINGS)}). "
                f"Received: encoding={options.encoding!r}"
            )
        if options.quality != DEFAULT_QUALITY and options.encoding != "jpeg":
            raise UsageError(
                f"--quality is for JPEG images (--encoding jpeg); --encoding {options.encoding} does "
                f"not use it. Received: quality={options.quality}"
            )

    def extension(self, dataset, splits, options: WriteOptions) -> str:
        """:func:`image_extension`, decided once per export (the headers of a photo tree are read once)."""
        ref, encoding, ext = self._decided or (None, None, None)
        if ref is None or ref() is not dataset or encoding != options.encoding:
            ext = image_extension(dataset, splits, options.encoding)
            self._decided = (weakref.ref(dataset), options.encoding, ext)
        return ext

    def fingerprint(self, dataset, splits, options: WriteOptions) -> dict:
        for split in splits:
            check_split_name(split, dataset.location)
        fp: dict = {"encoding": options.encoding, "image": self.extension(dataset, splits, options)}
        if options.encoding == "jpeg":
            fp["quality"] = options.quality
        if fp["image"] == "png":
            fp["png_deflate"] = png.COMPRESSOR
        fp.update(self._plans.fingerprint(dataset, splits, options))  # shards; their size and bounds if by bytes
        fp["members"] = "image cls json, ustar, DALI index v1.2"
        return fp

    def plan(self, dataset, split: str, options: WriteOptions) -> list[Shard]:
        bounds = self._plans.get(dataset, split, options).bounds  # --shard-size: even in bytes
        ext = self.extension(dataset, (split,), options)
        prefix = file_prefix(dataset.name)
        return [Shard(split, start, stop, i, prefix, ext) for i, (start, stop) in enumerate(bounds)]

    def write_split(self, dataset, split: str, out: Path, pieces: list[Shard], options: WriteOptions, progress) -> int:
        (out / check_split_name(split, dataset.location)).mkdir(exist_ok=True)
        width = index_width(dataset.count(split))
        tasks = [(shard, str(out), width, options.encoding, options.quality) for shard in pieces]
        skipped = 0
        for written, already in run_tasks(write_shard, tasks, options.workers, shared=dataset):
            progress.update(written + already)
            skipped += already
        return skipped

    def describe_split(self, pieces: list[Shard]) -> dict:
        first = pieces[0]
        return {
            "shards": len(pieces),
            "files": [shard.tar_name for shard in pieces],
            "indexes": [shard.index_name for shard in pieces],
            "shard_lengths": [shard.stop - shard.start for shard in pieces],
            "pattern": brace_pattern(first.prefix, first.split, len(pieces)),
        }

    def describe(self, dataset, options: WriteOptions) -> dict:
        batches = [b for bs in dataset.batches.values() for b in bs if len(b)]
        shapes = {b.images.shape[1:] for b in batches if isinstance(b.images, np.ndarray)}
        arrays = all(isinstance(b.images, np.ndarray) for b in batches)
        shape = list(shapes.pop()) if arrays and len(shapes) == 1 else None
        ext = self.extension(dataset, tuple(dataset.batches), options)
        members = [ext, "cls", "json"]
        return {"encoding": options.encoding, "webdataset": {"members": members, "image_shape": shape}}

    def owns(self, state: ExportState) -> Owns:
        """``<split>/`` for each split the state counts, holding its shards and their indexes
        (the shard count the state records) and temporary files."""
        shards = state.shards or {}
        prefix = re.escape(file_prefix(state.dataset))

        def owns(path: str, is_dir: bool) -> bool:
            parts = path.split("/")
            if parts[0] not in state.counts:
                return False
            if is_dir:
                return len(parts) == 1
            split = re.escape(parts[0])
            found = len(parts) == 2 and re.fullmatch(rf"{prefix}-{split}-([0-9]{{6}})\.(tar|idx)", parts[1])
            if not found:
                return len(parts) == 2 and is_partial(parts[1])
            return int(found.group(1)) < shards.get(parts[0], 0)

        return owns

    def usage(self, out: Path) -> list[str]:
        from .webdataset_read import split_patterns

        patterns = split_patterns(out)
        width = max((len(split) for split in patterns), default=0)
        lines = ["WebDataset shards (wds.WebDataset(URL); DALI's index is beside each shard):"]
        return lines + [f"  {split + ':':<{width + 1}} {out / pattern}" for split, pattern in patterns.items()]

    def open(self, root: Path, info, *, verify: bool = True):
        from .webdataset_read import open_webdataset

        return open_webdataset(root, info)
