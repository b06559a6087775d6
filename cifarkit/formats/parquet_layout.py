"""What a Parquet export holds, shared by its writer (:mod:`.parquet`) and reader (:mod:`.parquet_read`).

Hugging Face's layout, as ``datasets`` writes and the Hub lists it: per split, files
``data/<split>-NNNNN-of-NNNNN.parquet`` (the pattern ``datasets.data_files.SPLIT_PATTERN_SHARDED``
that both ``load_dataset("parquet", data_dir=OUT)`` and ``load_dataset(OUT)`` look for first), and
columns

- ``image``: Hugging Face's ``Image`` struct, ``{bytes: binary, path: string}``; ``bytes`` is the
  encoded PNG or JPEG, ``path`` is left null (``datasets`` opens ``path`` only where ``bytes`` is
  null; cifarkit never opens it);
- ``label`` (and ``coarse_label`` for CIFAR-100): int64, a ``ClassLabel``;
- ``id``: ``train_00042``, as TFDS's CIFAR builders and cifarkit's TFRecord exports name images.

The features ``datasets`` returns are in the Arrow schema's metadata under ``huggingface``
(``{"info": {"features": {...}}}``, as ``datasets.arrow_writer`` writes them), so ``load_dataset``
gives ``Image()`` and ``ClassLabel(names=...)`` without guessing.
"""

from __future__ import annotations

import json

from ..errors import UsageError

EXTRA = "pip install 'cifarkit[parquet]'"
IMAGE, BYTES, PATH, LABEL, COARSE, ID = "image", "bytes", "path", "label", "coarse_label", "id"
IMAGE_BYTES = f"{IMAGE}.{BYTES}"  # the column a reader selects: the path beside it is never read
HF_KEY = b"huggingface"  # the schema metadata key datasets reads its features from

FOLDER = "data"
MAX_SHARD_INDEX = 99_999  # the file names' five digits, which datasets' pattern requires
# A row group ends at this many rows or once its images reach GROUP_BYTES: 2.4 MB of CIFAR PNGs,
# or 64 MB of photos, read whole by a reader (and by the Hub's viewer, a group at a time).
ROWS_PER_GROUP = 1000
GROUP_BYTES = 64 << 20
COMPRESSION = "zstd"  # read by pyarrow, datasets, pandas, Polars, DuckDB and Spark alike


def shard_name(split: str, index: int, count: int) -> str:
    """A file's path below OUT; ``split`` is a checked path component."""
    return f"{FOLDER}/{split}-{index:05d}-of-{count:05d}.parquet"


def pyarrow():
    """``(pyarrow, pyarrow.parquet)``, or one line naming the extra that installs them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"Parquet exports need pyarrow, an optional dependency: {EXTRA}") from None
    return pa, pq


def features(class_names, coarse_class_names) -> dict:
    """The ``huggingface`` schema metadata: each column's ``datasets`` feature, in column order."""
    columns: dict = {IMAGE: {"_type": "Image"}, LABEL: {"names": list(class_names), "_type": "ClassLabel"}}
    if coarse_class_names is not None:
        columns[COARSE] = {"names": list(coarse_class_names), "_type": "ClassLabel"}
    columns[ID] = {"dtype": "string", "_type": "Value"}
    return {"info": {"features": columns}}


def schema(class_names, coarse_class_names):
    """The Arrow schema every file of an export has, its features in the metadata."""
    pa, _ = pyarrow()
    fields = [(IMAGE, pa.struct([(BYTES, pa.binary()), (PATH, pa.string())])), (LABEL, pa.int64())]
    if coarse_class_names is not None:
        fields.append((COARSE, pa.int64()))
    fields.append((ID, pa.string()))
    metadata = json.dumps(features(class_names, coarse_class_names), ensure_ascii=False).encode()
    return pa.schema(fields, metadata={HF_KEY: metadata})


def writer_options() -> dict:
    """pyarrow's ParquetWriter settings: nothing in them depends on the time or the machine (the
    footer's created_by names pyarrow's version, which the export's fingerprint records)."""
    return {
        "compression": COMPRESSION,
        "use_dictionary": [LABEL, COARSE],  # a few class numbers repeat; image bytes and ids do not
        "write_statistics": [LABEL, COARSE, ID],  # min/max of image bytes would only bloat the footer
        "write_page_checksum": True,  # a reader that checks them (cifarkit's) finds a damaged page
        "store_schema": True,
    }


def require_pyarrow() -> None:
    """One line naming the extra where pyarrow is not installed, without importing it: the export's
    main process never needs it (its workers write), and it would add 40 MB there, which every
    forked worker would then hold too."""
    import importlib.util

    try:
        found = importlib.util.find_spec("pyarrow") is not None
    except (ImportError, ValueError):  # a broken install, or a stand-in that hides it
        found = False
    if not found:
        raise UsageError(f"Parquet exports need pyarrow, an optional dependency: {EXTRA}")


def writer_version() -> str:
    """What decides the bytes of a file beyond its rows: pyarrow's version and the settings."""
    from importlib.metadata import version

    return f"pyarrow {version('pyarrow')}, {COMPRESSION}, {ROWS_PER_GROUP} rows or {GROUP_BYTES >> 20} MB a row group"
