"""The ``cifarkit`` command line: thin commands over library calls, one error boundary.

Every :class:`~cifarkit.errors.CifarkitError` and every usage error becomes one line on stderr
and a non-zero exit code (1 for failures, 2 for bad usage), never a traceback.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from .errors import CifarkitError, UsageError


class _OneLineErrors(TyperGroup):
    """Turns errors into one readable line; used by the console script and by CliRunner alike."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except TyperException as exc:  # bad option or argument: exit code 2
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `cifarkit`: the help, as it is laid out
                exc.show()
                sys.exit(exc.exit_code)
            _fail(exc.format_message(), exc.exit_code)
        except typer.Abort:
            _fail("interrupted", 130)
        except CifarkitError as exc:
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as exc:
            message = _tensorflow_error(exc)
            if message is None:
                raise  # a bug in cifarkit: the traceback is what its report needs
            _fail(message, 1)
        sys.exit(result if isinstance(result, int) else 0)


# TensorFlow's runtime errors that bad input or a small machine cause, with what to do about them.
_TENSORFLOW_HINTS = {
    "DataLossError": "the data is corrupt (re-export or re-download it)",
    "ResourceExhaustedError": "out of memory (try a smaller --batch-size)",
}


def _tensorflow_error(exc: Exception) -> str | None:
    """One line for an error TensorFlow raised while running (a corrupt record, an exhausted
    device): its first line, without the graph's node names. None for anything else."""
    import re

    tf = sys.modules.get("tensorflow")
    if tf is None or not isinstance(exc, tf.errors.OpError):
        return None
    text = re.sub(r"\{\{[^}]*\}\}", "", exc.message or "")  # {{function_node ...}} {{node ...}}
    text = re.split(r"\s*\[\[|\s*\[Op:", text)[0]  # [[...]] node context, [Op:...] suffix
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    kind = type(exc).__name__
    what = _TENSORFLOW_HINTS.get(kind, "TensorFlow failed")
    return f"{what}: {lines[0] if lines else kind} ({kind})"


def _fail(message: str, code: int) -> None:
    # One line, whatever a library's message held (grep, log scrapers and people read it so).
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    typer.echo(f"cifarkit: error: {message}", err=True)
    sys.exit(code)


def _say(message: str, quiet: bool = False) -> None:
    if not quiet:
        typer.echo(message, err=True)


