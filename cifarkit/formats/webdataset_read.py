"""Reading WebDataset exports back: cifarkit's own tar shards (:mod:`.webdataset`), sample by sample.

The shards are walked member by member (:class:`.codecs.tar.TarWalk`: checksums, regular files
only, plain names, sizes that fit the file) and each sample must be exactly what the writer
writes: ``KEY.<image>``, ``KEY.cls``, ``KEY.json`` in that order, the key being the next id of
the split (``train_00042``). Before anything is decoded each member's size is held to a cap, the
label in ``.cls`` (decimal digits only) to the class count, ``.json`` to its model and to the
``.cls`` beside it, and the image header to the pixel budget (and the split's images together
to the split's: :func:`~cifarkit.sources.image_file.split_pixel_budget`). Memory holds one
sample at a time; a selection that starts late skips whole shards by their recorded lengths,
and images outside it are never read. Errors are one line naming the shard and the member.

The pipeline is a Python generator in tf.data (:class:`cifarkit.readers.streams.StreamReader`);
``info`` and ``export`` read the same stream into arrays without TensorFlow
(:func:`read_webdataset_folder`, the ``webdataset`` source family).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pydantic

from ..errors import CifarkitError, SourceError
from ..metadata.export_info import CIFARKIT_INFO, ExportInfo, read_export_info
from ..metadata.fields import MAX_SHARDS, MAX_SPLITS, OwnCount, SplitName, Text
from ..metadata.files import read_model
from ..metadata.jsonfile import Strict, parse_json
from ..sources.image_file import read_image, size_refusal, split_pixel_budget
from ..sources.labelled import Batch, LabelledImages, paths_inside
from .base import index_width
from .codecs.tar import Member, TarWalk
from .record_checks import encoded_size

FORMAT = "webdataset"
# What a member may hold, checked before it is read: an image up to 256 MB (a 100-megapixel
# photo, the most the pixel budget admits, is a few tens of MB as JPEG or PNG); a label of at
# most 9 digits; a sample's JSON, which cifarkit writes in under 1 KB.
MAX_IMAGE_BYTES = 256 << 20
MAX_CLS_BYTES = 9
MAX_JSON_BYTES = 64 << 10
_SIGNATURES = {"png": b"\x89PNG\r\n\x1a\n", "jpg": b"\xff\xd8"}

Side = Annotated[int, pydantic.Field(ge=1, le=1_000_000)]


class SplitShards(Strict):
    count: OwnCount
    files: Annotated[tuple[Text, ...], pydantic.Field(min_length=1, max_length=MAX_SHARDS)]
    shard_lengths: Annotated[tuple[OwnCount, ...], pydantic.Field(max_length=MAX_SHARDS)] | None = None
    pattern: Text = ""


class Layout(Strict):
    members: tuple[Literal["png", "jpg"], Literal["cls"], Literal["json"]]
    image_shape: tuple[Side, Side, Literal[1, 3]] | None = None


class WebDatasetInfo(Strict):
    """The fields of cifarkit_info.json this format adds to what every export records."""

    splits: Annotated[dict[SplitName, SplitShards], pydantic.Field(min_length=1, max_length=MAX_SPLITS)]
    webdataset: Layout


class SampleJson(Strict):
    """``KEY.json``, as :func:`.webdataset.sample_json` writes it."""

    id: Text
    label: Annotated[int, pydantic.Field(ge=0)]
    class_name: Text
    coarse_label: Annotated[int, pydantic.Field(ge=0)] | None = None
    coarse_class_name: Text | None = None


@dataclass
class Shards:
    """A WebDataset export, checked: which shards each split is, and what a sample must hold."""

    root: Path
    name: str
    class_names: tuple[str, ...]
    coarse_class_names: tuple[str, ...] | None
    counts: dict[str, int]
    files: dict[str, list[str]]  # split -> shard paths in order, each inside root
    lengths: dict[str, list[int]]  # split -> samples in each shard, where the lengths add up
    ext: str  # the image members' extension
    shape: tuple[int, int, int] | None  # every image's, where the export's images share one


def describe(root: Path, info: ExportInfo) -> Shards:
    """The shards ``cifarkit_info.json`` lists (each inside ``root``) and what they hold."""
    own = read_model(root, CIFARKIT_INFO, WebDatasetInfo)
    files, lengths = {}, {}
    for split, entry in own.splits.items():
        files[split] = [str(p) for p in paths_inside(root, entry.files, info.path)]
        if entry.shard_lengths and len(entry.shard_lengths) == len(files[split]):
            if sum(entry.shard_lengths) == entry.count:
                lengths[split] = list(entry.shard_lengths)
    shape = own.webdataset.image_shape
    return Shards(
        root,
        info.name or root.name,
        info.class_names,
        info.coarse_class_names,
        {split: entry.count for split, entry in own.splits.items()},
        files,
        lengths,
        own.webdataset.members[0],
        tuple(shape) if shape is not None else None,
    )


@dataclass
class Sample:
    key: str
    label: int
    coarse: int | None
    image: Member


def _refuse(walk: TarWalk, member: Member | None, why: str) -> SourceError:
    at = f"member {member.name!r}" if member is not None else "its end"
    return SourceError(f"{walk.path}: {at} {why}; refused")


def _expect(walk: TarWalk, member: Member | None, name: str, cap: int) -> Member:
    """``member`` if it is named ``name`` and within ``cap`` bytes."""
    if member is None:
        raise SourceError(f"{walk.path}: ends before member {name!r} (truncated?); refused")
    if member.name != name:
        if member.name.count(".") > 1:
            why = "has a key with a dot (WebDataset takes a key up to its first dot)"
        else:
            why = f"where {name!r} was expected (not a sample cifarkit wrote, or out of order)"
        raise _refuse(walk, member, why)
    if member.size > cap:
        raise _refuse(walk, member, f"declares {member.size:,} bytes, more than the {cap:,} such a member may hold")
    return member


def _label(walk: TarWalk, member: Member, classes: int) -> int:
    text = walk.read(member)
    if not re.fullmatch(rb"0|[1-9][0-9]*", text):
        raise _refuse(walk, member, f"holds {text[:20]!r}, not a label in decimal digits")
    label = int(text)
    if label >= classes:
        raise _refuse(walk, member, f"holds label {label}, but the export has {classes} classes")
    return label


def _checked_json(walk: TarWalk, member: Member, shards: Shards, key: str, label: int) -> int | None:
    """The sample's coarse label (None without superclasses), once its JSON agrees with the rest."""
    record = parse_json(walk.read(member), SampleJson, f"{walk.path}: member {member.name!r}")
    coarse_names = shards.coarse_class_names
    problem = None
    if record.id != key or record.label != label or record.class_name != shards.class_names[label]:
        problem = f"does not agree with its key {key!r} and label {label} ({shards.class_names[label]!r})"
    elif (record.coarse_label is None) != (coarse_names is None):
        problem = "has a coarse label where the export has no superclasses, or none where it has"
    elif record.coarse_label is not None and (
        record.coarse_label >= len(coarse_names) or record.coarse_class_name != coarse_names[record.coarse_label]
    ):
        problem = f"has coarse label {record.coarse_label}, not one of the export's {len(coarse_names)} superclasses"
    if problem is not None:
        raise _refuse(walk, member, problem)
    return record.coarse_label


