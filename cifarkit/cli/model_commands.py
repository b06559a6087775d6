"""Commands about models: models, summary, train, evaluate, predict, export-model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app
from .options import (
    Averaging, AugmentPlace, DataOption, ModelFormat, NoVerifyOption, OptimizerName, Precision, Quantize, QuietOption, RecipeName,
    ScheduleName, StrategyName, TrustModelOption, VIEWS_HELP, find, model_options, say, value,
)  # fmt: skip
from ..training.config import defaults_by_model, training_summary


@app.command("models")
def models_command() -> None:
    """List the registered models with their input size, default recipe and training defaults."""
    from ..models import list_models

    rows = [("model", "input", "recipe", "trains by default", "description")]
    rows += [(m.name, f"{m.input_size}x{m.input_size}", m.recipe, training_summary(m.name), m.description)
             for m in list_models()]  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for *columns, description in rows:
        typer.echo("  ".join(f"{text:<{width}}" for text, width in zip(columns, widths)) + f"  {description}")


@app.command()
def summary(
    model: Annotated[str, typer.Argument(help="A registered model name (see `cifarkit models`).")],
    classes: Annotated[int, typer.Option("--classes", min=1, help="Classes of the output layer.")] = 10,
    groups: Annotated[Optional[int], typer.Option(help="alexnet: 2 for the paper's two-tower conv2, conv4, conv5.")] = None,
    input_size: Annotated[Optional[int], typer.Option("--input-size", min=1, help="Square input size in pixels. Default: the model's own.")] = None,
) -> None:
    """Each layer's output shape and parameter count, then the totals."""
    import math

    from ..constants import CHANNELS
    from ..models import create_model, model_info

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


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="A registered model name (see `cifarkit models`).")],
    workdir: Annotated[Optional[Path], typer.Option("--workdir", "-w", help="Run folder: checkpoints, history, logs, report. Re-run the same command to resume. Default: runs/MODEL.")] = None,
    data: DataOption = None,
    epochs: Annotated[Optional[int], typer.Option(help=f"Passes over the training images. Default: {defaults_by_model('epochs')}.")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help=f"Global batch, split across replicas. Default: {defaults_by_model('batch_size')}.")] = None,
    recipe: Annotated[Optional[RecipeName], typer.Option(case_sensitive=False, help="Augmentation recipe. Default: the model's own.")] = None,
    crop: Annotated[Optional[int], typer.Option(help="Crop size for the paper recipe (227 or 224).")] = None,
    optimizer: Annotated[Optional[OptimizerName], typer.Option(case_sensitive=False, help="sgd (momentum, L2 on kernels) or adam (AdamW). Default: sgd.")] = None,
    lr: Annotated[Optional[float], typer.Option(help=f"Learning rate. Default: {defaults_by_model('lr')}; 0.001 with adam.")] = None,
    momentum: Annotated[Optional[float], typer.Option(help=f"SGD momentum. Default: {defaults_by_model('momentum')}.")] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help=f"Weight decay. Default: {defaults_by_model('weight_decay')}.")] = None,
    schedule: Annotated[Optional[ScheduleName], typer.Option(case_sensitive=False, help=f"plateau (divide by 10 when validation stalls), cosine, step, or per step warm-up then linear or cosine decay. Default: {defaults_by_model('schedule')}.")] = None,
    label_smoothing: Annotated[Optional[float], typer.Option("--label-smoothing", help="Label smoothing in [0, 1). Default: the model's (0; 0.2 for whitenet).")] = None,
    averaging: Annotated[Optional[Averaging], typer.Option(case_sensitive=False, help="Weight averaging: ema, lookahead or none. Default: the model's (lookahead for whitenet, else none).")] = None,
    whiten: Annotated[Optional[bool], typer.Option("--whiten/--no-whiten", help="Set the first convolution from the whitening of training patches. Default: the model's.")] = None,
    warmup: Annotated[Optional[float], typer.Option(help="Fraction of the steps the warmup-* schedules warm up over. Default: 0.23.")] = None,
    tta: Annotated[Optional[str], typer.Option(help=f"Test-time views in the final report: {VIEWS_HELP} or none. Default: the model's.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and augmentation.")] = 0,
    precision: Annotated[Precision, typer.Option(case_sensitive=False, help="float32, or mixed (bfloat16 on CPU, float16 on GPU).")] = Precision.float32,
    jit: Annotated[Optional[bool], typer.Option("--jit/--no-jit", help="Compile the training step: XLA on TensorFlow (default on with a GPU), jit on JAX (default on), torch.compile on PyTorch (default off).")] = None,
    steps_per_execution: Annotated[int, typer.Option("--steps-per-execution", help="Training steps per call into the compiled function.")] = 8,
    augment_on: Annotated[Optional[AugmentPlace], typer.Option("--augment-on", case_sensitive=False, help="host (tf.data, TensorFlow only) or device (first layer of the model). Default: device with a GPU or without TensorFlow, else host.")] = None,
    strategy: Annotated[StrategyName, typer.Option(case_sensitive=False, help="tf.distribute strategy; multi-worker reads $TF_CONFIG. JAX and PyTorch: auto or one-device.")] = StrategyName.auto,
    holdout: Annotated[int, typer.Option(help="Hold this many training images out for validation. Default 0: validate on the test split.")] = 0,
    limit_train: Annotated[Optional[int], typer.Option("--limit-train", help="Train on only this many training images (quick runs).")] = None,
    train_split: Annotated[str, typer.Option("--train-split", help="Images to train on, in TFDS's split syntax: train, 'test[:8000]', 'train[:90%]+test'.")] = "train",
    eval_split: Annotated[str, typer.Option("--eval-split", help="Images to validate and report on (the run's test split), in the same syntax: 'test[8000:]'.")] = "test",
    model_option: Annotated[Optional[list[str]], typer.Option("--model-option", "-m", help="Model option KEY=VALUE, e.g. width=0.5 or groups=2; repeatable.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run with other settings in --workdir.")] = False,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Train a model; the run folder gets best/last models, history, curves, logs and a report."""
    from ..models import model_info

    model_info(model)  # an unknown name fails before TensorFlow is imported (with cifarkit.training)
    if workdir is None:
        workdir = Path("runs") / model
        say(f"run folder: {workdir} (--workdir to choose another)", quiet)
    path, sample = find(data, quiet)
    from ..training import REPORT_FILE, TrainConfig
    from ..training import train as run_training

    config = TrainConfig(
        model=model, workdir=str(workdir), data=str(path), sample=sample, verify=not no_verify,
        model_options=model_options(model_option), epochs=epochs, batch_size=batch_size, recipe=value(recipe),
        crop=crop, optimizer=value(optimizer), lr=lr, momentum=momentum, weight_decay=weight_decay,
        schedule=value(schedule), label_smoothing=label_smoothing, averaging=value(averaging), whiten=whiten,
        warmup=warmup, tta=tta, seed=seed, precision=value(precision), jit=jit,
        steps_per_execution=steps_per_execution, augment_on=value(augment_on), strategy=value(strategy),
        holdout=holdout, limit_train=limit_train, train_split=train_split, eval_split=eval_split,
    )  # fmt: skip
    result = run_training(config, overwrite=overwrite, quiet=quiet, say=lambda m: say(m, quiet))
    if not result.report:  # a worker other than the chief: the chief reports
        typer.echo("worker finished; the chief wrote the run folder")
        return
    test = result.report.test
    line = (f"test accuracy {test.accuracy:.4f}, top-{test.top_k} {test.top5:.4f}"
            + (f", ten-crop {test.ten_crop_accuracy:.4f}" if test.ten_crop_accuracy is not None else "")
            + f" ({test.model})"
            + (f"; last.keras {test.tta.accuracy:.4f}, with test-time {test.tta.views} "
               f"{test.tta.tta_accuracy:.4f}" if test.tta is not None else ""))  # fmt: skip
    if result.already_finished:
        typer.echo(f"{result.workdir} already holds this run, finished: {line}; nothing to do "
                   "(--overwrite to train again)")  # fmt: skip
        return
    report = result.report
    epochs_run, rate = report.epochs_run, report.images_per_second
    typer.echo(f"Trained {report.model} for {epochs_run} epoch{'' if epochs_run == 1 else 's'} in {report.wall_seconds or 0:.1f} s "
               f"({'-' if rate is None else format(rate, ',.0f')} images/s): {line}; report: {result.workdir / REPORT_FILE}")  # fmt: skip


def open_model_data(run_config, data: Optional[Path], no_verify: bool, quiet: bool, raw: bool = False):
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
    run: Annotated[Path, typer.Argument(help="A run folder (uses its best.keras and its data), a .keras or .tflite file, or an exported SavedModel folder.")],
    data: DataOption = None,
    split: Annotated[str, typer.Option(help="Split to evaluate: test, train, or holdout for a run trained with one.")] = "test",
    eval_split: Annotated[Optional[str], typer.Option("--eval-split", help="Images to evaluate, in TFDS's split syntax ('test[8000:]'), from the data as read (not the run's splits).")] = None,
    ten_crop: Annotated[bool, typer.Option("--ten-crop", help="Average the softmax over ten crops (corners, centre, mirrors).")] = False,
    tta: Annotated[Optional[str], typer.Option(help=f"Average the softmax over test-time views: {VIEWS_HELP}.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for metrics.json, per_class.csv, confusion.csv/png. Default: RUN/eval-SPLIT, or beside the .keras file.")] = None,
    no_verify: NoVerifyOption = False,
    trust_model: TrustModelOption = False,
    quiet: QuietOption = False,
) -> None:
    """Accuracy, top-5, per-class accuracy and the confusion matrix (CSV and PNG) of a trained model."""
    from ..modelio.model_path import resolve_model_path

    model_path, run_config = resolve_model_path(run)
    model = open_exported_first(model_path, trust_model)
    from ..evaluation.evaluate import beside_model, evaluate_model, format_summary, write_evaluation
    from ..modelio.keras_file import load_model
    from ..readers.splits import folder_name

    source = open_model_data(run_config, data, no_verify, quiet, raw=eval_split is not None)
    if eval_split is not None:  # the spec names the split: "eval-test-8000-" beside the model
        source, split = source.select({eval_split: eval_split}), eval_split
    model = load_model(model_path) if model is None else model
    from ..evaluation.tta import parse_views

    views = parse_views(tta)
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
    run: Annotated[Path, typer.Argument(help="A run folder (uses its best.keras), a .keras or .tflite file, or an exported SavedModel folder.")],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders of them (any size, any format imageio reads).")],
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes to show per image.")] = 5,
    csv: Annotated[Optional[Path], typer.Option("--csv", help="Where to write the table as CSV [default: predictions.csv in the run folder, or <model>-predictions.csv beside a .keras file].")] = None,
    trust_model: TrustModelOption = False,
) -> None:
    """Top classes and their probabilities for each image, preprocessed exactly as in evaluation."""
    from ..modelio.model_path import resolve_model_path

    model_path, _ = resolve_model_path(run)
    model = open_exported_first(model_path, trust_model)
    from ..evaluation.evaluate import (
        class_names_of, default_predictions_csv, find_images, format_predictions, predict_files, predictions_csv,
    )  # fmt: skip
    from ..modelio.keras_file import load_model
    from ..writers.atomic import write_text

    files = find_images(images)
    model = load_model(model_path) if model is None else model
    names = class_names_of(model)
    k = min(top_k, len(names))
    predictions = predict_files(model, files)
    typer.echo(format_predictions(predictions, names, k))
    out = csv if csv is not None else default_predictions_csv(run, model_path)
    write_text(out, predictions_csv(predictions, names, k))
    typer.echo(f"wrote {out}", err=True)  # stdout stays the table alone, for pipes


@app.command("export-model")
def export_model(
    run: Annotated[Path, typer.Argument(help="A run folder (uses its best.keras) or a .keras file.")],
    format: Annotated[ModelFormat, typer.Option("--format", "-f", case_sensitive=False, help="savedmodel (TensorFlow, TensorFlow Serving) or tflite (TFLite / LiteRT).")] = ModelFormat.savedmodel,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output folder: SavedModels go to OUT/NAME/VERSION, TFLite files to OUT/NAME[-QUANTIZE].tflite. Default: RUN/exported, or exported/ beside the .keras file.")] = None,
    quantize: Annotated[Quantize, typer.Option(case_sensitive=False, help="tflite only: none (float32), float16 (weights), or int8 (weights and activations, calibrated on training images).")] = Quantize.none,
    name: Annotated[Optional[str], typer.Option(help="Model name for the folder or file. Default: the model's own (e.g. alexnet_cifar).")] = None,
    data: DataOption = None,
    calibration_images: Annotated[int, typer.Option("--calibration-images", min=1, help="int8: training images to calibrate on, spread over the split (from the run's data, or --data).")] = 300,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Export a trained model to run without cifarkit: uint8 pixels in, probabilities and class names out."""
    from ..errors import UsageError
    from ..modelio.export import calibration_images as pick_images
    from ..modelio.export import check_choice, export_savedmodel, export_tflite
    from ..modelio.model_path import resolve_model_path
    from ..modelio.keras_file import input_size, load_model

    check_choice(format.value, quantize.value)
    if name is not None and (not name or name in (".", "..") or "/" in name or "\\" in name):
        raise UsageError(f"--name must be a plain file name. Received: {name!r}")
    model_path, run_config = resolve_model_path(run)
    if model_path.suffix != ".keras":
        raise UsageError(f"{model_path} is exported already; export-model reads a run folder or a .keras file")
    model = load_model(model_path)
    calibration = None
    if quantize is Quantize.int8:
        source = open_model_data(run_config, data, no_verify, quiet)
        say(f"Calibrating on {calibration_images:,} training images ...", quiet)
        calibration = pick_images(source, input_size(model), calibration_images)
    out = out if out is not None else model_path.parent / "exported"
    name = name or model.name
    say(f"Exporting {model_path} as {format.value}" + (f" ({quantize.value})" if quantize is not Quantize.none else "")
        + " ...", quiet)  # fmt: skip
    if format is ModelFormat.savedmodel:
        exported = export_savedmodel(model, out, name)
        how = "SavedModel: tf.saved_model.load, or TensorFlow Serving with --model_base_path=" + str(exported.path.parent.resolve())
    else:
        exported = export_tflite(model, out, name, quantize.value, calibration)
        how = "TFLite: signature serving_default"
    typer.echo(f"wrote {exported.path} ({exported.bytes / 1e6:.2f} MB; {how})")
    if exported.unrecorded is not None:
        typer.echo(f"note: not recorded as cifarkit's ({exported.unrecorded}); predict and evaluate will run it only "
                   "with --trust-model", err=True)  # fmt: skip
