"""Mutations of a Parquet file of a cifarkit export (the ``parquet`` target of fuzz_sources.py).

Half rewrite the file through pyarrow with one thing changed, so the damage reaches the readers
past the footer: an image's bytes (bombs, lying and 0x0 headers, truncated, random, none at all
beside a ``path`` that leads out of the folder), a label or coarse label (-1, 2^62, null, another
type), rows dropped or repeated, a column dropped, renamed, doubled or of another type, the
``huggingface`` features JSON mutated, row groups of one row, other codecs, image bytes
dictionary-encoded. The other half damage the bytes themselves, mostly in the footer (Thrift
fields: counts, sizes, offsets, the schema) and at the data pages' headers, or cut the file.
"""

from __future__ import annotations

import io
import random

import fuzz_mutators as mut
from fuzz_records import _image_payload

# Paths a row's image may name (never the sandbox's own: the case writer would splice it into
# the file's compressed bytes). The readers must not open any of them.
OUTSIDE = ("../victim/keep.txt", "../../victim/keep.txt", "../../../victim/keep.txt", "/etc/passwd")
CODECS = ("snappy", "gzip", "brotli", "lz4", "none", "zstd")


def _rewrite(rng: random.Random, table, pool: dict[str, bytes]) -> tuple[object, dict, str]:
    """The table with one change, and ParquetWriter options; what changed."""
    import pyarrow as pa

    rows = table.to_pylist()
    schema = table.schema
    choice = rng.randrange(9)
    at = rng.randrange(len(rows)) if rows else 0
    if choice <= 2 and rows:
        payload, note = _image_payload(rng, pool)
        path = rng.choice(OUTSIDE) if rng.random() < 0.3 else None
        rows[at]["image"] = None if rng.random() < 0.05 else {"bytes": payload, "path": path}
        if rng.random() < 0.2:
            rows[at]["image"] = {"bytes": None, "path": rng.choice(OUTSIDE)}
            note = "image bytes null, path outside"
        return pa.Table.from_pylist(rows, schema=schema), {}, f"row {at}: {note}"
    if choice == 3 and rows:
        column = rng.choice([c for c in ("label", "coarse_label") if c in schema.names])
        rows[at][column] = rng.choice([-1, 2**62, -(2**63), 99, 100, 20, None])
        return pa.Table.from_pylist(rows, schema=schema), {}, f"row {at}: {column} {rows[at][column]}"
    if choice == 4 and rows:
        if rng.random() < 0.5:
            del rows[at]
            return pa.Table.from_pylist(rows, schema=schema), {}, f"row {at} dropped"
        rows.insert(at, rows[at])
        return pa.Table.from_pylist(rows, schema=schema), {}, f"row {at} repeated"
    if choice == 5:
        return _schema_change(rng, table)
    if choice == 6:
        meta = dict(schema.metadata or {})
        data, note = mut.mutate_json(rng, meta.get(b"huggingface", b"{}"))
        meta[b"huggingface"] = data
        return table.replace_schema_metadata(meta), {}, f"huggingface metadata: {note}"
    if choice == 7:
        return table, {"row_group_size": rng.choice([1, 2, 3])}, "row groups of a few rows"
    codec = rng.choice(CODECS)
    options = {"compression": codec, "use_dictionary": rng.random() < 0.5, "write_statistics": rng.random() < 0.5}
    return table, options, f"written with {codec}, dictionary {options['use_dictionary']}"


def _schema_change(rng: random.Random, table) -> tuple[object, dict, str]:
    import pyarrow as pa

    name = rng.choice(table.schema.names)
    index = table.schema.get_field_index(name)
    choice = rng.randrange(4)
    if choice == 0:
        return table.drop_columns([name]), {}, f"column {name} dropped"
    if choice == 1:
        return table.rename_columns([("x" if n == name else n) for n in table.schema.names]), {}, f"{name} renamed"
    if choice == 2:
        return table.append_column(name, table.column(index)), {}, f"column {name} twice"
    kind = pa.binary() if name == "image" else pa.string()
    values = [
        None if v is None else str(v).encode() if name == "image" else str(v) for v in table.column(index).to_pylist()
    ]
    return table.set_column(index, name, pa.array(values, kind)), {}, f"{name} as {kind}"


def _footer_offsets(data: bytes) -> list[int]:
    """Offsets in the footer (Thrift's FileMetaData) and the 8 bytes after it (its length, PAR1)."""
    if len(data) < 12:
        return []
    length = int.from_bytes(data[-8:-4], "little")
    start = max(4, len(data) - 8 - length)
    return list(range(start, len(data)))


def mutate_parquet(rng: random.Random, data: bytes, pool: dict[str, bytes]) -> tuple[bytes, str]:
    """One mutation of a Parquet file's bytes ``data``."""
    import pyarrow.parquet as pq

    if rng.random() < 0.5:
        table = pq.read_table(io.BytesIO(data))
        table, options, note = _rewrite(rng, table, pool)
        out = io.BytesIO()
        pq.write_table(table, out, **options)
        return out.getvalue(), note
    footer = _footer_offsets(data)
    pages = list(range(4, min(len(data), 64)))  # the first data page's header
    structure = footer if rng.random() < 0.7 else pages
    notes = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        data, what = mut.mutate_binary(rng, data, structure)
        notes.append(what)
    return data, "bytes: " + "; ".join(notes)
