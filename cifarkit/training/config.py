""":func:`resolve`, which makes what a run is asked for (:class:`TrainConfig`) its plan
(:class:`TrainPlan`): the choices checked, and every setting not asked for taken from the model.

Defaults come from what the model declares in the registry (``training="paper"`` or
``"cifar"``, see :data:`cifarkit.training.defaults.TRAINING_DEFAULTS`) and its default recipe,
never from its name, so a new model states how it trains where it is registered.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .defaults import ADAM_LR, LEGACY_MUON_SCALE, MUON_SCALE, NATIVE_MIXED, model_defaults
from .plan import HOLDOUT_SPLIT, TrainConfig, TrainPlan  # noqa: F401  (HOLDOUT_SPLIT, TrainConfig: for importers)

if TYPE_CHECKING:
    from ..augment.recipes import Recipe

OPTIMIZERS = ("sgd", "adam", "muon")  # muon: cifarkit.training.muon.MuonSGD
MOMENTUM_OPTIMIZERS = ("sgd", "muon")  # those with --momentum and --nesterov
SCHEDULES = ("plateau", "cosine", "step", "warmup-linear", "warmup-cosine")  # the last two per step
AVERAGING = ("none", "ema", "lookahead")  # cifarkit.training.methods.WeightAverage
PRECISIONS = ("float32", "mixed")
# Settings that change how fast a run goes, not what it computes: a resumed run may change them.
# Validation changes what is reported, not the weights (tests/training/test_validation_epochs.py).
RUNTIME_KEYS = ("jit", "steps_per_execution", "strategy", "validate_every")
# Where the run lives is not what it is: a run folder moved or copied elsewhere resumes there.
PLACE_KEYS = ("workdir",)


def resolve(config: TrainConfig) -> TrainPlan:
    """The run's plan: every ``None`` replaced by the model's default, every value checked (a bad
    one names itself), the recipe and the test-time views parsed once."""
    plan = _requested(config)
    plan = replace(
        plan,
        augment_on=plan.augment_on or _default_augment_place(),
        jit=plan.jit if plan.jit is not None else _default_jit(),
        precision=plan.precision or default_precision(model_defaults(plan.model).get("precision", "float32")),
    )
    _check_place(plan)
    return plan


def check_request(config: TrainConfig) -> None:
    """What :func:`resolve` checks, less the choices that ask Keras for its backend, and the
    model options' names, the data's path and the split specs' form: all without importing
    TensorFlow or Keras, so a mistyped option is answered before the seconds they take to load."""
    from ..models.registry import check_options
    from ..sources.source_path import check_source_path

    _requested(config)
    check_options(config.model, config.model_options)
    if config.data:
        check_source_path(Path(config.data).expanduser())
    check_split_form("--train-split", config.train_split)
    check_split_form("--eval-split", config.eval_split)


class _EverySplit(dict):
    """Counts in which every name is a split of 100 images: a spec resolved against it is
    checked for its form alone (which split names the data has is the data's to say)."""

    def __contains__(self, name) -> bool:
        return True

    def __getitem__(self, name) -> int:
        return 100


def check_split_form(option: str, spec: str) -> None:
    """A :class:`UsageError` for a split spec that is not TFDS's split syntax (``train[:80%]``)."""
    from ..readers.splits import resolve as resolve_spec

    try:
        resolve_spec(spec, _EverySplit())
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _requested(config: TrainConfig) -> TrainPlan:
    """The plan as asked, with the model's defaults and every value checked; the host or device
    choice and XLA are left to the model's declaration, else None (their defaults ask Keras)."""
    from ..models import model_info

    recipe = _recipe(config)
    defaults = model_defaults(config.model)
    optimizer = _choice("optimizer", config.optimizer or defaults["optimizer"], OPTIMIZERS)
    schedule = _choice("schedule", config.schedule or defaults["schedule"], SCHEDULES)
    if config.precision is not None and config.precision not in PRECISIONS:
        raise UsageError(f"--precision must be float32 or mixed. Received: precision={config.precision!r}")
    lr = config.lr if config.lr is not None else (defaults["lr"] if optimizer in MOMENTUM_OPTIMIZERS else ADAM_LR)
    asked = {f.name: getattr(config, f.name) for f in fields(TrainPlan) if hasattr(config, f.name)}
    plan = TrainPlan(
        **{
            **asked,
            **_method_defaults(config, defaults, optimizer),
            "recipe": recipe,
            "optimizer": optimizer,
            "schedule": schedule,
            "lr": float(lr),
            "epochs": config.epochs if config.epochs is not None else defaults["epochs"],
            "batch_size": config.batch_size if config.batch_size is not None else defaults["batch_size"],
            "validate_every": defaults["validate_every"] if config.validate_every is None else config.validate_every,
            "momentum": float(config.momentum if config.momentum is not None else defaults["momentum"])
            if optimizer in MOMENTUM_OPTIMIZERS
            else None,
            "weight_decay": float(config.weight_decay if config.weight_decay is not None else defaults["weight_decay"]),
            "augment_on": config.augment_on or defaults.get("augment_on"),
            "jit": config.jit,
            "data": str(Path(config.data).expanduser().resolve()) if config.data else None,
            "workdir": str(Path(config.workdir).expanduser().resolve()),
            "model_options": {**model_info(config.model).option_defaults, **config.model_options},
            "select_on": _selection(config),
        }
    )
    _check(plan)
    return plan


def _selection(config: TrainConfig) -> str:
    """Where the run chooses its best epoch: as asked, else on its held-out images, else nowhere.
    Only the split validation runs on can be chosen on."""
    from ..metadata.run_files import SELECT_HOLDOUT, SELECT_TEST, SELECTIONS, default_selection

    if config.select_on is None:
        return default_selection(config.holdout)
    select = _choice("select-on", config.select_on, SELECTIONS)
    if select == SELECT_HOLDOUT and not config.holdout:
        raise UsageError("--select-on holdout needs --holdout N: the training images to hold out and choose on")
    if select == SELECT_TEST and config.holdout:
        raise UsageError(
            f"--select-on test: with --holdout {config.holdout} validation runs on the held-out images, not on "
            "the test split (--select-on holdout)"
        )
    return select


def _recipe(config: TrainConfig) -> Recipe:
    """The recipe asked for, else the model's; ``--crop`` applied and checked."""
    from ..augment.recipes import get_recipe
    from ..models import model_info

    return get_recipe(config.recipe or _default_recipe(config, model_info(config.model).recipe), config.crop)


def _method_defaults(config: TrainConfig, defaults: dict, optimizer: str) -> dict:
    """The trainer's methods (label smoothing, Nesterov, averaging, whitening, warm-up, TTA, Muon's scale) as
    asked, else as the model's training defaults declare them, else off; checked."""
    from ..evaluation.tta import parse_views

    def pick(key, off):
        value = getattr(config, key)
        return value if value is not None else defaults.get(key, off)

    averaging = _choice("averaging", pick("averaging", "none"), AVERAGING)
    warmup = pick("warmup", None)
    if warmup is not None and not 0 <= warmup < 1:
        raise UsageError(f"--warmup must be a fraction in [0, 1). Received: warmup={warmup}")
    return dict(
        label_smoothing=float(pick("label_smoothing", 0.0)),
        averaging=averaging,
        whiten=bool(pick("whiten", False)),
        nesterov=bool(pick("nesterov", False)) if optimizer in MOMENTUM_OPTIMIZERS else None,
        warmup=warmup,
        tta=parse_views(pick("tta", ())),
        muon_scale=_muon_scale(config, defaults, optimizer),
    )


def _muon_scale(config: TrainConfig, defaults: dict, optimizer: str) -> float | None:
    """Muon's filter rate over the run's rate: as asked, else the model's default; None without Muon."""
    if optimizer != "muon":
        if config.muon_scale is not None:
            raise UsageError(f"--muon-scale is Muon's: it needs --optimizer muon. Received: optimizer={optimizer!r}")
        return None
    scale = float(config.muon_scale if config.muon_scale is not None else defaults.get("muon_scale", MUON_SCALE))
    if not (scale > 0 and math.isfinite(scale)):
        raise UsageError(f"--muon-scale must be a positive number. Received: muon_scale={config.muon_scale}")
    return scale


def _default_recipe(config: TrainConfig, model_recipe: str) -> str:
    """The model's own recipe; for a 32x32 model (the cifar recipe) on MNIST-family data, the
    mnist recipe (LeNet-5's 28 -> 32 zero padding), so ``cifarkit train lenet5 --data mnist/`` is
    the paper's setting without options."""
    from ..augment.recipes import RECIPES
    from ..sources.idx import is_mnist_family

    if (
        model_recipe == "cifar"
        and "mnist" in RECIPES
        and config.data
        and is_mnist_family(Path(config.data).expanduser())
    ):
        return "mnist"
    return model_recipe


def _choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(f"--{option} must be one of {', '.join(choices)}. Received: {option}={value!r}")
    return value


def _check(resolved: TrainPlan) -> None:
    """The checks of a resolved configuration, in the order the options are reported."""
    from ..readers.pipeline import check_place
    from ..runtime.strategy import STRATEGIES

    _check_positive("epochs", resolved.epochs)
    _check_positive("batch-size", resolved.batch_size)
    _check_positive("steps-per-execution", resolved.steps_per_execution)
    _check_positive("validate-every", resolved.validate_every)
    if resolved.schedule == "plateau" and resolved.validate_every != 1:
        raise UsageError(
            "--schedule plateau cuts the learning rate on each epoch's validation accuracy: it needs "
            f"--validate-every 1. Received: validate_every={resolved.validate_every}"
        )
    if not resolved.lr > 0 or not math.isfinite(resolved.lr):
        raise UsageError(f"--lr must be a positive number. Received: lr={resolved.lr}")
    if resolved.momentum is not None and not 0 <= resolved.momentum < 1:
        raise UsageError(f"--momentum must be in [0, 1). Received: momentum={resolved.momentum}")
    if not resolved.weight_decay >= 0:
        raise UsageError(f"--weight-decay must be 0 or more. Received: weight_decay={resolved.weight_decay}")
    if not 0 <= resolved.label_smoothing < 1:
        raise UsageError(f"--label-smoothing must be in [0, 1). Received: label_smoothing={resolved.label_smoothing}")
    if resolved.holdout < 0:
        raise UsageError(f"--holdout must be 0 or more images. Received: holdout={resolved.holdout}")
    if resolved.limit_train is not None:
        _check_positive("limit-train", resolved.limit_train)
    if resolved.augment_on is not None:
        check_place(resolved.augment_on)
    _choice("strategy", resolved.strategy, STRATEGIES)
    if resolved.data is None:
        raise UsageError("no data given (--data)")


def _check_place(resolved: TrainPlan) -> None:
    """Where augmentation runs, against the Keras backend (which this imports)."""
    from ..readers.pipeline import check_place
    from ..runtime.strategy import keras_backend

    check_place(resolved.augment_on)
    backend = keras_backend()
    if backend != "tensorflow" and resolved.augment_on == "host":
        raise UsageError(
            f"--augment-on host is TensorFlow's tf.data; on the {backend} backend the model's first "
            "layer augments on the device (--augment-on device, the default there)"
        )


def _check_positive(option: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"--{option} must be a positive integer. Received: {option.replace('-', '_')}={value!r}")


def _gpu_visible() -> bool:
    from ..runtime.strategy import gpu_visible

    return gpu_visible()


def _default_augment_place() -> str:
    # On a GPU the host would be the bottleneck (the paper recipe makes 227x227 float crops);
    # on a CPU both places are the same processor, and the host pipeline overlaps with the step.
    # Without TensorFlow there is no host pipeline: the device, wherever it is.
    from ..runtime.strategy import keras_backend

    return "device" if keras_backend() != "tensorflow" or _gpu_visible() else "host"


def _default_jit() -> bool:
    """XLA on a GPU with TensorFlow; always on JAX (its jit, without which every op runs on its
    own); off on PyTorch, where Keras's jit_compile is torch.compile, whose first step compiles
    for a long time (26 s for a tiny network on the 2-core CPU)."""
    from ..runtime.strategy import keras_backend

    backend = keras_backend()
    return backend == "jax" or (backend == "tensorflow" and _gpu_visible())


def default_precision(declared: str) -> str:
    """The precision a model's declaration means on this machine: :data:`NATIVE_MIXED` is mixed
    only for TensorFlow on a CPU that computes bfloat16 natively."""
    from ..runtime.strategy import keras_backend
    from ..runtime.tensorflow import cpu_has_bfloat16

    if declared != NATIVE_MIXED:
        return declared
    native = keras_backend() == "tensorflow" and not _gpu_visible() and bool(cpu_has_bfloat16())
    return "mixed" if native else "float32"


# What a run ran with whose config.json lacks these methods' keys (a run folder that predates them).
METHODS_OFF = {"averaging": "none", "whiten": False, "tta": "", "warmup": None}


def identity(config: dict) -> dict:
    """The settings that make a run what it is: a resumed run must match them. ``config`` is
    :meth:`TrainPlan.to_json`, or what a run's config.json holds (``RunConfigFile.written``)."""
    from ..metadata.run_files import default_selection

    filled = {
        **METHODS_OFF,
        "nesterov": False if config.get("optimizer") == "sgd" else None,
        "muon_scale": LEGACY_MUON_SCALE if config.get("optimizer") == "muon" else None,
        "select_on": default_selection(config.get("holdout") or 0),
        **config,
    }
    return {k: v for k, v in filled.items() if k not in RUNTIME_KEYS + PLACE_KEYS}
