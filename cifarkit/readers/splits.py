"""TFDS's split syntax: ``train``, ``train[:90%]``, ``train[5000:]``, ``test[-10%:]``, ``train+test``.

A spec is one or more parts joined by ``+``; each part is a split name with an optional slice of
absolute indices (Python's meaning: negative counts from the end, out-of-range clips) or of
percentages (-100 to 100, both ends in the same unit). A percentage becomes an index as TFDS's
default "closest" rounding does: ``round(percent * count / 100)`` (Python's round, half to even),
so ``train[:33%]`` and ``train[33%:]`` split a split without overlap or gap. ``all`` is every
split in order, as ``tfds.Split.ALL``. TFDS's other rounding, ``(pct1_dropremainder)``, is not
offered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import UsageError

_PART = re.compile(r"(?P<name>[\w-]+)(\[(?P<start>-?\d+%?)?(?P<colon>:)?(?P<stop>-?\d+%?)?\])?")
ALL = "all"


@dataclass(frozen=True)
class Piece:
    """Images ``start:stop`` of one split of a source, in dataset order."""

    split: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


# Digits an index may have: 18 fit in int64 (no dataset comes near); Python refuses to read
# more than 4,300 at all, with a ValueError rather than a message.
MAX_INDEX_DIGITS = 18


def _int(text: str, spec: str) -> int:
    digits = text.lstrip("-").rstrip("%")
    if len(digits) > MAX_INDEX_DIGITS:
        raise UsageError(
            f"split {spec[:60]!r}: an index of {len(digits):,} digits; indices have at most {MAX_INDEX_DIGITS}"
        )
    return int(text.rstrip("%"))


def _bound(text: str | None, count: int, spec: str) -> int | None:
    if text is None:
        return None
    if text.endswith("%"):
        percent = _int(text, spec)
        if not -100 <= percent <= 100:
            raise UsageError(f"split {spec!r}: percentages go from -100% to 100%. Received: {text}")
        return round(percent * count / 100)
    return _int(text, spec)


def resolve(spec: str, counts: dict[str, int], where: str = "the dataset") -> list[Piece]:
    """The pieces ``spec`` selects from splits of these sizes; a split the data lacks, or a
    malformed spec, is one line that says what there is."""
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"a split is a name such as 'train' or 'test[:50%]'. Received: {spec!r}")
    pieces: list[Piece] = []
    for part in spec.split("+"):
        match = _PART.fullmatch(part.strip())
        if match is None:
            raise UsageError(f"split {spec!r}: {part.strip()!r} is not NAME, NAME[start:stop] or NAME[start%:stop%]")
        name, start, stop = match.group("name"), match.group("start"), match.group("stop")
        if name == ALL and ALL not in counts and match.group(0) == name:
            pieces += [Piece(s, 0, n) for s, n in counts.items()]
            continue
        if name not in counts:
            raise UsageError(
                f"{where} has no split {name!r} (asked for by {spec!r}); it has {', '.join(counts) or 'none'}"
            )
        if start is not None and stop is not None and start.endswith("%") != stop.endswith("%"):
            raise UsageError(f"split {spec!r}: both ends of a slice must be indices or both percentages")
        count = counts[name]
        if match.group("colon") is None and match.group(0) != name:  # train[5]: one example
            if start is None or start.endswith("%"):
                raise UsageError(f"split {spec!r}: a slice needs a colon, as in {name}[:{start or '10%'}]")
            lo, hi, _ = slice(_int(start, spec), _int(start, spec) + 1 or None).indices(count)
        else:
            lo, hi, _ = slice(_bound(start, count, spec), _bound(stop, count, spec)).indices(count)
        pieces.append(Piece(name, lo, max(lo, hi)))
    return pieces


def count(spec: str, counts: dict[str, int]) -> int:
    return sum(len(p) for p in resolve(spec, counts))


def folder_name(spec: str) -> str:
    """A spec as a file name: ``test[8000:]`` -> ``test-8000-``, ``train[:90%]`` -> ``train--90pc``."""
    return re.sub(r"[^\w+-]", "", spec.replace(":", "-").replace("%", "pc"))
