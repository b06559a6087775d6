"""The CLI's choices are the library's: every enum value is accepted by the library and vice versa."""

import pytest
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.cli import options


def test_cli_choices_are_the_library_names():
    from cifarkit import export, pipeline, recipes, strategy
    from cifarkit.training import config as train
    from cifarkit.formats import tfrecord

    pairs = [
        (options.ExportFormat, export.FORMATS),
        (options.Encoding, tfrecord.ENCODINGS),
        (options.RecipeName, tuple(recipes.RECIPES)),
        (options.OptimizerName, train.OPTIMIZERS),
        (options.ScheduleName, train.SCHEDULES),
        (options.Precision, train.PRECISIONS),
        (options.StrategyName, strategy.STRATEGIES),
        (options.AugmentPlace, tuple(pipeline.AUGMENT_PLACES)),
    ]
    for enum, names in pairs:
        assert sorted(e.value for e in enum) == sorted(names), enum.__name__


@pytest.mark.parametrize("args, option", [
    (["export", "--format", "gif"], "--format"),
    (["export", "--encoding", "webp"], "--encoding"),
    (["augment-preview", "--recipe", "fancy"], "--recipe"),
    (["train", "lenet5", "--optimizer", "rmsprop"], "--optimizer"),
    (["train", "lenet5", "--schedule", "linear"], "--schedule"),
    (["train", "lenet5", "--precision", "float16"], "--precision"),
    (["train", "lenet5", "--strategy", "tpu"], "--strategy"),
    (["train", "lenet5", "--augment-on", "gpu"], "--augment-on"),
])  # fmt: skip
def test_a_bad_choice_is_a_usage_error_that_lists_the_choices(args, option, tmp_path):
    result = CliRunner().invoke(app, args + ["--data", str(tmp_path)])
    assert result.exit_code == 2
    assert option in result.stderr and "is not one of" in result.stderr
    assert "Traceback" not in result.output


def test_choices_are_listed_in_help_and_case_insensitive():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert "<sgd|adam>" in result.output
    # Each default as the models declare it (cifarkit.training.config.TRAINING_DEFAULTS).
    text = " ".join(result.output.split())
    assert "Default: 90 for alexnet, 16 for whitenet, 30 otherwise." in text
    assert "Default: 1024 for whitenet, 128 otherwise." in text
    assert "Default: 0.01 for alexnet, 1.5 for whitenet, 0.05 otherwise; 0.001 with adam." in text
    assert "plateau|cosine|step" in result.output
    assert options.ExportFormat("png") is options.ExportFormat.png
