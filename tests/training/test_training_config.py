"""Training defaults come from what a model declares in the registry, never from its name."""

from __future__ import annotations

import dataclasses

import pytest

from cifarkit.models import list_models, registry
from cifarkit.training.config import TrainConfig, resolve
from cifarkit.training.defaults import CIFAR_DEFAULTS, PAPER_DEFAULTS, TRAINING_DEFAULTS


@pytest.fixture
def scratch_registry(monkeypatch):
    """Models registered inside a test leave the registry as it was."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def _declare(name: str, **declaration) -> None:
    def build(num_classes: int = 10, input_shape=None):
        raise AssertionError("resolving a configuration builds nothing")

    registry.register_model(name, **declaration)(build)


def test_every_declarable_set_of_defaults_has_a_table_entry():
    assert sorted(TRAINING_DEFAULTS) == sorted(registry.KNOWN_TRAINING)


def test_alexnet_declares_the_paper_and_the_32x32_models_the_cifar_defaults():
    declared = {info.name: info.training for info in list_models()}
    assert declared.pop("alexnet") == "paper"
    assert declared.pop("whitenet") == "airbench"
    assert set(declared.values()) == {"cifar"}  # alexnet-cifar, lenet5, vgg11-19
    assert all(info.input_size == 32 for info in list_models() if info.name in declared)


@pytest.mark.usefixtures("scratch_registry")
def test_a_model_that_declares_the_paper_training_gets_it_whatever_its_name():
    _declare("my-paper-net", input_size=227, recipe="paper", training="paper")
    paper = resolve(TrainConfig(model="my-paper-net", workdir="run", data="data"))
    assert (
        paper.recipe.name,
        paper.crop,
        paper.optimizer,
        paper.lr,
        paper.momentum,
        paper.weight_decay,
        paper.schedule,
        paper.batch_size,
        paper.epochs,
    ) == ("paper", 227, "sgd", 0.01, 0.9, 5e-4, "plateau", 128, 90)


@pytest.mark.usefixtures("scratch_registry")
def test_recipe_and_training_defaults_are_declared_separately():
    _declare("small-paper-trained", input_size=32, recipe="cifar", training="paper")
    _declare("small-by-recipe", input_size=32, recipe="cifar")  # training defaults to the recipe's name
    mixed = resolve(TrainConfig(model="small-paper-trained", workdir="run", data="data"))
    assert (mixed.recipe.name, mixed.crop, mixed.lr, mixed.schedule, mixed.epochs) == ("cifar", 32, 0.01, "plateau", 90)
    plain = resolve(TrainConfig(model="small-by-recipe", workdir="run", data="data"))
    assert (plain.recipe.name, plain.lr, plain.schedule, plain.epochs) == ("cifar", 0.05, "cosine", 30)


@pytest.mark.parametrize(
    "model, table", [("alexnet", PAPER_DEFAULTS), ("vgg16", CIFAR_DEFAULTS), ("lenet5", CIFAR_DEFAULTS)]
)
def test_each_model_resolves_to_its_table_and_options_override_it(model, table):
    resolved = resolve(TrainConfig(model=model, workdir="run", data="data"))
    assert {k: getattr(resolved, k) for k in table if k != "muon_scale"} == {
        k: v for k, v in table.items() if k != "muon_scale"
    }
    muon = resolve(TrainConfig(model=model, workdir="run", data="data", optimizer="muon"))
    assert muon.muon_scale == table["muon_scale"]  # the model's Muon scale applies to Muon alone
    changed = resolve(TrainConfig(model=model, workdir="run", data="data", lr=0.2, schedule="step", epochs=3))
    assert (changed.lr, changed.schedule, changed.epochs) == (0.2, "step", 3)


def test_an_unknown_training_declaration_is_refused_at_registration():
    with pytest.raises(ValueError, match="training='fast'"):
        registry.register_model("x", input_size=32, recipe="cifar", training="fast")


def test_whitenet_declares_the_airbench_defaults_and_options_override_them():
    fast = resolve(TrainConfig(model="whitenet", workdir="run", data="data"))
    assert (
        fast.recipe.name,
        fast.batch_size,
        fast.optimizer,
        fast.nesterov,
        fast.momentum,
        fast.lr,
        fast.schedule,
        fast.label_smoothing,
        fast.averaging,
        fast.whiten,
        fast.tta,
        fast.augment_on,
    ) == (
        "airbench",
        1024,
        "sgd",
        True,
        0.85,
        1.5,
        "warmup-linear",
        0.2,
        "lookahead",
        True,
        ("flip", "translate"),
        "device",
    )
    plain = resolve(
        TrainConfig(
            model="whitenet",
            workdir="run",
            data="data",
            averaging="none",
            whiten=False,
            tta="none",
            label_smoothing=0.0,
            schedule="cosine",
        )
    )
    assert (plain.averaging, plain.whiten, plain.tta, plain.label_smoothing, plain.schedule) == (
        "none",
        False,
        (),
        0.0,
        "cosine",
    )
    # Models that declare none of the methods keep them off.
    other = resolve(TrainConfig(model="alexnet-cifar", workdir="run", data="data"))
    assert (other.averaging, other.whiten, other.tta, other.label_smoothing, other.nesterov) == (
        "none",
        False,
        (),
        0.0,
        False,
    )


@pytest.mark.parametrize(
    "field, bad, message",
    [("averaging", "swa", "--averaging"), ("tta", "rotate", "--tta"), ("warmup", 1.5, "--warmup")],
)
def test_bad_method_settings_are_usage_errors(field, bad, message):
    from cifarkit.errors import UsageError

    with pytest.raises(UsageError, match=message):
        resolve(TrainConfig(model="whitenet", workdir="run", data="data", **{field: bad}))


def test_a_run_folder_from_before_the_methods_is_the_same_run_as_the_same_command_now():
    from cifarkit.training.config import identity

    now = resolve(TrainConfig(model="alexnet-cifar", workdir="run", data="data")).to_json()
    before = {k: v for k, v in now.items() if k not in ("averaging", "whiten", "tta", "warmup", "nesterov")}
    assert identity(before) == identity(now)
    assert identity({**before, "whiten": True}) != identity(now)


def test_the_plan_carries_the_recipe_and_the_views_and_config_json_keeps_their_names():
    plan = resolve(TrainConfig(model="alexnet", workdir="run", data="data", crop=224, tta="translate, flip"))
    assert plan.recipe.ten_crop and plan.recipe.crop == plan.crop == 224 and plan.tta == ("flip", "translate")
    # Views asked as a tuple are the same views: one parser, whatever the form.
    assert resolve(TrainConfig(model="alexnet", workdir="run", data="data", tta=("translate", "flip"))).tta == plan.tta
    written = plan.to_json()
    assert (written["recipe"], written["crop"], written["tta"]) == ("paper", 224, "flip,translate")
    assert list(written) == [f.name for f in dataclasses.fields(TrainConfig)]
    # Only the paper's resize-then-crop recipe has ten different crops to average.
    assert not resolve(TrainConfig(model="lenet5", workdir="run", data="data")).recipe.ten_crop
