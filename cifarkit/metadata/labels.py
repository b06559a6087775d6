"""Class-name files: an export's ``labels.txt`` and TFDS's ``<feature>.labels.txt``, one name a line.

A names file is read under a cap that the class count it should hold sets (a ``label.labels.txt``
beside ``numClasses: 10`` holds at most ten names of at most :data:`MAX_LABEL_BYTES` each), and
its lines are counted as they are read, so a 10 MB file of line breaks costs its 10 MB and not a
list of ten million strings. A class count with no names file becomes :class:`NumberedNames`,
which holds the count and nothing per class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from ..errors import SourceError
from .fields import MAX_CLASSES, MAX_TEXT
from .files import read_text

MAX_LABEL_BYTES = MAX_TEXT  # one class name
_LINE = MAX_LABEL_BYTES + 2  # a name and its line break (\r\n)
MAX_NAMES_FILE_BYTES = 16 * 1024 * 1024  # a million names of 16 characters
# A line as str.splitlines() sees one: these are all its line breaks.
_NAME = re.compile("[^\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]+")


def read_names(path: Path, declared: int | None = None) -> tuple[str, ...]:
    """The non-empty lines of ``path``; exactly ``declared`` of them where a count is declared
    (TFDS refuses a names file that disagrees with ``numClasses`` too), at most
    :data:`MAX_CLASSES` otherwise. One line naming the file for anything else."""
    declared = declared or None  # 0: no count given
    cap = MAX_NAMES_FILE_BYTES if declared is None else min(MAX_NAMES_FILE_BYTES, declared * _LINE + 4096)
    return parse_names(read_text(path, cap), path, declared)


def parse_names(text: str, where: object, declared: int | None = None, most: int = MAX_CLASSES) -> tuple[str, ...]:
    """The non-empty lines of ``text`` (as ``str.splitlines`` splits it), counted as they are
    found: more than ``declared`` (or ``most``) is refused at the first one too many."""
    most = declared or most
    names = []
    for match in _NAME.finditer(text):  # blank lines are skipped without a string each
        if len(names) == most:
            raise SourceError(
                f"{where}: lists more than the {most:,} class names "
                + ("its metadata declares" if declared else "cifarkit reads here")
            )
        if match.end() - match.start() > MAX_LABEL_BYTES:
            raise SourceError(f"{where}: class name {len(names)} is longer than {MAX_LABEL_BYTES:,} characters")
        names.append(match.group())
    if not names:
        raise SourceError(f"{where}: no class names in it (one a line expected)")
    if declared and len(names) != declared:
        raise SourceError(f"{where}: lists {len(names):,} class names where its metadata declares {declared:,}")
    return tuple(names)


class NumberedNames(Sequence):
    """``("0", "1", ..., str(count - 1))`` without a string per class: TFDS's names for a
    ClassLabel that has a count and no names file."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, item):
        if isinstance(item, slice):
            return tuple(str(i) for i in range(self.count)[item])
        if not -self.count <= item < self.count:
            raise IndexError(item)
        return str(item % self.count)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, NumberedNames):
            return other.count == self.count
        return isinstance(other, Sequence) and len(other) == self.count and all(a == b for a, b in zip(self, other))

    def __hash__(self) -> int:
        return hash(("NumberedNames", self.count))

    def __repr__(self) -> str:
        return f"NumberedNames({self.count})"
