"""JSON files read into pydantic models, with a size cap and a nesting cap, one line on error.

pydantic (already installed with Typer) parses JSON in Rust with a recursion limit, and its
strict models check types and ranges in one place; ``json.loads`` plus ``isinstance`` chains
did neither and let deep nesting end in a RecursionError. A file is read only up to its cap, so
a 10 GB ``dataset_info.json`` costs what the cap allows, not 10 GB.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import pydantic

from ..errors import SourceError

M = TypeVar("M", bound=pydantic.BaseModel)

DEFAULT_MAX_BYTES = 16 * 1024 * 1024  # far above any metadata file cifarkit writes or TFDS writes
MAX_DEPTH = 32  # cifarkit's and TFDS's files nest at most 6 deep


class Strict(pydantic.BaseModel):
    """Base of every metadata model: strict types (no "3" for 3), unknown keys kept out."""

    model_config = pydantic.ConfigDict(strict=True, extra="ignore", frozen=True)


def read_bytes_capped(path: Path, max_bytes: int, error=SourceError) -> bytes:
    """The file's bytes, refused in one line if it holds more than ``max_bytes``."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"{path}: cannot read {path.name} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: {path.name} is larger than {max_bytes:,} bytes; refused as metadata")
    return data


def _depth(data: bytes) -> int:
    """Deepest nesting of arrays and objects, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def parse_json(data: bytes, model: type[M], where: object, error=SourceError) -> M:
    """``data`` as ``model``; one line naming ``where`` and the first thing wrong otherwise."""
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _depth(data) > MAX_DEPTH:
        raise error(f"{where}: JSON nested more than {MAX_DEPTH} deep; refused")
    try:
        return model.model_validate_json(data)
    except pydantic.ValidationError as exc:
        raise error(f"{where}: malformed ({describe_error(exc)})") from None


def describe_error(exc: pydantic.ValidationError) -> str:
    """The first thing wrong, on one line: where in the document, and what."""
    first = exc.errors(include_url=False, include_input=False)[0]
    place = ".".join(_place(p) for p in first.get("loc", ())) or "the top level"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    if first.get("type") == "model_type" and not first.get("loc"):
        message = "a JSON object is expected"
    return f"{place}: {_place(message, 300)}"


def _place(part: object, limit: int = 60) -> str:
    """A key or message as one printable line (a key from the file may hold anything)."""
    text = str(part)
    if not text.isprintable() or len(text) > limit:
        text = repr(text)[:limit]
    return text


def read_json(path: Path, model: type[M], max_bytes: int = DEFAULT_MAX_BYTES, error=SourceError) -> M:
    """The JSON file at ``path`` as ``model``, read under ``max_bytes``."""
    return parse_json(read_bytes_capped(path, max_bytes, error), model, path, error)