def shard_samples(walk: TarWalk, shards: Shards, split: str, first: int, width: int) -> Iterator[Sample]:
    """The samples of one shard, its first being sample ``first`` of ``split``; images unread."""
    members = iter(walk)
    index = first
    for member in members:
        key = f"{split}_{index:0{width}d}"
        image = _expect(walk, member, f"{key}.{shards.ext}", MAX_IMAGE_BYTES)
        label = _label(walk, _expect(walk, next(members, None), f"{key}.cls", MAX_CLS_BYTES), len(shards.class_names))
        meta = _expect(walk, next(members, None), f"{key}.json", MAX_JSON_BYTES)
        yield Sample(key, label, _checked_json(walk, meta, shards, key, label), image)
        index += 1


def _header_pixels(walk: TarWalk, member: Member, data: bytes, shards: Shards) -> int:
    """The pixels an image's header declares, once it is the export's kind, within the pixel
    budget and (where the export's images share one) of the export's size."""
    size = encoded_size(data) if data.startswith(_SIGNATURES[shards.ext]) else None
    if size is None:
        raise _refuse(walk, member, f"is not a {shards.ext.upper()} whose header gives its size")
    refusal = size_refusal(*size, len(data))
    if refusal is not None:
        raise _refuse(walk, member, f"holds an {refusal}")
    width, height = size
    if shards.shape is not None and (height, width) != shards.shape[:2]:
        raise _refuse(
            walk, member, f"holds a {height}x{width} image; the export's are {shards.shape[0]}x{shards.shape[1]}"
        )
    return width * height


def decode_image(walk: TarWalk, sample: Sample, shards: Shards) -> tuple[np.ndarray, int]:
    """The sample's image and its pixels, its header checked before it is decoded."""
    member = sample.image
    data = walk.read(member)
    pixels = _header_pixels(walk, member, data, shards)
    image = read_image(Path(f"{walk.path}: member {member.name}"), data)
    if shards.shape is not None:
        image = image[..., : shards.shape[2]]
        if image.shape != shards.shape:
            raise _refuse(walk, member, f"holds a {image.shape} image; the export's are {shards.shape}")
    return image, pixels


def _walk(shards: Shards, split: str, start: int, stop: int) -> Iterator[tuple[TarWalk, Sample, bool]]:
    """(shard, sample, whether it is in ``start:stop``) for the samples of ``split`` read to reach
    the end of the range; reading to the split's end checks that it holds as many samples as the
    export lists, and each shard its recorded length. Shards wholly before ``start`` are not read."""
    count = shards.counts[split]
    files, lengths = shards.files[split], shards.lengths.get(split)
    width, index = index_width(count), 0
    for n, path in enumerate(files):
        if index >= stop and stop < count:
            return
        if lengths and index + lengths[n] <= start:
            index += lengths[n]
            continue
        first = index
        with TarWalk(path) as walk:
            for sample in shard_samples(walk, shards, split, index, width):
                if index >= count:
                    raise _refuse(walk, sample.image, f"is beyond the {count:,} samples the export lists for {split!r}")
                yield walk, sample, start <= index < stop
                index += 1
                if index >= stop and stop < count:
                    return
            if lengths and index - first != lengths[n]:
                raise SourceError(f"{path}: holds {index - first:,} samples where the export lists {lengths[n]:,}")
    if index != count:
        raise SourceError(f"{shards.root}: split {split!r} holds {index:,} samples where the export lists {count:,}")


