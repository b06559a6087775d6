"""What an export format is: the interface every adapter implements.

An adapter owns one on-disk format from end to end, as TFDS's file adapters do: it plans the work
(:class:`Piece`: a run of images one worker task writes), writes it (including whatever makes an
interrupted write resumable), names what decides its bytes (the export's fingerprint), describes
itself in ``cifarkit_info.json``, says which files in OUT it wrote (``--overwrite`` removes those)
and opens it again for reading. :mod:`cifarkit.formats.export` runs the steps common to every format; the registry in
:mod:`cifarkit.formats` maps a ``--format`` name, or the ``format`` ``cifarkit_info.json`` records,
to its adapter.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..metadata.export_info import CIFARKIT_INFO, ExportInfo  # noqa: F401  (CIFARKIT_INFO: for importers)
from ..metadata.export_info import OLD_INFO as INFO_FILE  # noqa: F401
from ..writers.clear import Owns

DEFAULT_QUALITY = 95  # JPEG quality when none is asked for

if TYPE_CHECKING:
    from ..metadata.export_state import ExportState
    from ..readers.reader import DataReader
    from ..sources.labelled import LabelledImages


@dataclass(frozen=True)
class TfdsFound:
    """A TFRecord dataset found at or below the path given: a folder TFDS prepared, or an export
    under ``--tfds-layout``; ``own`` is cifarkit's description where cifarkit wrote it."""

    root: Path
    own: ExportInfo | None


class WriteOptions(Protocol):
    """The export options an adapter reads (:class:`cifarkit.formats.export.ExportOptions` has them)."""

    format: str
    quality: int  # JPEG quality, for jpg trees and TFRecord's jpeg encoding
    workers: int
    shards: int | None  # TFRecord shards per split; None: the format's default
    shard_size: int | None  # bytes a shard holds about (cifarkit.formats.sharding); not with shards
    encoding: str  # TFRecord image encoding
    tfds_layout: bool  # TFRecord: OUT/<name>/<version>/
    layout: str  # image trees: <split>/<class>/ or <split>/<coarse>/<fine>/


class ExportRunner(Protocol):
    """Where an export's file checks and writes run, other than this machine's worker processes
    (``ExportOptions.runner``; :class:`cifarkit.formats.beam_export.BeamRunner` runs them as Apache
    Beam pipelines). Planning, the export state and the metadata stay the exporter's."""

    def check_files(self, dataset: LabelledImages, splits: tuple[str, ...], options: WriteOptions) -> list:
        """The image files of ``splits`` that cannot be read (:class:`.photos.FileCheck` with an error)."""

    def write(self, dataset: LabelledImages, out: Path, plans: dict[str, list[Piece]], options, bad: list) -> int:
        """Write every planned piece with the format's adapter, and report each split's progress;
        returns the images skipped (written by an earlier run of the same export)."""


@dataclass(frozen=True)
class Piece:
    """Images ``start:stop`` of ``split``, written by one worker task."""

    split: str
    start: int
    stop: int

    def manifest_paths(self) -> list[str]:
        """Per image of the piece, the file that holds it, relative to the export folder."""
        raise NotImplementedError


class FormatAdapter(ABC):
    """One export format: plan, write, describe, clean up, and open for reading."""

    name: str  # the --format value, and the "format" recorded in cifarkit_info.json
    # The export options this format reads, beyond those of every export (splits, workers, ...).
    # Another format's option given a value other than its default is refused for this one
    # (cifarkit.formats.export.ExportOptions), rather than ignored.
    options: tuple[str, ...] = ()
    # TFDS's name of the file format whose dataset folders this adapter reads (dataset_info.json's
    # fileFormat), for the formats that write TFDS's folders; None for the others.
    tfds_file_format: str | None = None
    # Whether write_split of any of a split's pieces alone writes exactly those pieces, each a
    # whole file of its own (written under a temporary name and renamed), so that pieces can be
    # written apart, in any order, on other machines (cifarkit.formats.beam_export). False for a
    # format that finishes a split as a whole: it is written a split at a time there.
    pieces_apart: bool = True

    def check_options(self, options: WriteOptions) -> None:  # noqa: B027  (an optional hook)
        """Refuse a bad value, or combination, of the options this format owns. Called when
        export options are made, so a typo is caught before any data is read."""

    @abstractmethod
    def fingerprint(self, dataset: LabelledImages, splits: tuple[str, ...], options: WriteOptions) -> dict:
        """What decides the bytes this format writes, beyond the dataset and the format's name;
        recorded in the export's state, so a re-run resumes only an identical export."""

    @abstractmethod
    def plan(self, dataset: LabelledImages, split: str, options: WriteOptions) -> list[Piece]:
        """The pieces one split is written as, in dataset order."""

    @abstractmethod
    def write_split(
        self, dataset: LabelledImages, split: str, out: Path, pieces: list[Piece], options: WriteOptions, progress
    ) -> int:
        """Write the planned pieces of ``split`` under ``out``, skipping what an earlier run of the
        same export finished; ``progress.update(n)`` per n images. Returns the images skipped."""

    def folder(self, dataset: LabelledImages, options: WriteOptions) -> tuple[str, ...]:
        """Folders below OUT that the export goes into (none by default)."""
        return ()

    def finish(  # noqa: B027  (an optional hook)
        self, out: Path, dataset: LabelledImages, plans: dict[str, list[Piece]], options: WriteOptions
    ) -> None:
        """Write what this format adds once every split is written (another tool's metadata)."""

    def describe_split(self, pieces: list[Piece]) -> dict[str, Any]:
        """Fields this format adds to a split's entry of ``cifarkit_info.json``."""
        return {}

    @abstractmethod
    def describe(self, dataset: LabelledImages, options: WriteOptions) -> dict[str, Any]:
        """Fields this format adds to ``cifarkit_info.json``, after the splits."""

    def usage(self, out: Path) -> list[str]:
        """Lines ``cifarkit export`` prints after its summary: how a client opens what it wrote."""
        return []

    @abstractmethod
    def owns(self, state: ExportState) -> Owns:
        """Which files and folders in OUT the export ``state`` describes wrote (``--overwrite``
        removes those, and refuses if OUT holds anything else)."""

    @abstractmethod
    def open(self, root: Path, info: ExportInfo | TfdsFound, *, verify: bool = True) -> DataReader:
        """A reader over an export of this format at ``root``; ``info`` is its cifarkit_info.json."""


def index_width(count: int) -> int:
    """Zero-padding of a split's image indices (file names, record ids), so they sort in index
    order: at least 5 digits, as for CIFAR-10."""
    return max(5, len(str(max(count - 1, 0))))
