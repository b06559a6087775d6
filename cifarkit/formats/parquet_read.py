"""Reading Parquet exports back (:mod:`.parquet` writes them), as a
:class:`~cifarkit.readers.row_groups.RowGroupReader`.

The files are someone else's input. When the export is opened, every file cifarkit_info.json
lists is checked before any image is read: it stays inside the export, its footer parses (pyarrow's
Thrift limits lowered to what a footer needs), its schema has the columns the export's features
say, its row groups add up to the split's count, hold no more rows than bytes, and no column
chunk cifarkit reads unpacks to more than :data:`MAX_GROUP_BYTES`; its labels are read (a column
of int64s) and range-checked. Each row group's images are then read as the pipeline needs them,
page checksums verified, and each image's PNG or JPEG header checked against
:func:`~cifarkit.sources.image_file.pixel_budget` (and the dataset's image size, where fixed)
before TensorFlow decodes it. The ``image.path`` column is never read: a path from the data is
not opened, whatever it names. The class names come from cifarkit_info.json; the features in
the files' schema metadata are for ``datasets``, and cifarkit does not parse them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import SourceError
from ..metadata.export_info import ExportInfo
from ..sources.image_file import read_image, size_refusal
from ..sources.labelled import paths_inside
from . import parquet_layout as layout
from .record_checks import encoded_size

# What the footer's Thrift fields may take: the features' JSON (ImageNet-21k's class names
# are 0.7 MB) twice, as its own entry and inside the Arrow schema pyarrow stores.
THRIFT_STRING_LIMIT = 16 << 20
THRIFT_CONTAINER_LIMIT = 1_000_000
# A column chunk cifarkit reads is unpacked whole: 4x the 64 MB of images a writer puts in a row group.
MAX_GROUP_BYTES = 256 << 20


@dataclass(frozen=True)
class ParquetFile:
    """One file of a split, its footer read and checked."""

    path: Path
    name: str  # as cifarkit_info.json lists it (the manifest's source column)
    metadata: object = field(repr=False)  # pyarrow's FileMetaData, so reads skip the footer
    groups: tuple[int, ...] = ()  # rows in each row group


@dataclass
class ParquetExport:
    root: Path
    info: ExportInfo
    files: dict[str, list[ParquetFile]]
    labels: dict[str, np.ndarray]  # split -> int64 labels
    coarse: dict[str, np.ndarray]  # split -> int64 coarse labels (CIFAR-100)
    shape: tuple[int, int, int] | None  # every image's, where the dataset fixes it


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return text[:200]


def _pyarrow_errors():
    pa, _ = layout.pyarrow()
    return OSError, pa.ArrowException, ValueError


def _parquet_file(path: Path, metadata=None):
    _, pq = layout.pyarrow()
    return pq.ParquetFile(
        path,
        metadata=metadata,
        pre_buffer=False,  # one column chunk at a time: nothing to coalesce, no I/O threads
        page_checksum_verification=True,
        thrift_string_size_limit=THRIFT_STRING_LIMIT,
        thrift_container_size_limit=THRIFT_CONTAINER_LIMIT,
    )


def _open_file(root: Path, path: Path, name: str, columns: tuple[str, ...]) -> ParquetFile:
    """The file's footer, its schema and row groups checked; one line naming it otherwise."""
    try:
        size = os.stat(path).st_size
        with _parquet_file(path) as handle:
            metadata = handle.metadata
            schema = handle.schema_arrow
    except FileNotFoundError:
        raise SourceError(f"{root}: Parquet file {name} is missing") from None
    except _pyarrow_errors() as exc:
        raise SourceError(f"{path}: not a readable Parquet file ({_first_line(exc)})") from None
    _check_schema(path, schema, columns)
    groups = tuple(metadata.row_group(g).num_rows for g in range(metadata.num_row_groups))
    if metadata.num_rows > size or sum(groups) != metadata.num_rows or min(groups, default=0) < 0:
        raise SourceError(
            f"{path}: its footer lists {metadata.num_rows:,} rows in row groups of {sum(groups):,}, "
            f"in {size:,} bytes; refused"
        )
    wanted = {layout.IMAGE_BYTES, *columns}
    read = [c for c in range(metadata.num_columns) if metadata.schema.column(c).path in wanted]
    for g in range(metadata.num_row_groups):
        for c in read:
            chunk = metadata.row_group(g).column(c)
            if chunk.total_uncompressed_size > MAX_GROUP_BYTES or chunk.total_compressed_size > size:
                raise SourceError(
                    f"{path}: row group {g}'s {chunk.path_in_schema!r} column declares "
                    f"{chunk.total_uncompressed_size:,} bytes ({chunk.total_compressed_size:,} stored), "
                    f"more than cifarkit reads at once ({MAX_GROUP_BYTES:,}) or the file holds; refused"
                )
    return ParquetFile(path, name, metadata, groups)


def _check_schema(path: Path, schema, columns: tuple[str, ...]) -> None:
    """The image column is Hugging Face's Image struct with binary bytes; labels are integers."""
    pa, _ = layout.pyarrow()
    index = schema.get_field_index(layout.IMAGE)  # -1 for a column missing, or named twice
    image = schema.field(index).type if index >= 0 else None
    inner = image.get_field_index(layout.BYTES) if image is not None and pa.types.is_struct(image) else -1
    if inner < 0 or not (
        pa.types.is_binary(image.field(inner).type) or pa.types.is_large_binary(image.field(inner).type)
    ):
        raise SourceError(
            f"{path}: has no 'image' column of Hugging Face's Image struct (bytes, path): {str(image)[:80]}"
        )
    for column in columns:
        index = schema.get_field_index(column)
        kind = schema.field(index).type if index >= 0 else None
        if kind is None or not pa.types.is_integer(kind):
            raise SourceError(f"{path}: its {column!r} column is not one column of integers ({str(kind)[:40]})")