def samples(shards: Shards, split: str, with_coarse: bool = False, start: int = 0, stop: int | None = None):
    """(uint8 image, label[, coarse label]) of samples ``start:stop`` of ``split`` in order (the
    whole split by default); only those are decoded, the split's together within its pixel budget."""
    stop = shards.counts[split] if stop is None else min(stop, shards.counts[split])
    budget, pixels = split_pixel_budget(sum(_size(path) for path in shards.files[split])), 0
    for walk, sample, wanted in _walk(shards, split, start, stop):
        if wanted:
            image, more = decode_image(walk, sample, shards)
            pixels += more
            if pixels > budget:
                raise _refuse(walk, sample.image, "takes the split past the pixels its shards' size allows")
            yield (image, sample.label, sample.coarse) if with_coarse else (image, sample.label)


def check_split(shards: Shards, split: str) -> None:
    """Every sample of ``split`` checked as :func:`samples` checks it, images by their headers
    only: run before a pipeline is built, so that TensorFlow meets only samples cifarkit checked."""
    count = shards.counts[split]
    budget, pixels = split_pixel_budget(sum(_size(path) for path in shards.files[split])), 0
    for walk, sample, _ in _walk(shards, split, 0, count):
        pixels += _header_pixels(walk, sample.image, walk.read(sample.image), shards)
        if pixels > budget:
            raise _refuse(walk, sample.image, "takes the split past the pixels its shards' size allows")


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as exc:
        raise SourceError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def open_webdataset(root: Path, info: ExportInfo):
    """A :class:`~cifarkit.readers.reader.DataReader` over a WebDataset export's shards."""
    from ..readers.streams import StreamReader

    shards = describe(root, info)
    checked: set[str] = set()

    def check(split: str) -> None:
        if split not in checked:
            check_split(shards, split)
            checked.add(split)

    def stream(split: str, with_coarse: bool, start: int, stop: int):
        try:
            yield from samples(shards, split, with_coarse, start, stop)
        except CifarkitError as exc:  # raised inside tf.data: the CLI finds "SourceError: <line>" in its message
            raise SourceError(str(exc)) from None

    return StreamReader(
        shards.name,
        root,
        shards.class_names,
        dict(shards.counts),
        shards.shape,
        coarse_class_names=shards.coarse_class_names,
        stream=stream,
        check_split=check,
        channels=shards.shape[2] if shards.shape else 3,
        coarse=shards.coarse_class_names is not None,
        files=shards.files,
    )


def find_webdataset(path: Path) -> ExportInfo | None:
    """The cifarkit_info.json of a WebDataset export at ``path``; None for anything else."""
    info = read_export_info(path) if path.is_dir() else None
    return info if info is not None and info.format == FORMAT else None


def read_webdataset_folder(path: Path) -> LabelledImages:
    """A WebDataset export read whole into arrays (``info``, and ``export`` from it)."""
    info = find_webdataset(path)
    if info is None:
        raise SourceError(f"{path}: no WebDataset export found (no cifarkit_info.json naming the format)")
    shards = describe(path, info)
    batches = {}
    for split in shards.counts:
        images, labels, coarse = [], [], []
        for element in samples(shards, split, with_coarse=True):
            images.append(element[0])
            labels.append(element[1])
            coarse.append(element[2])
        shapes = {image.shape for image in images}
        stacked = np.stack(images) if len(shapes) == 1 else images  # mixed sizes: a list of arrays
        if not images:
            stacked = np.zeros((0, *(shards.shape or (32, 32, 3))), np.uint8)
        source = _pattern(shards, split)
        held = np.asarray(coarse, np.int64) if shards.coarse_class_names is not None else None
        batches[split] = [Batch(split, stacked, np.asarray(labels, np.int64), [source] * len(labels), held)]
    return LabelledImages(
        name=shards.name,
        format="cifarkit WebDataset export",
        location=path,
        class_names=shards.class_names,
        batches=batches,
        coarse_class_names=shards.coarse_class_names,
        verification="not applicable (tar checksums and every sample checked on read)",
    )


def _pattern(shards: Shards, split: str) -> str:
    files = shards.files[split]
    return Path(files[0]).name if len(files) == 1 else f"{Path(files[0]).name[: -len('000000.tar')]}*.tar"


def split_patterns(root: Path) -> dict[str, str]:
    """Each split's brace pattern, as cifarkit_info.json records it."""
    own = read_model(root, CIFARKIT_INFO, WebDatasetInfo)
    return {} if own is None else {split: entry.pattern for split, entry in own.splits.items()}
