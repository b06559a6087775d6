"""What the commands share: the choices as enums, the common options, finding and opening data.

Choices are enums so that ``--help`` lists them and a bad value is a usage error (exit 2) in
every command. Each is made from the library's own table (:func:`choices`), so a new format,
recipe, schedule or strategy is one entry there and ``--help`` lists it. None of these tables'
modules imports TensorFlow or Keras, so ``cifarkit --help`` starts without them.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..augment.recipes import RECIPES
from ..errors import UsageError
from ..evaluation.tta import VIEWS
from ..formats import FORMAT_ALIASES, FORMATS
from ..formats.image_tree import LAYOUTS
from ..formats.tfrecord import ENCODINGS
from ..modelio.export import FORMATS as MODEL_FORMATS
from ..modelio.export import QUANTIZATIONS
from ..readers.pipeline import AUGMENT_PLACES
from ..runtime.strategy import STRATEGIES
from ..training.config import AVERAGING, OPTIMIZERS, PRECISIONS, SCHEDULES


def choices(name: str, names: Iterable[str]) -> type[Enum]:
    """An enum of a library table's names, each its own value, for a Typer option."""
    return Enum(name, {choice: choice for choice in names}, type=str)


ExportFormat = choices("ExportFormat", (*FORMATS, *FORMAT_ALIASES))
Encoding = choices("Encoding", ENCODINGS)
TreeLayout = choices("TreeLayout", LAYOUTS)
RecipeName = choices("RecipeName", RECIPES)
OptimizerName = choices("OptimizerName", OPTIMIZERS)
ScheduleName = choices("ScheduleName", SCHEDULES)
Averaging = choices("Averaging", AVERAGING)
Precision = choices("Precision", PRECISIONS)
StrategyName = choices("StrategyName", STRATEGIES)
AugmentPlace = choices("AugmentPlace", AUGMENT_PLACES)
ModelFormat = choices("ModelFormat", MODEL_FORMATS)
Quantize = choices("Quantize", QUANTIZATIONS)
# --tta takes a list of views, so it is text parsed by cifarkit.evaluation.tta.parse_views; its help names them.
VIEWS_HELP = ", ".join((*VIEWS, ",".join(VIEWS)))  # "flip, translate, flip,translate"


def value(choice: Enum | None) -> str | None:
    """The library's name for a choice (None stays None: the library's default then applies)."""
    return None if choice is None else choice.value


DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        "-d",
        "--source",
        "-s",
        help="Archive, extracted folder, image tree or TFRecord export. Default: search the usual places, then the "
        "bundled sample.",
    ),
]
NoVerifyOption = Annotated[
    bool, typer.Option("--no-verify", help="Read a file whose checksum differs from the official one.")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or notes.")]
JsonProgressOption = Annotated[
    bool,
    typer.Option(
        "--json-progress",
        help="Progress as one JSON object a line on stderr, for programs (with --quiet, stderr holds only those).",
    ),
]
TrustModelOption = Annotated[
    bool,
    typer.Option(
        "--trust-model",
        help="Run a SavedModel or .tflite file that this user's export-model did not write (it is a "
        "program: only for a model from a source you trust).",
    ),
]


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(message, err=True)


def find(source: Path | None, quiet: bool) -> tuple[Path, bool]:
    """The dataset given or, without one, the first found (the bundled sample as a last resort,
    with a note saying so); returns (path, is_sample)."""
    from ..sources.discover import find_dataset

    if source is not None:
        return source, False
    found = find_dataset()
    if found.is_sample:
        say(
            "No dataset found (looked in: " + ", ".join(found.searched) + "); using the small real "
            "CIFAR-10 sample bundled with cifarkit (20 train and 10 test images a class). "
            "Name a dataset, set $CIFARKIT_DATA or run `cifarkit download` for the full dataset.",
            quiet,
        )
    return found.path, found.is_sample


def check_data_path(path: Path | None) -> None:
    """A dataset named that is no file or folder to read is refused before anything loads."""
    if path is not None:
        from ..sources.source_path import check_source_path

        check_source_path(path.expanduser())


def open_records(source: Path | None, no_verify: bool, quiet: bool):
    """The dataset as records (for export and info), with whether it is the bundled sample."""
    from ..sources import open_source

    source, sample = find(source, quiet)
    say(f"Reading {source} ...", quiet)
    dataset = open_source(source, verify=not no_verify)
    say(f"{dataset.format}; {dataset.verification}", quiet)
    for note in dataset.notes:
        say(f"note: {note}", quiet)
    return dataset, sample


def open_data(source: Path | None, no_verify: bool, quiet: bool):
    """A :class:`~cifarkit.readers.reader.DataReader` for any source or export, TFRecord shards included."""
    from ..data import open_data as open_any

    path, _ = find(source, quiet)
    say(f"Reading {path} ...", quiet)
    return open_any(path, verify=not no_verify)


def split_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    if not splits:
        raise UsageError(f"--split needs at least one split name. Received: split={text!r}")
    return splits


def model_options(items: list[str] | None) -> dict:
    """``--model-option width=0.5`` pairs; values read as JSON where they parse (numbers, true/false)."""
    import json

    options = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--model-option takes KEY=VALUE. Received: {item!r}")
        try:
            options[key.strip()] = json.loads(text)
        except ValueError:
            options[key.strip()] = text
    return options
