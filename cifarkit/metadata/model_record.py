"""The record ``cifarkit export-model`` keeps of a model it wrote (:mod:`cifarkit.modelio.trust`),
read into a checked type."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import pydantic

from ..errors import UnsafeInputError
from .jsonfile import Strict, parse_json, read_bytes_capped

MAX_RECORD_BYTES = 4 * 1024 * 1024
MAX_FILES = 10_000  # a SavedModel holds a handful: saved_model.pb, fingerprint.pb, variables/*
RECORD_FORMAT = 1

Digest = Annotated[str, pydantic.Field(pattern=r"^[0-9a-f]{64}$")]
RelativeName = Annotated[str, pydantic.Field(min_length=1, max_length=4096)]


class ModelRecord(Strict):
    """What was written (each file's name, relative to the model, and its SHA-256) and the
    HMAC-SHA256 of that, under a key that never leaves the machine that wrote it."""

    format: Literal[1]
    kind: Literal["savedmodel", "tflite"]
    files: Annotated[dict[RelativeName, Digest], pydantic.Field(min_length=1, max_length=MAX_FILES)]
    mac: Digest

    def signed_text(self) -> bytes:
        return signed_text(self.kind, self.files)


def signed_text(kind: str, files: dict[str, str]) -> bytes:
    """The bytes the MAC covers: one canonical JSON text of the kind and the files."""
    import json

    return json.dumps(
        {"format": RECORD_FORMAT, "kind": kind, "files": files},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    ).encode()


def read_model_record(path: Path) -> ModelRecord:
    """A model's export record; a damaged one is one line (:class:`UnsafeInputError`)."""
    return parse_json(read_bytes_capped(path, MAX_RECORD_BYTES, UnsafeInputError), ModelRecord, path, UnsafeInputError)
