"""What the commands share: the choices as enums, the common options, finding and opening data.

Choices are enums so that ``--help`` lists them and a bad value is a usage error (exit 2) in
every command. Their values are the library's own names (a test keeps the two lists equal).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from ..formats import FORMATS
from ..recipes import RECIPES

# The adapter registry's and the recipe table's names, so that a new export format or recipe is
# one entry in cifarkit.formats or cifarkit.recipes, and --help lists it.
ExportFormat = Enum("ExportFormat", {name: name for name in FORMATS}, type=str)


class Encoding(str, Enum):
    auto = "auto"
    png = "png"
    jpeg = "jpeg"
    raw = "raw"


RecipeName = Enum("RecipeName", {name: name for name in RECIPES}, type=str)


class OptimizerName(str, Enum):
    sgd = "sgd"
    adam = "adam"


class ScheduleName(str, Enum):
    plateau = "plateau"
    cosine = "cosine"
    step = "step"
    warmup_linear = "warmup-linear"  # per step: warm-up, then linear decay (airbench)
    warmup_cosine = "warmup-cosine"  # per step: warm-up, then cosine decay


class Averaging(str, Enum):
    none = "none"
    ema = "ema"
    lookahead = "lookahead"


class Precision(str, Enum):
    float32 = "float32"
    mixed = "mixed"


class StrategyName(str, Enum):
    auto = "auto"
    one_device = "one-device"
    mirrored = "mirrored"
    multi_worker = "multi-worker"


class AugmentPlace(str, Enum):
    host = "host"
    device = "device"


class ModelFormat(str, Enum):
    savedmodel = "savedmodel"
    tflite = "tflite"


class Quantize(str, Enum):
    none = "none"
    float16 = "float16"
    int8 = "int8"


def value(choice: Optional[Enum]) -> Optional[str]:
    """The library's name for a choice (None stays None: the library's default then applies)."""
    return None if choice is None else choice.value


DataOption = Annotated[
    Optional[Path],
    typer.Option("--data", "-d", "--source", "-s",
                 help="Archive, extracted folder, image tree or TFRecord export. Default: search the usual places, then the bundled sample."),
]  # fmt: skip
NoVerifyOption = Annotated[bool, typer.Option("--no-verify", help="Read a file whose checksum differs from the official one.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or notes.")]
TrustModelOption = Annotated[bool, typer.Option(
    "--trust-model", help="Run a SavedModel or .tflite file that this user's export-model did not write (it is a "
    "program: only for a model from a source you trust).")]  # fmt: skip


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(message, err=True)


def find(source: Optional[Path], quiet: bool) -> tuple[Path, bool]:
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


def open_records(source: Optional[Path], no_verify: bool, quiet: bool):
    """The dataset as records (for export and info), with whether it is the bundled sample."""
    from ..sources import open_source

    source, sample = find(source, quiet)
    say(f"Reading {source} ...", quiet)
    dataset = open_source(source, verify=not no_verify)
    say(f"{dataset.format}; {dataset.verification}", quiet)
    for note in dataset.notes:
        say(f"note: {note}", quiet)
    return dataset, sample


def open_data(source: Optional[Path], no_verify: bool, quiet: bool):
    """A :class:`cifarkit.data.DataSource` for any source or export, TFRecord shards included."""
    from ..data import open_data as open_any

    path, _ = find(source, quiet)
    say(f"Reading {path} ...", quiet)
    return open_any(path, verify=not no_verify)


def split_list(text: Optional[str]) -> Optional[tuple[str, ...]]:
    if text is None:
        return None
    splits = tuple(s.strip() for s in text.split(",") if s.strip())
    if not splits:
        raise UsageError(f"--split needs at least one split name. Received: split={text!r}")
    return splits


def model_options(items: Optional[list[str]]) -> dict:
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
