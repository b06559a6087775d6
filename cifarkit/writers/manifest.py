"""``labels.txt``, ``manifest.csv`` and ``dataset_info.json``: the files that describe an export."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import open_atomic, write_text

MANIFEST_COLUMNS = ("path", "split", "index", "label", "label_name", "source_file")
COARSE_COLUMNS = ("coarse_label", "coarse_label_name")


def write_labels(path: Path, class_names: Iterable[str]) -> None:
    write_text(path, "".join(f"{name}\n" for name in class_names))


def csv_text(header: Iterable, rows: Iterable[Iterable]) -> str:
    """A CSV document (``\n`` line ends) from a header row and the rows under it."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def write_manifest(path: Path, rows: Iterable[tuple], coarse: bool) -> None:
    """One row per image: where it went, its split, index, label and the file it came from.
    Written as ``rows`` come (atomically, as :func:`csv_text` would give it), never held whole."""
    with open_atomic(path) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS + (COARSE_COLUMNS if coarse else ()))
        writer.writerows(rows)
        text.flush()
        text.detach()  # the file is closed (and renamed) by open_atomic


def write_json(path: Path, data: dict[str, Any]) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
