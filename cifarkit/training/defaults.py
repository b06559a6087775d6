"""The training defaults a model declares (``training="paper"``, ``"cifar"`` or ``"airbench"``
where it is registered, :data:`TRAINING_DEFAULTS`), and how ``--help`` and ``cifarkit models``
show them. :func:`cifarkit.training.config.resolve` applies them to a run."""

from __future__ import annotations

# A model's default precision: mixed where the hardware computes bfloat16 natively (TensorFlow on a
# CPU with AVX-512 BF16 or AMX: whitenet trains 2.1x as fast there at the same accuracy,
# docs/RESULTS.md), float32 elsewhere (emulated bfloat16 is many times slower).
NATIVE_MIXED = "mixed-where-native"
# --optimizer muon: the convolution filters' rate over the run's rate (cifarkit.training.muon).
# 0.12 at whitenet's 1.5. At 12 epochs (588 steps of 1024, under a warm-up) 0.02, 0.04 and 0.08
# ended at 89.37, 91.06 and 91.56% with views (docs/RESULTS.md); 0.16 (airbench94_muon's rate of
# 0.24, set for 200 steps of batch 2000) stalled near 75% training accuracy over its first epochs.
MUON_SCALE = 0.08
# The one scale before runs recorded theirs: a Muon run folder without the key ran at it.
LEGACY_MUON_SCALE = 0.04
# At batch 128 and lr 0.05 (alexnet-cifar's 20 epochs, 7,800 steps): 0.025. Against SGD with
# views, 0.04 ended 4.0 points under, 0.15 0.45 over, 0.5 2.05 over and 1.0 1.9 (docs/RESULTS.md).
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
# The usual CIFAR recipe for small networks: the paper's, with a higher rate annealed by a cosine
# over fewer passes.
CIFAR_DEFAULTS = dict(PAPER_DEFAULTS, lr=0.05, schedule="cosine", epochs=30)
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
