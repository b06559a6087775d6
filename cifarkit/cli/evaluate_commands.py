"""``cifarkit evaluate``, ``predict`` and ``export-model``: commands over a trained model or an
exported one (registered after :mod:`.model_commands`, so ``--help`` lists them after ``train``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .options import (
    VIEWS_HELP,
    DataOption,
    ModelFormat,
    NoVerifyOption,
    Quantize,
    QuietOption,
    TrustModelOption,
    check_data_path,
    find,
    say,
)


def open_model_data(run_config, data: Path | None, no_verify: bool, quiet: bool, raw: bool = False):
    """The run's own data (with its splits, holdout and training subset, so "test" and "holdout"
    mean the same images), unless ``data`` names other data or there is no run; ``raw``: the
    run's data as read, without the run's splits. ``run_config``: the run's config.json as read
    (:class:`cifarkit.metadata.run_files.RunConfigFile`), or None."""
    if run_config is not None and data is None:
        from ..training import TrainPlan, open_run_data

        config = TrainPlan.from_file(run_config)
        say(f"Reading {config.data} (the run's data) ...", quiet)
        if raw:
            data = Path(config.data)
        else:
            return open_run_data(config).source
    path, _ = find(data, quiet)
    say(f"Reading {path} ...", quiet)
    from ..data import open_data

    return open_data(path, verify=not no_verify)


def open_exported_first(model_path: Path, trust: bool):
    """An exported model, opened before Keras and TensorFlow are imported here, so that a ``.tflite``
    file's child process starts meanwhile (and one cifarkit did not write is refused before any
    wait); None for a ``.keras`` file, which needs them to load."""
    if model_path.suffix == ".keras":
        return None
    from ..modelio.exported import open_exported

    return open_exported(model_path, trust=trust)


@app.command()
def evaluate(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder (uses its model, last.keras or the best.keras it chose on --holdout, and its data), a "
            ".keras or .tflite file, or an exported SavedModel folder."
        ),
    ],
    data: DataOption = None,
    split: Annotated[
        str, typer.Option(help="Split to evaluate: test, train, or holdout for a run trained with one.")
    ] = "test",
    eval_split: Annotated[
        str | None,
        typer.Option(
            "--eval-split",
            help="Images to evaluate, in TFDS's split syntax ('test[8000:]'), from the data as read (not the run's "
            "splits).",
        ),
    ] = None,
    ten_crop: Annotated[
        bool, typer.Option("--ten-crop", help="Average the softmax over ten crops (corners, centre, mirrors).")
    ] = False,
    tta: Annotated[str | None, typer.Option(help=f"Average the softmax over test-time views: {VIEWS_HELP}.")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for metrics.json, per_class.csv, confusion.csv/png. Default: RUN/eval-SPLIT, or beside the "
            ".keras file.",
        ),
    ] = None,
    no_verify: NoVerifyOption = False,
    trust_model: TrustModelOption = False,
    quiet: QuietOption = False,
) -> None:
    """Accuracy, top-5, per-class accuracy and the confusion matrix (CSV and PNG) of a trained model."""
    from ..evaluation.tta import parse_views
    from ..modelio.model_path import resolve_model_path
    from ..training.config import check_split_form

    views = parse_views(tta)  # the options first, before Keras and TensorFlow load
    check_split_form("--split", split)
    if eval_split is not None:
        check_split_form("--eval-split", eval_split)
    check_data_path(data)
    model_path, run_config = resolve_model_path(run)
    model = open_exported_first(model_path, trust_model)
    from ..evaluation.evaluate import beside_model, evaluate_model, format_summary, write_evaluation
    from ..modelio.keras_file import load_model
    from ..readers.splits import folder_name

    source = open_model_data(run_config, data, no_verify, quiet, raw=eval_split is not None)
    if eval_split is not None:  # the spec names the split: "eval-test-8000-" beside the model
        source, split = source.select({eval_split: eval_split}), eval_split
    model = load_model(model_path) if model is None else model
    result = evaluate_model(model, source, split, ten_crop=ten_crop, tta=views)
    if out is None:
        suffix = f"eval-{folder_name(split)}" + ("-ten-crop" if ten_crop else "") + "".join(f"-{v}" for v in views)
        out = model_path.parent / suffix if run_config is not None else beside_model(model_path, suffix)
    files = write_evaluation(result, out)
    typer.echo(f"model:          {model_path}")
    typer.echo(format_summary(result))
    typer.echo(f"\nwrote {', '.join(str(f) for f in files.values())}")


@app.command()
def predict(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run folder (uses its model: last.keras, or the best.keras it chose), a .keras or .tflite file, "
            "or an exported SavedModel folder."
        ),
    ],
    images: Annotated[
        list[Path], typer.Argument(help="Image files or folders of them (any size, any format imageio reads).")
    ],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes to show per image.")] = 5,
    csv: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Where to write the table as CSV [default: predictions.csv in the run folder, or "
            "<model>-predictions.csv beside a .keras file].",
        ),
    ] = None,
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Go on past image files that cannot be read: one 'skipped' line each on stderr; fails only if "
            "none can.",
        ),
    ] = False,
    trust_model: TrustModelOption = False,
) -> None:
    """Top classes and their probabilities for each image, preprocessed exactly as in evaluation."""
    from ..modelio.model_path import resolve_model_path
    from ..sources.source_path import check_source_path

    for path in images:  # each a file or a folder, before Keras and TensorFlow load
        check_source_path(path)
    model_path, _ = resolve_model_path(run)
    model = open_exported_first(model_path, trust_model)
    from ..evaluation.evaluate import class_names_of
    from ..evaluation.predict import default_predictions_csv, find_images, format_predictions, predictions_csv
    from ..modelio.keras_file import load_model
    from ..writers.atomic import write_text

    files = find_images(images)
    model = load_model(model_path) if model is None else model
    names = class_names_of(model)
    k = min(top_k, len(names))
    predictions, skipped = _predict(model, files, skip_bad)
    typer.echo(format_predictions(predictions, names, k))
    out = csv if csv is not None else default_predictions_csv(run, model_path)
    write_text(out, predictions_csv(predictions, names, k))
    if skip_bad:
        typer.echo(f"predicted {len(predictions):,} of {len(files):,} images; skipped {skipped:,}", err=True)
    typer.echo(f"wrote {out}", err=True)  # stdout stays the table alone, for pipes


def _predict(model, files: list[Path], skip_bad: bool):
    """(the predictions, how many files were skipped); without ``skip_bad`` the first file that
    cannot be read ends the command, naming the flag that goes on without it."""
    from ..errors import SourceError
    from ..evaluation.predict import UnreadableImage, predict_files

    if not skip_bad:
        try:
            return predict_files(model, files), 0
        except UnreadableImage as exc:
            raise SourceError(f"{exc} (--skip-bad to go on without it)") from None
    skipped = []

    def skip(bad: UnreadableImage) -> None:
        skipped.append(bad.path)
        typer.echo(f"skipped {bad.path}: {bad.reason}", err=True)

    predictions = predict_files(model, files, on_bad=skip)
    if not predictions:
        raise SourceError(f"no image could be read: all {len(files):,} skipped")
    return predictions, len(skipped)


@app.command("export-model")
def export_model(
    run: Annotated[
        Path,
        typer.Argument(help="A run folder (uses its model: last.keras, or the best.keras it chose) or a .keras file."),
    ],
    format: Annotated[
        ModelFormat,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help="savedmodel (TensorFlow, TensorFlow Serving), tflite (TFLite / LiteRT) or onnx (ONNX Runtime).",
        ),
    ] = ModelFormat.savedmodel,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Output folder: SavedModels go to OUT/NAME/VERSION, TFLite files to OUT/NAME[-QUANTIZE].tflite, "
            "ONNX files to OUT/NAME.onnx. Default: RUN/exported, or exported/ beside the .keras file.",
        ),
    ] = None,
    quantize: Annotated[
        Quantize,
        typer.Option(
            case_sensitive=False,
            help="tflite only: none (float32), float16 (weights), or int8 (weights and activations, calibrated on "
            "training images).",
        ),
    ] = Quantize.none,
    name: Annotated[
        str | None,
        typer.Option(help="Model name for the folder or file. Default: the model's own (e.g. alexnet_cifar)."),
    ] = None,
    data: DataOption = None,
    calibration_images: Annotated[
        int,
        typer.Option(
            "--calibration-images",
            min=1,
            help="int8: training images to calibrate on, spread over the split (from the run's data, or --data).",
        ),
    ] = 300,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a trained model to run without cifarkit: uint8 pixels in, probabilities and class names out."""
    from ..errors import UsageError
    from ..modelio.export import check_choice
    from ..modelio.model_path import resolve_model_path

    check_choice(format.value, quantize.value)
    if format is ModelFormat.onnx:
        from ..modelio.onnx_export import require_modules

        require_modules()
    if name is not None and (not name or name in (".", "..") or "/" in name or "\\" in name):
        raise UsageError(f"--name must be a plain file name. Received: {name!r}")
    check_data_path(data)
    model_path, run_config = resolve_model_path(run)
    if model_path.suffix != ".keras":
        raise UsageError(f"{model_path} is exported already; export-model reads a run folder or a .keras file")
    # Everything asked for is checked: now Keras and TensorFlow may load.
    from ..modelio.export import calibration_images as pick_images
    from ..modelio.keras_file import input_size, load_model

    model = load_model(model_path)
    calibration = None
    if quantize is Quantize.int8:
        source = open_model_data(run_config, data, no_verify, quiet)
        say(f"Calibrating on {calibration_images:,} training images ...", quiet)
        calibration = pick_images(source, input_size(model), calibration_images)
    out = out if out is not None else model_path.parent / "exported"
    name = name or model.name
    say(
        f"Exporting {model_path} as {format.value}"
        + (f" ({quantize.value})" if quantize is not Quantize.none else "")
        + " ...",
        quiet,
    )
    exported, how = _write_model(format, model, out, name, quantize, calibration)
    typer.echo(f"wrote {exported.path} ({exported.bytes / 1e6:.2f} MB; {how})")
    if exported.unrecorded is not None:
        typer.echo(
            f"note: not recorded as cifarkit's ({exported.unrecorded}); predict and evaluate will run it only "
            "with --trust-model",
            err=True,
        )


def _write_model(format, model, out: Path, name: str, quantize, calibration):
    """(what export-model wrote, how to run it, in a few words)."""
    from ..modelio.export import export_savedmodel, export_tflite

    if format is ModelFormat.savedmodel:
        exported = export_savedmodel(model, out, name)
        return exported, "SavedModel: tf.saved_model.load, or TensorFlow Serving with --model_base_path=" + str(
            exported.path.parent.resolve()
        )
    if format is ModelFormat.onnx:
        from ..modelio.onnx_export import export_onnx

        return export_onnx(model, out, name), "ONNX: onnxruntime.InferenceSession, input images"
    return export_tflite(model, out, name, quantize.value, calibration), "TFLite: signature serving_default"
