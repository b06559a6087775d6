"""The CLI's choices are the library's: every enum value is accepted by the library and vice versa."""

import pytest
from typer.testing import CliRunner

from cifarkit.cli import app, options


def _tables():
    from cifarkit.augment import recipes
    from cifarkit.formats import FORMATS, image_tree, tfrecord
    from cifarkit.modelio import export as model_export
    from cifarkit.readers import pipeline
    from cifarkit.runtime import strategy
    from cifarkit.training import config as train

    return [
        ("export", "--format", FORMATS),
        ("export", "--encoding", tfrecord.ENCODINGS),
        ("export", "--layout", image_tree.LAYOUTS),
        ("augment-preview", "--recipe", tuple(recipes.RECIPES)),
        ("train", "--optimizer", train.OPTIMIZERS),
        ("train", "--schedule", train.SCHEDULES),
        ("train", "--averaging", train.AVERAGING),
        ("train", "--precision", train.PRECISIONS),
        ("train", "--strategy", strategy.STRATEGIES),
        ("train", "--augment-on", pipeline.AUGMENT_PLACES),
        ("export-model", "--format", model_export.FORMATS),
        ("export-model", "--quantize", model_export.QUANTIZATIONS),
    ]


def test_help_lists_every_name_of_each_library_table():
    """The choices are made from the library's tables: a new entry there is a choice here."""
    from cifarkit.evaluation.tta import VIEWS

    for command, option, names in _tables():
        text = CliRunner().invoke(app, [command, "--help"]).output
        assert f"{option} <{'|'.join(names)}" in text, (command, option)
    for command in ("train", "evaluate"):
        text = " ".join(CliRunner().invoke(app, [command, "--help"]).output.split())
        assert all(view in text for view in VIEWS) and ",".join(VIEWS) in text


def test_jpeg_is_another_name_for_the_jpg_format():
    from cifarkit.formats.export import ExportOptions

    assert options.ExportFormat("jpeg").value == "jpeg" and ExportOptions(format="jpeg").format == "jpg"


@pytest.mark.parametrize(
    "args, option",
    [
        (["export", "--format", "gif"], "--format"),
        (["export", "--encoding", "webp"], "--encoding"),
        (["augment-preview", "--recipe", "fancy"], "--recipe"),
        (["train", "lenet5", "--optimizer", "rmsprop"], "--optimizer"),
        (["train", "lenet5", "--schedule", "linear"], "--schedule"),
        (["train", "lenet5", "--precision", "float16"], "--precision"),
        (["train", "lenet5", "--strategy", "tpu"], "--strategy"),
        (["train", "lenet5", "--augment-on", "gpu"], "--augment-on"),
        (["train", "lenet5", "--averaging", "swa"], "--averaging"),
        (["export", "--layout", "flat"], "--layout"),
        (["export-model", "run", "--quantize", "int4"], "--quantize"),
    ],
)
def test_a_bad_choice_is_a_usage_error_that_lists_the_choices(args, option, tmp_path):
    result = CliRunner().invoke(app, args + ["--data", str(tmp_path)])
    assert result.exit_code == 2
    assert option in result.stderr and "is not one of" in result.stderr
    assert "Traceback" not in result.output


def test_choices_are_listed_in_help_and_case_insensitive():
    result = CliRunner().invoke(app, ["train", "--help"])
    assert "<sgd|adam|muon>" in result.output
    # Each default as the models declare it (cifarkit.training.defaults.TRAINING_DEFAULTS).
    text = " ".join(result.output.split())
    assert "Default: 90 for alexnet, 16 for whitenet, 30 otherwise." in text
    assert "Default: 1024 for whitenet, 128 otherwise." in text
    assert "Default: 0.01 for alexnet, 1.5 for whitenet, 0.05 otherwise; 0.001 with adam." in text
    assert "plateau|cosine|step" in result.output
    assert options.ExportFormat("png") is options.ExportFormat.png
