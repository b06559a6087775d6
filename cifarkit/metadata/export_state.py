"""``.cifarkit-export.json``, an export's state: written before any data, it records what decides
the bytes written (the fingerprint a re-run must match to resume) and how the export was asked
for (so a reader can say which command finishes it).

An export is finished when its last file, ``cifarkit_info.json``, is there (a pre-TFDS export's
last file is its own ``dataset_info.json``) and no split is still in a staging folder. A folder
holding a state and no such end is an unfinished export, and :func:`check_finished` refuses it
for every reader, with the command that finishes it: a split written before the interruption
must not pass for the whole dataset.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic

from ..errors import SourceError
from .export_info import CIFARKIT_INFO, ENCODINGS, OLD_INFO
from .fields import MAX_SHARDS, MAX_SPLITS, OwnCount, SplitName, Text
from .files import read_model
from .jsonfile import Strict
from .tfds import FEATURES_FILE

STATE_FILE = ".cifarkit-export.json"
STAGING_PREFIX = ".partial-"  # OUT/.partial-<split>: an image-tree split being written
TREE_LAYOUTS = ("class", "coarse/fine")


class ResumeInfo(Strict):
    """The ``cifarkit export`` options that made the export (what a re-run must repeat)."""

    source: Text
    splits: Annotated[tuple[SplitName, ...], pydantic.Field(max_length=MAX_SPLITS)] | None = None
    quality: Annotated[int, pydantic.Field(ge=1, le=100)] = 95
    shards: Annotated[int, pydantic.Field(ge=1, le=MAX_SHARDS)] | None = None
    shard_size: Annotated[int, pydantic.Field(ge=1)] | None = None  # bytes
    encoding: Literal[ENCODINGS] = "auto"
    tfds_layout: bool = False
    layout: Literal[TREE_LAYOUTS] = "class"
    skip_bad: bool = False


class ExportState(Strict):
    """The fingerprint's fields a reader needs, typed; the format's own fields kept as read."""

    model_config = pydantic.ConfigDict(extra="allow")

    format: Text
    dataset: Text
    counts: Annotated[dict[SplitName, OwnCount], pydantic.Field(max_length=MAX_SPLITS)]
    shards: dict[SplitName, Annotated[int, pydantic.Field(ge=1, le=MAX_SHARDS)]] | None = None
    folders: Literal[TREE_LAYOUTS] | None = None
    resume: ResumeInfo | None = None

    def matches(self, fingerprint: dict[str, Any]) -> bool:
        """Whether this state is of the export ``fingerprint`` describes (a re-run resumes it)."""
        return self.model_dump(exclude={"resume"}, exclude_unset=True) == fingerprint


def read_state(folder: Path) -> ExportState | None:
    """The export state in ``folder``; None where there is none; one line if it is malformed."""
    return read_model(folder, STATE_FILE, ExportState, max_bytes=1024**2)


def state_json(fingerprint: dict[str, Any], resume: ResumeInfo) -> dict[str, Any]:
    """What the state file holds: the fingerprint, and the options under ``resume``."""
    return {**fingerprint, "resume": resume.model_dump(exclude_defaults=True)}


def finished(folder: Path) -> bool:
    """Whether the export in ``folder`` wrote its last file (``cifarkit_info.json``, or a pre-TFDS
    export's ``dataset_info.json``, told from TFDS's by the missing ``features.json``)."""
    if (folder / CIFARKIT_INFO).is_file():
        return True
    return (folder / OLD_INFO).is_file() and not (folder / FEATURES_FILE).is_file()


def check_finished(folder: Path) -> None:
    """Refuse ``folder`` (or the ``<name>/<version>/`` export a ``--tfds-layout`` put in it) if
    it holds an export that did not finish, naming the command that finishes it."""
    for root in (folder, *_tfds_layout_exports(folder)):
        if not (root / STATE_FILE).is_file():
            continue
        staging = [p.name for p in root.glob(STAGING_PREFIX + "*")]
        if finished(root) and not staging:
            continue
        state = read_state(root)
        raise SourceError(f"{root}: an unfinished export; re-run `{resume_command(state, root)}` to finish it")


def _tfds_layout_exports(folder: Path) -> list[Path]:
    """``folder/<name>/<version>`` folders holding an export state (``--tfds-layout``)."""
    try:
        return [p.parent for p in folder.glob(f"*/*/{STATE_FILE}")]
    except OSError:
        return []


def resume_command(state: ExportState | None, folder: Path) -> str:
    """The ``cifarkit export`` command that finishes (or repeats) the export in ``folder``."""
    if state is None:
        return f"cifarkit export --out {shlex.quote(str(folder))} ..."
    resume = state.resume
    out = folder.parent.parent if resume is not None and resume.tfds_layout else folder
    source = (
        shlex.quote(resume.source) if resume is not None else f"<{state.dataset}>"
    )  # a state that predates "resume"
    words = ["--format", state.format, "--out", str(out), *(_options(resume) if resume is not None else ())]
    return " ".join(["cifarkit export --source", source, *map(shlex.quote, words)])


def _options(resume: ResumeInfo) -> list[str]:
    """The non-default options of ``resume``, as ``cifarkit export`` takes them."""
    words = []
    if resume.splits is not None:
        words += ["--split", ",".join(resume.splits)]
    for name, value in (
        ("quality", resume.quality),
        ("shards", resume.shards),
        ("shard_size", resume.shard_size),
        ("encoding", resume.encoding),
        ("layout", resume.layout),
    ):
        if value != ResumeInfo.model_fields[name].default:
            words += [f"--{name.replace('_', '-')}", str(value)]
    words += [flag for flag, on in (("--tfds-layout", resume.tfds_layout), ("--skip-bad", resume.skip_bad)) if on]
    return words