app = typer.Typer(
    cls=_OneLineErrors,
    help="CIFAR-10/100 read safely, exported fast, fed to TensorFlow.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"cifarkit {__version__}")
        raise typer.Exit()


@app.callback()
def _cifarkit(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """CIFAR-10/100 read safely, exported fast, fed to TensorFlow."""


SourceOption = Annotated[
    Optional[Path],
    typer.Option("--source", "-s", "--data", "-d", help="Archive, extracted folder or image tree. Default: search the usual places, then the bundled sample."),
]  # fmt: skip
NoVerifyOption = Annotated[bool, typer.Option("--no-verify", help="Read a file whose checksum differs from the official one.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or notes.")]


def _open(source: Optional[Path], no_verify: bool, quiet: bool):
    from .sources import open_source

    source, sample = _find(source, quiet)
    _say(f"Reading {source} ...", quiet)
    dataset = open_source(source, verify=not no_verify)
    _say(f"{dataset.format}; {dataset.verification}", quiet)
    for note in dataset.notes:
        _say(f"note: {note}", quiet)
    return dataset, sample


def _split_list(value: Optional[str]) -> Optional[tuple[str, ...]]:
    if value is None:
        return None
    splits = tuple(s.strip() for s in value.split(",") if s.strip())
    if not splits:
        raise UsageError(f"--split needs at least one split name. Received: split={value!r}")
    return splits


@app.command()
def export(
    format: Annotated[str, typer.Option("--format", "-f", help="jpg, png or tfrecord.")] = "jpg",
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder. Default: ./<dataset>-<format>.")] = None,
    source: SourceOption = None,
    split: Annotated[Optional[str], typer.Option(help="Comma-separated splits, e.g. train,test. Default: all.")] = None,
    quality: Annotated[int, typer.Option(help="JPEG quality, 1-100.")] = 95,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes. Default: all cores.")] = None,
    shards: Annotated[Optional[int], typer.Option(help="TFRecord shards per split. Default: one per 5,000 images.")] = None,
    encoding: Annotated[str, typer.Option(help="TFRecord image encoding: png (lossless), jpeg or raw.")] = "png",
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in --out.")] = False,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write a dataset as a labelled JPEG/PNG folder tree or sharded TFRecords."""
    from .export import ExportOptions, export_dataset
    from .parallel import default_workers

    options = ExportOptions(
        format=format.lower(), splits=_split_list(split), quality=quality, shards=shards,
        workers=default_workers() if workers is None else workers, encoding=encoding.lower(),
        overwrite=overwrite, quiet=quiet,
    )  # fmt: skip
    dataset, sample = _open(source, no_verify, quiet)
    if out is None:
        out = Path(f"{dataset.name}{'-sample' if sample else ''}-{options.format}")
    start = time.perf_counter()
    summary = export_dataset(dataset, out, options)
    seconds = time.perf_counter() - start
    total = sum(summary.counts.values())
    per_split = ", ".join(f"{s} {n:,}" for s, n in summary.counts.items())
    if summary.skipped:
        _say(f"resumed: {summary.skipped:,} images were already written by an earlier run", quiet)
    typer.echo(f"Exported {total:,} images ({per_split}) as {options.format} to {out} "
               f"in {seconds:.1f} s ({total / max(seconds, 1e-9):,.0f} images/s)")  # fmt: skip


@app.command()
def info(
    source: Annotated[Optional[Path], typer.Argument(help="Dataset to describe. Default: as for export.")] = None,
    source_option: Annotated[Optional[Path], typer.Option("--source", "-s", "--data", "-d", help="The same, named as in the other commands.")] = None,
    no_verify: NoVerifyOption = False,
) -> None:
    """Show the format found, its verification status and counts per split and class."""
    if source is not None and source_option is not None and source != source_option:
        raise UsageError(f"two datasets named ({source} and --source {source_option}); describe one at a time")
    dataset, _ = _open(source if source is not None else source_option, no_verify, quiet=True)
    lines = [
        f"source:       {dataset.location}",
        f"dataset:      {dataset.name}",
        f"format:       {dataset.format}",
        f"verification: {dataset.verification}",
    ]
    lines += [f"note:         {note}" for note in dataset.notes]
    splits = dataset.splits
    lines.append(f"classes:      {len(dataset.class_names)}"
                 + (f" fine, {len(dataset.coarse_class_names)} coarse" if dataset.coarse_class_names else ""))  # fmt: skip
    width = max(12, *(len(n) for n in dataset.class_names))
    lines.append("")
    lines.append(f"{'class':<{width}}" + "".join(f"{s:>10}" for s in splits))
    counts = {s: dataset.class_counts(s) for s in splits}
    for name in dataset.class_names:
        lines.append(f"{name:<{width}}" + "".join(f"{counts[s][name]:>10,}" for s in splits))
    lines.append(f"{'total':<{width}}" + "".join(f"{dataset.count(s):>10,}" for s in splits))
    typer.echo("\n".join(lines))


@app.command()
def download(
    name: Annotated[str, typer.Argument(help="cifar10, cifar10-binary, cifar100 or cifar100-binary.")] = "cifar10",
    dest: Annotated[Path, typer.Option("--dest", "--out", "-o", help="Folder to download into.")] = Path("data"),
    url: Annotated[Optional[str], typer.Option(help="Mirror: full URL of the file, or a base URL ending in '/'.")] = None,
    md5: Annotated[Optional[str], typer.Option(help="Expected md5 (default: the official one).")] = None,
    retries: Annotated[int, typer.Option(help="Retries after a failed or cut-off transfer.")] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 30.0,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download an official archive: resumable, retried, checksum-verified, atomic."""
    from .sources.download import download as fetch

    path = fetch(name, dest, url=url, md5=md5, retries=retries, timeout=timeout, verify=not no_verify, quiet=quiet)
    typer.echo(str(path))


def _find(source: Optional[Path], quiet: bool) -> tuple[Path, bool]:
    """The dataset given or, without one, the first found (the bundled sample as a last resort,
    with a note saying so); returns (path, is_sample)."""
    from .sources.discover import find_dataset

    if source is not None:
        return source, False
    found = find_dataset()
    if found.is_sample:
        _say(
            "No dataset found (looked in: " + ", ".join(found.searched) + "); using the small real "
            "CIFAR-10 sample bundled with cifarkit (20 train and 10 test images a class). "
            "Name a dataset, set $CIFARKIT_DATA or run `cifarkit download` for the full dataset.",
            quiet,
        )
    return found.path, found.is_sample


def _open_data(source: Optional[Path], no_verify: bool, quiet: bool):
    """A :class:`cifarkit.data.DataSource` for any source or export, TFRecord shards included."""
    from .data import open_data

    path, _ = _find(source, quiet)
    _say(f"Reading {path} ...", quiet)
    return open_data(path, verify=not no_verify)


@app.command()
def stats(
    source: SourceOption = None,
    split: Annotated[str, typer.Option(help="Split to measure.")] = "train",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the statistics.")] = Path("stats.json"),
    image_size: Annotated[Optional[int], typer.Option(help="Square size for image trees of mixed sizes.")] = None,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Per-channel mean and std, RGB covariance and its eigen decomposition (float64, [0, 1] scale)."""
    from .stats import compute_source_stats, save_stats

    data = _open_data(source, no_verify, quiet)
    if data.image_shape is None and image_size is None:
        image_size = 256
        _say("images differ in size: measuring them brought to 256x256 (--image-size to change)", quiet)
    result = compute_source_stats(data, split, image_size=image_size, progress=not quiet and sys.stderr.isatty())
    save_stats(result, out)
    fmt = lambda values: "  ".join(f"{v:.4f}" for v in values)  # noqa: E731
    typer.echo("\n".join([
        f"{data.name} {split}: {result.images:,} images, pixel scale {result.scale}",
        f"mean        {fmt(result.mean)}   (x255: {fmt(m * 255 for m in result.mean)})",
        f"std         {fmt(result.std)}   (x255: {fmt(s * 255 for s in result.std)})",
        f"eigenvalues {fmt(result.eigenvalues)}",
        f"wrote {out}",
    ]))  # fmt: skip


@app.command("augment-preview")
def augment_preview(
    source: SourceOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("preview.png"),
    recipe: Annotated[str, typer.Option(help="paper or cifar.")] = "paper",
    crop: Annotated[Optional[int], typer.Option(help="Crop size for the paper recipe (227 or 224).")] = None,
    images: Annotated[int, typer.Option(help="Source images (rows).")] = 8,
    views: Annotated[int, typer.Option(help="Augmented views per image.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the random views.")] = 0,
    stages: Annotated[bool, typer.Option(help="One row per step: resize, crop, flip, colour.")] = False,
    split: Annotated[str, typer.Option(help="Split to take images from.")] = "train",
    cell: Annotated[int, typer.Option(help="Size of each picture in the grid, in pixels.")] = 96,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write a PNG grid: each source image followed by the views the network will see."""
    from .data import to_numpy
    from .preview import pick_images, write_preview
    from .recipes import get_recipe
    from .stats import stats_for

    for name, value, low in (("--images", images, 1), ("--views", views, 1), ("--cell", cell, 16)):
        if value < low:
            raise UsageError(f"{name} must be at least {low}. Received: {value}")
    chosen = get_recipe(recipe, crop)
    data = _open_data(source, no_verify, quiet)
    size = None if data.image_shape else chosen.source_size
    # A few hundred images are enough to pick a varied set from without reading a whole split.
    pixels, labels = to_numpy(data.dataset(split, image_size=size), limit=max(images * 50, 500))
    picked = pick_images(pixels, labels, images)
    statistics = stats_for(data, image_size=size)
    captions = [data.class_names[labels[i]] for i in picked]
    width, height = write_preview(out, pixels[picked], captions, chosen, statistics, views=views, seed=seed,
                                  stages=stages, cell=cell)  # fmt: skip
    typer.echo(f"Wrote {out} ({width}x{height}): {len(picked)} images x {views} views, recipe "
               f"{chosen.name}: {chosen.describe()}")  # fmt: skip


@app.command("models")
def models_command() -> None:
    """List the registered models with their input size and default recipe."""
    from .models import list_models

    rows = [("model", "input", "recipe", "description")]
    rows += [(m.name, f"{m.input_size}x{m.input_size}", m.recipe, m.description) for m in list_models()]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for name, size, recipe, description in rows:
        typer.echo(f"{name:<{widths[0]}}  {size:<{widths[1]}}  {recipe:<{widths[2]}}  {description}")


@app.command()
def summary(
    model: Annotated[str, typer.Argument(help="A registered model name (see `cifarkit models`).")],
    classes: Annotated[int, typer.Option("--classes", min=1, help="Classes of the output layer.")] = 10,
    groups: Annotated[Optional[int], typer.Option(help="alexnet: 2 for the paper's two-tower conv2, conv4, conv5.")] = None,
    input_size: Annotated[Optional[int], typer.Option("--input-size", min=1, help="Square input size in pixels. Default: the model's own.")] = None,
) -> None:
    """Each layer's output shape and parameter count, then the totals."""
    import math

    from .constants import CHANNELS
    from .models import create_model, model_info

    model_info(model)  # an unknown name fails here, before Keras is imported
    options: dict = {}
    if groups is not None:  # only passed when given: other models have no such option
        options["groups"] = groups
    if input_size is not None:
        options["input_shape"] = (input_size, input_size, CHANNELS)
    net = create_model(model, num_classes=classes, **options)

    rows = [("layer", "output shape", "params")]
    rows += [(layer.name, str(tuple(layer.output.shape[1:])), f"{layer.count_params():,}") for layer in net.layers]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    height, width, channels = net.input_shape[1:]
    lines = [f"Model: {model} (input {height}x{width}x{channels}, {classes} classes)", ""]
    lines += [f"{name:<{widths[0]}}  {shape:<{widths[1]}}  {params:>{widths[2]}}" for name, shape, params in rows]
    trainable = sum(math.prod(w.shape) for w in net.trainable_weights)
    lines += ["", f"Total params: {net.count_params():,}", f"Trainable params: {trainable:,}",
              f"Non-trainable params: {net.count_params() - trainable:,}"]  # fmt: skip
    typer.echo("\n".join(lines))


DataOption = Annotated[
    Optional[Path],
    typer.Option("--data", "-d", "--source", "-s", help="Archive, extracted folder, image tree or TFRecord export. Default: search the usual places, then the bundled sample."),
]  # fmt: skip


def _model_options(items: Optional[list[str]]) -> dict:
    """``--model-option width=0.5`` pairs; values read as JSON where they parse (numbers, true/false)."""
    import json

    options = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--model-option takes KEY=VALUE. Received: {item!r}")
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="A registered model name (see `cifarkit models`).")],
    workdir: Annotated[Optional[Path], typer.Option("--workdir", "-w", help="Run folder: checkpoints, history, logs, report. Re-run the same command to resume. Default: runs/MODEL.")] = None,
    data: DataOption = None,
    epochs: Annotated[Optional[int], typer.Option(help="Passes over the training images. Default: 90 for alexnet, 30 otherwise.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="Global batch, split across replicas. Default: 128.")] = None,
    recipe: Annotated[Optional[str], typer.Option(help="paper or cifar. Default: the model's own.")] = None,
    crop: Annotated[Optional[int], typer.Option(help="Crop size for the paper recipe (227 or 224).")] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="sgd (momentum, L2 on kernels) or adam (AdamW). Default: sgd.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Learning rate. Default: 0.01 for alexnet, 0.05 for the others, 0.001 with adam.")] = None,
    momentum: Annotated[Optional[float], typer.Option(help="SGD momentum. Default: 0.9.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="Weight decay. Default: 5e-4.")] = None,
    schedule: Annotated[Optional[str], typer.Option(help="plateau (divide by 10 when validation stalls), cosine or step. Default: plateau for alexnet, cosine otherwise.")] = None,
    label_smoothing: Annotated[float, typer.Option("--label-smoothing", help="Label smoothing in [0, 1).")] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and augmentation.")] = 0,
    precision: Annotated[str, typer.Option(help="float32 or mixed (bfloat16 on CPU, float16 on GPU).")] = "float32",
    jit: Annotated[Optional[bool], typer.Option("--jit/--no-jit", help="XLA-compile the training step. Default: on with a GPU.")] = None,
    steps_per_execution: Annotated[int, typer.Option("--steps-per-execution", help="Training steps per call into the compiled function.")] = 8,
    augment_on: Annotated[Optional[str], typer.Option("--augment-on", help="host (tf.data) or device (first layer of the model). Default: device with a GPU, else host.")] = None,
    strategy: Annotated[str, typer.Option(help="auto, one-device, mirrored or multi-worker (reads $TF_CONFIG).")] = "auto",
    holdout: Annotated[int, typer.Option(help="Hold this many training images out for validation. Default 0: validate on the test split.")] = 0,
    limit_train: Annotated[Optional[int], typer.Option("--limit-train", help="Train on only this many training images (quick runs).")] = None,
    model_option: Annotated[Optional[list[str]], typer.Option("--model-option", "-m", help="Model option KEY=VALUE, e.g. width=0.5 or groups=2; repeatable.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run with other settings in --workdir.")] = False,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a model; the run folder gets best/last models, history, curves, logs and a report."""
    from .models import model_info
    from .train import REPORT_FILE, TrainConfig
    from .train import train as run_training

    model_info(model)  # an unknown name fails before TensorFlow is imported
    if workdir is None:
        workdir = Path("runs") / model
        _say(f"run folder: {workdir} (--workdir to choose another)", quiet)
    path, sample = _find(data, quiet)
    config = TrainConfig(
        model=model, workdir=str(workdir), data=str(path), sample=sample, verify=not no_verify,
        model_options=_model_options(model_option), epochs=epochs, batch_size=batch_size, recipe=recipe,
        crop=crop, optimizer=optimizer, lr=lr, momentum=momentum, weight_decay=weight_decay, schedule=schedule,
        label_smoothing=label_smoothing, seed=seed, precision=precision, jit=jit,
        steps_per_execution=steps_per_execution, augment_on=augment_on, strategy=strategy, holdout=holdout,
        limit_train=limit_train,
    )  # fmt: skip
    result = run_training(config, overwrite=overwrite, quiet=quiet, say=lambda m: _say(m, quiet))
    if not result.report:  # a worker other than the chief: the chief reports
        typer.echo("worker finished; the chief wrote the run folder")
        return
    test = result.report["test"]
    line = (f"test accuracy {test['accuracy']:.4f}, top-{test['top_k']} {test['top5']:.4f}"
            + (f", ten-crop {test['ten_crop_accuracy']:.4f}" if "ten_crop_accuracy" in test else "")
            + f" ({test['model']})")  # fmt: skip
    if result.already_finished:
        typer.echo(f"{result.workdir} already holds this run, finished: {line}; nothing to do "
                   "(--overwrite to train again)")  # fmt: skip
        return
    report = result.report
    epochs_run = report["epochs_run"]
    typer.echo(f"Trained {report['model']} for {epochs_run} epoch{'' if epochs_run == 1 else 's'} in {report['wall_seconds']:.1f} s "
               f"({report['images_per_second']:,.0f} images/s): {line}; report: {result.workdir / REPORT_FILE}")  # fmt: skip


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run folder (uses its best.keras and its data) or a .keras file.")],
    data: DataOption = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: test, train, or holdout for a run trained with one.")] = "test",
    ten_crop: Annotated[bool, typer.Option("--ten-crop", help="Average the softmax over ten crops (corners, centre, mirrors).")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for metrics.json, per_class.csv, confusion.csv/png. Default: RUN/eval-SPLIT, or beside the .keras file.")] = None,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Accuracy, top-5, per-class accuracy and the confusion matrix (CSV and PNG) of a trained model."""
    from .evaluate import evaluate_model, format_summary, load_model, resolve_model_path, write_evaluation
    from .train import TrainConfig, open_run_data

    model_path, run_config = resolve_model_path(run)
    if run_config is not None and data is None:
        # The run's own data, with its holdout and training subset, so "holdout" means the same images.
        config = TrainConfig.from_json(run_config)
        _say(f"Reading {config.data} (the run's data) ...", quiet)
        source = open_run_data(config).source
    else:
        path, _ = _find(data, quiet)
        _say(f"Reading {path} ...", quiet)
        from .data import open_data

        source = open_data(path, verify=not no_verify)
    model = load_model(model_path)
    result = evaluate_model(model, source, split, ten_crop=ten_crop)
    if out is None:
        suffix = f"eval-{split}" + ("-ten-crop" if ten_crop else "")
        out = model_path.parent / suffix if run_config is not None else model_path.with_name(f"{model_path.stem}-{suffix}")
    files = write_evaluation(result, out)
    typer.echo(f"model:          {model_path}")
    typer.echo(format_summary(result))
    typer.echo(f"\nwrote {', '.join(str(f) for f in files.values())}")


@app.command()
def predict(
    run: Annotated[Path, typer.Argument(help="A run folder (uses its best.keras) or a .keras file.")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders of them (any size, any format imageio reads).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes to show per image.")] = 5,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Where to write the table as CSV [default: predictions.csv in the run folder, or <model>-predictions.csv beside a .keras file].")] = None,
) -> None:
    """Top classes and their probabilities for each image, preprocessed exactly as in evaluation."""
    from .evaluate import (
        default_predictions_csv, find_images, format_predictions, load_model, model_parts, predict_files,
        predictions_csv, resolve_model_path,
    )  # fmt: skip
    from .writers.atomic import write_text

    model_path, _ = resolve_model_path(run)
    files = find_images(images)
    model = load_model(model_path)
    names = model_parts(model)[2]
    k = min(top_k, len(names))
    predictions = predict_files(model, files)
    typer.echo(format_predictions(predictions, names, k))
    out = csv if csv is not None else default_predictions_csv(run, model_path)
    write_text(out, predictions_csv(predictions, names, k))
    typer.echo(f"wrote {out}", err=True)  # stdout stays the table alone, for pipes


def main() -> None:
    from .tf_runtime import prefer_onednn, quiet_tensorflow_startup

    prefer_onednn()  # before any command imports TensorFlow
    quiet_tensorflow_startup()
    app(prog_name="cifarkit")