def _labels(file: ParquetFile, column: str, classes: int) -> np.ndarray:
    """A file's labels of ``column``, each checked to be a class number."""
    try:
        with _parquet_file(file.path, file.metadata) as handle:
            values = handle.read(columns=[column], use_threads=False).column(0)
    except _pyarrow_errors() as exc:
        raise SourceError(f"{file.path}: its {column!r} column cannot be read ({_first_line(exc)})") from None
    if values.null_count:
        row = int(np.flatnonzero(np.asarray(values.is_null()))[0])
        raise SourceError(f"{file.path}: row {row} has no {column!r}")
    numbers = values.to_numpy()
    bad = np.flatnonzero((numbers < 0) | (numbers >= classes))
    if len(bad):
        raise SourceError(
            f"{file.path}: row {bad[0]}: its {column!r} {numbers[bad[0]]} is out of range for the "
            f"dataset's {classes} classes"
        )
    return numbers.astype(np.int64)


def describe(root: Path, info: ExportInfo) -> ParquetExport:
    """The export at ``root``, every file and label checked (the images are checked as they are read)."""
    from ..readers.reader import FIXED_SHAPES

    coarse_names = info.coarse_class_names
    columns = (layout.LABEL, layout.COARSE) if coarse_names else (layout.LABEL,)
    files, labels, coarse = {}, {}, {}
    for split, entry in info.splits.items():
        if not entry.files:
            raise SourceError(f"{info.path}: lists no Parquet files for split {split!r}")
        paths = paths_inside(root, entry.files, info.path)
        files[split] = [_open_file(root, p, n, columns) for p, n in zip(paths, entry.files)]
        held = sum(sum(f.groups) for f in files[split])
        if held != entry.count:
            raise SourceError(
                f"{root}: the {split} split's Parquet files hold {held:,} rows; "
                f"cifarkit_info.json lists {entry.count:,}"
            )
        labels[split] = _concat([_labels(f, layout.LABEL, len(info.class_names)) for f in files[split]])
        if coarse_names:
            coarse[split] = _concat([_labels(f, layout.COARSE, len(coarse_names)) for f in files[split]])
    return ParquetExport(root, info, files, labels, coarse, FIXED_SHAPES.get(info.name))


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros((0,), np.int64)


def read_images(file: ParquetFile, group: int, rows, shape) -> list[bytes]:
    """The encoded images of ``rows`` (all where None) of row group ``group``, each a PNG or JPEG
    whose header is within the pixel budget (and of ``shape``'s size, where given)."""
    try:
        with _parquet_file(file.path, file.metadata) as handle:
            column = handle.read_row_group(group, columns=[layout.IMAGE_BYTES], use_threads=False).column(0)
    except _pyarrow_errors() as exc:
        raise SourceError(f"{file.path}: row group {group} cannot be read ({_first_line(exc)})") from None
    values = column.to_pylist()
    if len(values) != file.groups[group]:
        raise SourceError(f"{file.path}: row group {group} holds {len(values):,} rows, not {file.groups[group]:,}")
    first = sum(file.groups[:group])
    picked = range(len(values)) if rows is None else (int(r) for r in rows)
    images = []
    for row in picked:
        value = values[row]
        data = value.get(layout.BYTES) if value is not None else None
        problem = "it has no image bytes (its 'path' is not opened)" if data is None else _problem(data, shape)
        if problem is not None:
            raise SourceError(f"{file.path}: row {first + row}: {problem}")
        images.append(data)
    return images


def _problem(data: bytes, shape) -> str | None:
    size = encoded_size(data)
    if size is None:
        return f"its image is not a PNG or JPEG whose header gives its size (it starts {bytes(data[:8])!r})"
    refusal = size_refusal(*size, len(data))
    if refusal is not None:
        return refusal
    width, height = size
    if shape is not None and (height, width) != tuple(shape[:2]):
        return f"its image is {height}x{width}; the dataset's images are {shape[0]}x{shape[1]}"
    return None


def explain(file: ParquetFile, group: int, rows, offset: int, shape) -> None:
    """Raise what is wrong with the ``offset``-th of ``rows`` of the group, where the pipeline
    failed: a read or a header that fails names its own row; else the image does not decode."""
    data = read_images(file, group, rows, shape)[offset]
    row = offset if rows is None else int(rows[offset])
    where = Path(f"{file.path} row {sum(file.groups[:group]) + row}")
    read_image(where, data)  # Pillow's reason, with its name
    raise SourceError(f"{where}: cannot decode image (TensorFlow's decoder refuses it)")


def open_parquet(root: Path, info: ExportInfo):
    """A :class:`~cifarkit.readers.row_groups.RowGroupReader` over the export at ``root``."""
    return reader_for(describe(root, info))


def reader_for(export: ParquetExport):
    from ..readers.row_groups import RowGroupReader, Span

    shape = export.shape
    spans = {
        split: [Span(f, g, n) for f in files for g, n in enumerate(f.groups) if n]
        for split, files in export.files.items()
    }
    labels = {split: values.astype(np.int32) for split, values in export.labels.items()}
    extras = {split: {"coarse_label": values} for split, values in export.coarse.items()}
    return RowGroupReader(
        export.info.name or export.root.name,
        export.root,
        export.info.class_names,
        {split: len(values) for split, values in labels.items()},
        shape,
        extras=extras,
        coarse_class_names=export.info.coarse_class_names,
        spans=spans,
        labels=labels,
        read_span=lambda span: read_images(span.source, span.group, span.rows, shape),
        explain=lambda span, offset: explain(span.source, span.group, span.rows, offset, shape),
    )
