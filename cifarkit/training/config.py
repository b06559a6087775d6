"""The defaults of a training run, and :func:`resolve`, which makes what a run is asked for
(:class:`TrainConfig`) its plan (:class:`TrainPlan`).

Defaults come from what the model declares in the registry (``training="paper"`` or
``"cifar"``, see :data:`TRAINING_DEFAULTS`) and its default recipe, never from its name, so a new
model states how it trains where it is registered.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from .plan import HOLDOUT_SPLIT, TrainConfig, TrainPlan  # noqa: F401  (HOLDOUT_SPLIT, TrainConfig: for importers)

if TYPE_CHECKING:
    from ..augment.recipes import Recipe

OPTIMIZERS = ("sgd", "adam", "muon")  # muon: cifarkit.training.muon.MuonSGD
MOMENTUM_OPTIMIZERS = ("sgd", "muon")  # those with --momentum and --nesterov
SCHEDULES = ("plateau", "cosine", "step", "warmup-linear", "warmup-cosine")  # the last two per step
AVERAGING = ("none", "ema", "lookahead")  # cifarkit.training.methods.WeightAverage
PRECISIONS = ("float32", "mixed")
# A model's default precision: mixed where the hardware computes bfloat16 natively (TensorFlow on a
# CPU with AVX-512 BF16 or AMX: whitenet trains 2.1x as fast there at the same accuracy,
# docs/RESULTS.md), float32 elsewhere (emulated bfloat16 is many times slower).
NATIVE_MIXED = "mixed-where-native"
# --optimizer muon: the convolution filters' rate over the run's rate (cifarkit.training.muon).
# 0.06 at whitenet's 1.5; airbench94_muon's 0.24 is for 200 steps of batch 2000 decaying from the
# start, and whitenet's 16 epochs (784 steps of 1024, under a warm-up) stalled near 75% training
# accuracy at it (docs/RESULTS.md). A quarter of it trains.
MUON_SCALE = 0.04
# At batch 128 and lr 0.05 (alexnet-cifar's 20 epochs, 7,800 steps): 0.025. Over 20 epochs 0.04
# and 0.15 ended 4.0 and +0.45 points from SGD with views, 0.5 +2.05 (docs/RESULTS.md).
CIFAR_MUON_SCALE = 0.5

# Section 5 of Krizhevsky et al. 2012: batch 128, momentum 0.9, weight decay 0.0005, learning rate
# 0.01 divided by 10 when the validation error stops improving, roughly 90 passes.
PAPER_DEFAULTS = dict(
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="plateau",
    batch_size=128,
    epochs=90,
    validate_every=1,
    muon_scale=CIFAR_MUON_SCALE,
)
# The usual CIFAR recipe for small networks: SGD with momentum, a higher rate annealed by a cosine.
CIFAR_DEFAULTS = dict(
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
    batch_size=128,
    epochs=30,
    validate_every=1,
    muon_scale=CIFAR_MUON_SCALE,
)
# airbench (Jordan 2024, arXiv 2404.00498), rewritten for a mean loss: its lr of 11.5 per 1024
# examples for a summed loss with Nesterov momentum 0.85 is 11.5 / (1 + 1 / 0.15) = 1.5 here,
# and its decoupled weight decay 0.0153 is an L2 gradient term of 0.0153 / 11.5 = 0.00133; batch
# 1024, label smoothing 0.2, warm-up to the rate over 23% of the steps then a linear decay,
# Lookahead, whitened first layer, flip-and-translate test-time augmentation. Epochs: what a
# 2-core CPU trains in under half an hour with whitenet at its default widths (airbench94 trains 10).
AIRBENCH_DEFAULTS = dict(
    optimizer="sgd",
    lr=1.5,
    momentum=0.85,
    nesterov=True,
    weight_decay=0.0153 / 11.5,
    schedule="warmup-linear",
    batch_size=1024,
    epochs=16,
    label_smoothing=0.2,
    averaging="lookahead",
    whiten=True,
    tta=("flip", "translate"),
    augment_on="device",
    precision=NATIVE_MIXED,
    # The test split every 4th epoch and the last: its per-epoch pass was 6% of the run's time, and
    # nothing is chosen on it (airbench evaluates once, at the end).
    validate_every=4,
    muon_scale=MUON_SCALE,
)
# Keyed by what a model declares (cifarkit.models.registry.KNOWN_TRAINING).
TRAINING_DEFAULTS = {"paper": PAPER_DEFAULTS, "cifar": CIFAR_DEFAULTS, "airbench": AIRBENCH_DEFAULTS}
ADAM_LR = 1e-3  # Adam's usual rate; SGD's would make it diverge
# Settings that change how fast a run goes, not what it computes: a resumed run may change them.
# Validation changes what is reported, not the weights (tests/training/test_validation_epochs.py).
RUNTIME_KEYS = ("jit", "steps_per_execution", "strategy", "validate_every")
# Where the run lives is not what it is: a run folder moved or copied elsewhere resumes there.
PLACE_KEYS = ("workdir",)


def model_defaults(model: str) -> dict:
    """The training defaults the registered ``model`` declares."""
    from ..models import model_info

    return TRAINING_DEFAULTS[model_info(model).training]


def defaults_by_model(key: str) -> str:
    """``key``'s default as the registered models declare it, most common last, for ``--help``:
    "90 for alexnet, 16 for whitenet, 30 otherwise"."""
    from ..models import list_models

    names_by_value: dict = {}
    for info in list_models():
        names_by_value.setdefault(TRAINING_DEFAULTS[info.training][key], []).append(info.name)
    common = max(names_by_value, key=lambda v: len(names_by_value[v]))

    def shown(value) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    rest = [f"{shown(value)} for {', '.join(names)}" for value, names in names_by_value.items() if value != common]
    return ", ".join(rest + [f"{shown(common)} otherwise"]) if rest else shown(common)


def training_summary(model: str) -> str:
    """One line of how ``model`` trains by default, for ``cifarkit models``."""
    d = model_defaults(model)
    return f"{d['epochs']} epochs, batch {d['batch_size']}, {d['optimizer']} lr {d['lr']:g}, {d['schedule']}"


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
        # Muon's scale was 0.04 for every run before it was recorded.
        "muon_scale": MUON_SCALE if config.get("optimizer") == "muon" else None,
        "select_on": default_selection(config.get("holdout") or 0),
        **config,
    }
    return {k: v for k, v in filled.items() if k not in RUNTIME_KEYS + PLACE_KEYS}
