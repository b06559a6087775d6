"""Commands about models: models, summary, train, evaluate, predict, export-model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..training.defaults import defaults_by_model, training_summary
from .app import app
from .options import (
    VIEWS_HELP,
    AugmentPlace,
    Averaging,
    DataOption,
    JsonProgressOption,
    NoVerifyOption,
    OptimizerName,
    Precision,
    QuietOption,
    RecipeName,
    ScheduleName,
    StrategyName,
    choices,
    find,
    model_options,
    say,
    value,
)

SelectOn = choices("SelectOn", ("holdout", "test", "none"))  # cifarkit.metadata.run_files.SELECTIONS


@app.command("models")
def models_command() -> None:
    """List the registered models with their input size, default recipe and training defaults."""
    from ..models import list_models

    rows = [("model", "input", "recipe", "trains by default", "description")]
    rows += [
        (m.name, f"{m.input_size}x{m.input_size}", m.recipe, training_summary(m.name), m.description)
        for m in list_models()
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    for *columns, description in rows:
        typer.echo("  ".join(f"{text:<{width}}" for text, width in zip(columns, widths)) + f"  {description}")


@app.command()
def summary(
    model: Annotated[str, typer.Argument(help="A registered model name (see `cifarkit models`).")],
    classes: Annotated[int, typer.Option("--classes", min=1, help="Classes of the output layer.")] = 10,
    groups: Annotated[
        int | None, typer.Option(help="alexnet: 2 for the paper's two-tower conv2, conv4, conv5.")
    ] = None,
    input_size: Annotated[
        int | None,
        typer.Option("--input-size", min=1, help="Square input size in pixels. Default: the model's own."),
    ] = None,
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
    lines += [
        "",
        f"Total params: {net.count_params():,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {net.count_params() - trainable:,}",
    ]
    typer.echo("\n".join(lines))


@app.command()
def train(
    model: Annotated[str, typer.Argument(help="A registered model name (see `cifarkit models`).")],
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            "-w",
            help="Run folder: checkpoints, history, logs, report. Re-run the same command to resume. Default: "
            "runs/MODEL.",
        ),
    ] = None,
    data: DataOption = None,
    epochs: Annotated[
        int | None, typer.Option(help=f"Passes over the training images. Default: {defaults_by_model('epochs')}.")
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", help=f"Global batch, split across replicas. Default: {defaults_by_model('batch_size')}."
        ),
    ] = None,
    recipe: Annotated[
        RecipeName | None, typer.Option(case_sensitive=False, help="Augmentation recipe. Default: the model's own.")
    ] = None,
    crop: Annotated[int | None, typer.Option(help="Crop size for the paper recipe (227 or 224).")] = None,
    optimizer: Annotated[
        OptimizerName | None,
        typer.Option(
            case_sensitive=False,
            help="sgd (momentum, L2 on kernels), adam (AdamW) or muon (Muon on the convolution filters at "
            "--muon-scale times the rate, sgd for the rest). Default: sgd.",
        ),
    ] = None,
    muon_scale: Annotated[
        float | None,
        typer.Option(
            "--muon-scale",
            help=f"With --optimizer muon: the filters' rate over --lr. Default: {defaults_by_model('muon_scale')}.",
        ),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help=f"Learning rate. Default: {defaults_by_model('lr')}; 0.001 with adam.")
    ] = None,
    momentum: Annotated[
        float | None, typer.Option(help=f"SGD momentum. Default: {defaults_by_model('momentum')}.")
    ] = None,
    weight_decay: Annotated[
        float | None,
        typer.Option("--weight-decay", help=f"Weight decay. Default: {defaults_by_model('weight_decay')}."),
    ] = None,
    schedule: Annotated[
        ScheduleName | None,
        typer.Option(
            case_sensitive=False,
            help="plateau (divide by 10 when validation stalls), cosine, step, or per step warm-up then linear or "
            f"cosine decay. Default: {defaults_by_model('schedule')}.",
        ),
    ] = None,
    label_smoothing: Annotated[
        float | None,
        typer.Option(
            "--label-smoothing", help="Label smoothing in [0, 1). Default: the model's (0; 0.2 for whitenet)."
        ),
    ] = None,
    averaging: Annotated[
        Averaging | None,
        typer.Option(
            case_sensitive=False,
            help="Weight averaging: ema, lookahead or none. Default: the model's (lookahead for whitenet, else none).",
        ),
    ] = None,
    whiten: Annotated[
        bool | None,
        typer.Option(
            "--whiten/--no-whiten",
            help="Set the first convolution from the whitening of training patches. Default: the model's.",
        ),
    ] = None,
    warmup: Annotated[
        float | None, typer.Option(help="Fraction of the steps the warmup-* schedules warm up over. Default: 0.23.")
    ] = None,
    tta: Annotated[
        str | None,
        typer.Option(help=f"Test-time views in the final report: {VIEWS_HELP} or none. Default: the model's."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of initialisation, data order and augmentation.")] = 0,
    precision: Annotated[
        Precision | None,
        typer.Option(
            case_sensitive=False,
            help="float32, or mixed (bfloat16 on CPU, float16 on GPU). Default: mixed for whitenet on TensorFlow "
            "where the CPU computes bfloat16 natively (AVX-512 BF16, AMX), else float32.",
        ),
    ] = None,
    jit: Annotated[
        bool | None,
        typer.Option(
            "--jit/--no-jit",
            help="Compile the training step: XLA on TensorFlow (default on with a GPU), jit on JAX (default on), "
            "torch.compile on PyTorch (default off).",
        ),
    ] = None,
    steps_per_execution: Annotated[
        int, typer.Option("--steps-per-execution", help="Training steps per call into the compiled function.")
    ] = 8,
    validate_every: Annotated[
        int | None,
        typer.Option(
            "--validate-every",
            help="Validate after every N-th epoch and after the last (the curves' validation points); the "
            f"weights are the same either way. Default: {defaults_by_model('validate_every')}.",
        ),
    ] = None,
    augment_on: Annotated[
        AugmentPlace | None,
        typer.Option(
            "--augment-on",
            case_sensitive=False,
            help="host (tf.data, TensorFlow only) or device (first layer of the model). Default: device with a GPU or "
            "without TensorFlow, else host.",
        ),
    ] = None,
    strategy: Annotated[
        StrategyName,
        typer.Option(
            case_sensitive=False,
            help="tf.distribute strategy; multi-worker reads $TF_CONFIG. JAX and PyTorch: auto or one-device.",
        ),
    ] = StrategyName.auto,
    holdout: Annotated[
        int,
        typer.Option(help="Hold this many training images out for validation. Default 0: validate on the test split."),
    ] = 0,
    limit_train: Annotated[
        int | None, typer.Option("--limit-train", help="Train on only this many training images (quick runs).")
    ] = None,
    train_split: Annotated[
        str,
        typer.Option(
            "--train-split",
            help="Images to train on, in TFDS's split syntax: train, 'test[:8000]', 'train[:90%]+test'.",
        ),
    ] = "train",
    eval_split: Annotated[
        str,
        typer.Option(
            "--eval-split",
            help="Images to validate and report on (the run's test split), in the same syntax: 'test[8000:]'.",
        ),
    ] = "test",
    select_on: Annotated[
        SelectOn | None,
        typer.Option(
            "--select-on",
            case_sensitive=False,
            help="Where to choose the best epoch (best.keras): holdout; test (its test accuracy is then optimistic); "
            "none (the final model, last.keras). Default: holdout with --holdout, else none.",
        ),
    ] = None,
    model_option: Annotated[
        list[str] | None,
        typer.Option("--model-option", "-m", help="Model option KEY=VALUE, e.g. width=0.5 or groups=2; repeatable."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a run with other settings in --workdir.")] = False,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
    json_progress: JsonProgressOption = False,
) -> None:
    """Train a model; the run folder gets best/last models, history, curves, logs and a report."""
    from ..models import model_info

    model_info(model)  # an unknown name fails before TensorFlow is imported (with cifarkit.training)
    if workdir is None:
        workdir = Path("runs") / model
        say(f"run folder: {workdir} (--workdir to choose another)", quiet)
    path, sample = find(data, quiet)
    from ..training.config import TrainConfig, check_request

    config = TrainConfig(
        model=model,
        workdir=str(workdir),
        data=str(path),
        sample=sample,
        verify=not no_verify,
        model_options=model_options(model_option),
        epochs=epochs,
        batch_size=batch_size,
        recipe=value(recipe),
        crop=crop,
        optimizer=value(optimizer),
        muon_scale=muon_scale,
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        schedule=value(schedule),
        label_smoothing=label_smoothing,
        averaging=value(averaging),
        whiten=whiten,
        warmup=warmup,
        tta=tta,
        seed=seed,
        precision=value(precision),
        jit=jit,
        steps_per_execution=steps_per_execution,
        validate_every=validate_every,
        augment_on=value(augment_on),
        strategy=value(strategy),
        holdout=holdout,
        limit_train=limit_train,
        train_split=train_split,
        eval_split=eval_split,
        select_on=value(select_on),
    )
    check_request(config)  # before TensorFlow loads (with the trainer): a mistyped option is answered at once
    from ..runtime.progress import progress_mode
    from ..training import train as run_training

    progress = progress_mode(quiet, json_progress)
    result = run_training(config, overwrite=overwrite, quiet=quiet, say=lambda m: say(m, quiet), progress=progress)
    _print_trained(result)


def _print_trained(result) -> None:
    """The line a finished run ends with (or that it had already finished)."""
    from ..training import REPORT_FILE

    if not result.report:  # a worker other than the chief: the chief reports
        typer.echo("worker finished; the chief wrote the run folder")
        return
    test = result.report.test
    line = (
        f"test accuracy {test.accuracy:.4f}, top-{test.top_k} {test.top5:.4f}"
        + (f", ten-crop {test.ten_crop_accuracy:.4f}" if test.ten_crop_accuracy is not None else "")
        + f" ({test.model}{_chosen(result.report)})"
        + (
            f"; last.keras {test.tta.accuracy:.4f}, with test-time {test.tta.views} {test.tta.tta_accuracy:.4f}"
            if test.tta is not None
            else ""
        )
    )
    if result.already_finished:
        typer.echo(
            f"{result.workdir} already holds this run, finished: {line}; nothing to do (--overwrite to train again)"
        )
        return
    report = result.report
    if report.selected_on == "test":
        typer.echo(
            f"warning: {report.test.model} was chosen on the test split: its test accuracy is optimistic", err=True
        )
    epochs_run, rate = report.epochs_run, report.images_per_second
    typer.echo(
        f"Trained {report.model} for {epochs_run} epoch{'' if epochs_run == 1 else 's'} in "
        f"{report.wall_seconds or 0:.1f} s "
        f"({'-' if rate is None else format(rate, ',.0f')} images/s): {line}; report: {result.workdir / REPORT_FILE}"
    )


def _chosen(report) -> str:
    """What the run's model is, after its file name: the final model, or the epoch chosen and on
    what (nothing for a report of an earlier version, which does not say)."""
    if report.selected_on is None:
        return ""
    if report.test.model == "last.keras":
        return ", the final model"
    epoch = f", epoch {report.best_epoch}" if report.best_epoch is not None else ""
    return f"{epoch} chosen on the {report.selected_on} split"
