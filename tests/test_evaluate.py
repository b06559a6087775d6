"""``cifarkit evaluate`` and ``cifarkit predict`` on a model trained here, from a run folder or a
``.keras`` file alone."""

from __future__ import annotations

import csv
import json
import shutil

import imageio.v3 as iio
import numpy as np
import pytest
import synth
from synth import make_learnable_cifar10
from typer.testing import CliRunner

from cifarkit.cli import app

runner = CliRunner()


train_args = synth.lenet5_train_args


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # Noisier than the training tests' data, so that the model makes some mistakes to count.
    return make_learnable_cifar10(tmp_path_factory.mktemp("eval-data"), per_batch=40, test=60, noise=0.85, seed=3)


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("eval-runs") / "run"
    result = runner.invoke(app, train_args(data, workdir))
    assert result.exit_code == 0, result.output
    return workdir


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_evaluate_a_run_gives_the_reported_accuracy_and_a_consistent_confusion_matrix(run, data):
    result = runner.invoke(app, ["evaluate", str(run), "--quiet"])
    assert result.exit_code == 0, result.output
    out = run / "eval-test"
    metrics = json.loads((out / "metrics.json").read_text())
    report = json.loads((run / "report.json").read_text())
    assert metrics["accuracy"] == pytest.approx(report["test"]["accuracy"], abs=1e-12)
    assert metrics["top_k_accuracy"] == pytest.approx(report["test"]["top5"], abs=1e-12)
    assert metrics["images"] == 60 and metrics["split"] == "test"
    assert f"accuracy:       {metrics['accuracy']:.4f}" in result.stdout

    rows = _rows(out / "confusion.csv")
    assert rows[0][1:] == synth.CIFAR10_CLASSES
    matrix = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    per_class = np.bincount(data.test_labels, minlength=10)
    np.testing.assert_array_equal(matrix.sum(axis=1), per_class)  # rows: the true classes
    assert np.trace(matrix) / matrix.sum() == pytest.approx(metrics["accuracy"])

    per_class_rows = _rows(out / "per_class.csv")[1:]
    for (name, correct, total, accuracy), i in zip(per_class_rows, range(10)):
        assert name == synth.CIFAR10_CLASSES[i] and int(correct) == matrix[i, i] and int(total) == per_class[i]
        assert float(accuracy) == pytest.approx(matrix[i, i] / per_class[i], abs=1e-6)
        assert f"{name}" in result.stdout

    picture = iio.imread(out / "confusion.png")
    assert picture.ndim == 3 and picture.shape[2] == 3 and min(picture.shape[:2]) > 10 * 40


@pytest.mark.parametrize("option", ["--data", "--source"])  # --source as in export and stats
def test_a_keras_file_with_data_gives_the_same_numbers(run, data, tmp_path, option):
    out = tmp_path / "file-eval"
    result = runner.invoke(
        app, ["evaluate", str(run / "last.keras"), option, str(data.path), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    from_file = json.loads((out / "metrics.json").read_text())
    report = json.loads((run / "report.json").read_text())
    assert from_file["accuracy"] == pytest.approx(report["test"]["accuracy"], abs=1e-12)


def _run_folder_copy(run, tmp_path, models: dict[str, str], **config_changes):
    """A copy of ``run``'s config.json (changed by ``config_changes``; None removes a key) with
    model files named by ``models``: {name in the copy: file of the run}."""
    folder = tmp_path / "copy"
    folder.mkdir()
    config = json.loads((run / "config.json").read_text())
    config.update(config_changes)
    config = {key: value for key, value in config.items() if value is not None}
    (folder / "config.json").write_text(json.dumps(config))
    for name, original in models.items():
        shutil.copyfile(run / original, folder / name)
    return folder


def test_a_run_without_a_holdout_stands_for_its_final_model(run):
    from cifarkit.modelio.model_path import resolve_model_path

    assert json.loads((run / "config.json").read_text())["select_on"] == "none"
    assert not (run / "best.keras").exists()  # nothing was chosen on the test split
    assert resolve_model_path(run)[0] == run / "last.keras"
    result = runner.invoke(app, ["evaluate", str(run), "--quiet"])
    assert result.exit_code == 0 and f"model:          {run / 'last.keras'}" in result.stdout


@pytest.mark.parametrize(
    "models, changes, picked",
    [
        # An earlier version's run: validated on the test split, best.keras chosen there; no select_on key.
        ({"best.keras": "last.keras", "last.keras": "last.keras"}, {"select_on": None}, "last.keras"),
        ({"best.keras": "last.keras"}, {"select_on": None}, "best.keras"),  # best.keras alone still evaluates
        # An earlier version's run with a holdout chose on it: best.keras is its model.
        ({"best.keras": "last.keras", "last.keras": "last.keras"}, {"select_on": None, "holdout": 20}, "best.keras"),
        ({"best.keras": "last.keras", "last.keras": "last.keras"}, {"select_on": "test"}, "best.keras"),
    ],
)
def test_the_model_a_run_folder_stands_for(run, tmp_path, models, changes, picked):
    from cifarkit.modelio.model_path import resolve_model_path

    folder = _run_folder_copy(run, tmp_path, models, **changes)
    assert resolve_model_path(folder)[0] == folder / picked


def test_an_earlier_versions_run_folder_with_best_keras_alone_still_evaluates(run, tmp_path):
    folder = _run_folder_copy(run, tmp_path, {"best.keras": "last.keras"}, select_on=None)
    result = runner.invoke(app, ["evaluate", str(folder), "--quiet"])
    assert result.exit_code == 0, result.output
    assert f"model:          {folder / 'best.keras'}" in result.stdout
    metrics = json.loads((folder / "eval-test" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(json.loads((run / "report.json").read_text())["test"]["accuracy"])


def test_ten_crop_evaluation_averages_ten_views(run, data):
    from cifarkit.data import open_data
    from cifarkit.evaluation.evaluate import evaluate_model
    from cifarkit.modelio.keras_file import load_model

    model = load_model(run / "last.keras")
    source = open_data(data.path)
    centre = evaluate_model(model, source, "test")
    ten = evaluate_model(model, source, "test", ten_crop=True)
    assert ten.probabilities.shape == centre.probabilities.shape == (60, 10)
    np.testing.assert_allclose(ten.probabilities.sum(axis=1), 1, atol=1e-5)
    assert not np.allclose(ten.probabilities, centre.probabilities)  # other views, other numbers
    assert ten.ten_crop and 0 <= ten.accuracy <= 1

    result = runner.invoke(app, ["evaluate", str(run), "--ten-crop", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval-test-ten-crop" / "metrics.json").read_text())
    assert metrics["ten_crop"] is True and metrics["accuracy"] == pytest.approx(ten.accuracy)


def test_a_test_time_evaluation_hands_back_its_centre_view_without_scoring_it_twice(run, data, monkeypatch):
    from cifarkit.data import open_data
    from cifarkit.evaluation import evaluate
    from cifarkit.modelio.keras_file import load_model

    model, source = load_model(run / "last.keras"), open_data(data.path)
    centre = evaluate.evaluate_model(model, source, "test")
    scored = []
    original = evaluate.scorer

    def counting(m):
        size, infer = original(m)
        return size, lambda images: scored.append(len(images)) or infer(images)

    monkeypatch.setattr(evaluate, "scorer", counting)
    views = evaluate.evaluate_model(model, source, "test", tta=("flip", "translate"))
    assert sum(scored) == 6 * 60  # six views of each of the 60 images, the centre one among them
    assert not np.allclose(views.probabilities, centre.probabilities)
    again = views.centre_view()
    np.testing.assert_array_equal(again.probabilities, centre.probabilities)  # the same numbers, bit for bit
    assert again.tta == () and again.accuracy == centre.accuracy and again.labels.tolist() == centre.labels.tolist()
    assert centre.centre_view() is centre

    # `evaluate --tta` prints and writes both numbers from its one pass.
    monkeypatch.undo()
    result = runner.invoke(app, ["evaluate", str(run), "--tta", "flip,translate", "--quiet"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "eval-test-flip-translate" / "metrics.json").read_text())
    assert metrics["accuracy"] == views.accuracy and metrics["centre_view_accuracy"] == centre.accuracy
    assert f"without views:  {centre.accuracy:.4f}" in result.stdout


def test_predict_images_of_any_size_matches_evaluation(run, data, tmp_path):
    from cifarkit.data import open_data
    from cifarkit.evaluation.evaluate import evaluate_model
    from cifarkit.modelio.keras_file import load_model

    folder = tmp_path / "images"
    folder.mkdir()
    iio.imwrite(folder / "test_0.png", data.test_images[0])  # exactly a test image: no resizing
    iio.imwrite(folder / "test_1.png", data.test_images[1])
    iio.imwrite(folder / "wide.jpg", np.full((48, 80, 3), synth_colour(3), np.uint8), quality=95)
    iio.imwrite(folder / "grey.png", np.full((17, 23), 128, np.uint8))  # grey: repeated to RGB
    big = np.repeat(np.repeat(data.test_images[2], 4, axis=0), 4, axis=1)  # 128x128: brought to 32x32
    iio.imwrite(folder / "big.png", big)
    out_csv = tmp_path / "predictions.csv"
    result = runner.invoke(app, ["predict", str(run), str(folder), "--top-k", "10", "--csv", str(out_csv)])
    assert result.exit_code == 0, result.output

    rows = _rows(out_csv)
    assert rows[0][:5] == ["file", "height", "width", "class_1", "probability_1"]
    by_name = {row[0].rsplit("/", 1)[-1]: row for row in rows[1:]}
    assert sorted(by_name) == ["big.png", "grey.png", "test_0.png", "test_1.png", "wide.jpg"]
    assert by_name["wide.jpg"][1:3] == ["48", "80"] and by_name["grey.png"][1:3] == ["17", "23"]
    for row in by_name.values():
        probabilities = [float(p) for p in row[4::2]]
        assert sorted(row[3::2]) == sorted(synth.CIFAR10_CLASSES)  # top 10 of 10: every class once
        assert sum(probabilities) == pytest.approx(1, abs=1e-4)
        assert probabilities == sorted(probabilities, reverse=True)
    for name in by_name:
        assert name in result.stdout

    # The same preprocessing as evaluation: a test image gets the probabilities evaluate gave it.
    evaluation = evaluate_model(load_model(run / "last.keras"), open_data(data.path), "test")
    for i in (0, 1):
        row = by_name[f"test_{i}.png"]
        predicted = dict(zip(row[3::2], map(float, row[4::2])))
        expected = dict(zip(synth.CIFAR10_CLASSES, evaluation.probabilities[i].tolist()))
        for name in synth.CIFAR10_CLASSES:
            assert predicted[name] == pytest.approx(expected[name], abs=2e-6)


def synth_colour(label: int):
    from synth import PALETTE

    return PALETTE[label].astype(np.uint8)


def test_predict_one_file_prints_a_table_and_writes_the_csv_beside_the_model(run, tmp_path):
    model = tmp_path / "model.keras"
    shutil.copyfile(run / "last.keras", model)
    image = tmp_path / "one.png"
    iio.imwrite(image, np.full((32, 32, 3), synth_colour(0), np.uint8))
    result = runner.invoke(app, ["predict", str(model), str(image), "--top-k", "3"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    line = next(line for line in lines if "one.png" in line)
    assert len(line.split()) == 1 + 2 * 3  # file, then three (class, probability) pairs
    assert not any("wrote" in line for line in lines)  # stdout is the table alone
    written = tmp_path / "model-predictions.csv"
    assert f"wrote {written}" in result.stderr
    rows = _rows(written)
    assert [row[0] for row in rows[1:]] == [str(image)]
    assert rows[1][3::2] == line.split()[1::2]  # the same three classes, in the same order


def test_predict_from_a_run_folder_writes_the_csv_into_it(run, tmp_path):
    image = tmp_path / "two.png"
    iio.imwrite(image, np.full((32, 32, 3), synth_colour(1), np.uint8))
    result = runner.invoke(app, ["predict", str(run), str(image)])
    assert result.exit_code == 0, result.output
    assert [row[0] for row in _rows(run / "predictions.csv")[1:]] == [str(image)]


def _good_and_bad_images(folder):
    """Three readable images and, among them, a truncated PNG and a text file named .jpg."""
    folder.mkdir()
    good = []
    for label in (0, 4, 7):
        good.append(folder / f"good_{label}.png")
        iio.imwrite(good[-1], np.full((32, 32, 3), synth_colour(label), np.uint8))
    truncated = folder / "cut.png"
    iio.imwrite(truncated, np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8))
    synth.truncate_file(truncated, 0.5)
    text = folder / "notes.jpg"
    text.write_text("not a picture")
    return good, truncated, text


def test_predict_skip_bad_names_each_bad_file_and_predicts_the_others_as_alone(run, tmp_path):
    good, truncated, text = _good_and_bad_images(tmp_path / "mixed")
    alone = runner.invoke(app, ["predict", str(run), *map(str, good), "--csv", str(tmp_path / "alone.csv")])
    assert alone.exit_code == 0, alone.output

    files = [good[0], truncated, good[1], text, good[2]]
    out_csv = tmp_path / "mixed.csv"
    result = runner.invoke(app, ["predict", str(run), *map(str, files), "--skip-bad", "--csv", str(out_csv)])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"skipped {truncated}: cannot decode image (OSError: image file is truncated)",
        f"skipped {text}: cannot decode image (UnidentifiedImageError: cannot identify image file '{text}')",
        "predicted 3 of 5 images; skipped 2",
        f"wrote {out_csv}",
    ]
    assert result.stdout == alone.stdout  # the same table, row for row
    assert _rows(out_csv) == _rows(tmp_path / "alone.csv")


def test_predict_skip_bad_of_a_folder_fails_only_when_nothing_could_be_read(run, tmp_path):
    good, truncated, text = _good_and_bad_images(tmp_path / "mixed")
    result = runner.invoke(app, ["predict", str(run), str(tmp_path / "mixed"), "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert sorted(row[0] for row in _rows(run / "predictions.csv")[1:]) == sorted(map(str, good))
    assert "predicted 3 of 5 images; skipped 2" in result.stderr.splitlines()

    out_csv = tmp_path / "none.csv"
    result = runner.invoke(app, ["predict", str(run), str(truncated), str(text), "--skip-bad", "--csv", str(out_csv)])
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == "cifarkit: error: no image could be read: all 2 skipped"
    assert [line.split(":")[0] for line in result.stderr.splitlines()[:2]] == [
        f"skipped {truncated}",
        f"skipped {text}",
    ]
    assert result.stdout == "" and not out_csv.exists()


def test_predict_without_skip_bad_refuses_a_bad_file_naming_the_flag(run, tmp_path):
    good, truncated, _ = _good_and_bad_images(tmp_path / "mixed")
    out_csv = tmp_path / "p.csv"
    result = runner.invoke(app, ["predict", str(run), str(good[0]), str(truncated), "--csv", str(out_csv)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (
        f"cifarkit: error: {truncated}: cannot decode image (OSError: image file is truncated) "
        "(--skip-bad to go on without it)\n"
    )
    assert result.stdout == "" and not out_csv.exists()


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["evaluate", "{empty}"], 1, "no best.keras or last.keras"),
        (["evaluate", "{text}"], 2, "a run folder, a .keras or .tflite file or a SavedModel folder"),
        (["evaluate", "{missing}"], 1, "no such run folder or model file"),
        (["predict", "{run}", "{text}"], 1, "cannot decode image"),
        (["predict", "{run}", "{fake_png}"], 1, "cannot decode image"),  # imageio's message has several lines
        (["predict", "{run}", "{missing}"], 1, "no such file or folder"),
        (["evaluate", "{run}", "--split", "validation"], 2, "no split 'validation'"),
        (["evaluate", "{broken}"], 1, "config.json: not a training run's configuration (the top level: Invalid JSON"),
    ],
)
def test_errors_are_one_line(run, tmp_path, args, code, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.png").write_text("not an image either")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    names = {
        "empty": tmp_path / "empty",
        "text": tmp_path / "notes.txt",
        "missing": tmp_path / "nothing",
        "run": run,
        "broken": tmp_path / "broken",
        "fake_png": tmp_path / "fake.png",
    }
    result = runner.invoke(app, [a.format(**names) for a in args])
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert result.stderr.endswith(errors[0] + "\n"), result.stderr  # the message ends the output, whole
    assert "Traceback" not in result.output


def test_confusion_image_shades_by_row_share():
    from cifarkit.evaluation import plots

    matrix = np.array([[8, 2, 0], [0, 10, 0], [5, 0, 5]])
    image = plots.confusion_image(matrix, ["a", "b", "c"])
    assert image.dtype == np.uint8 and image.shape[2] == 3
    full = tuple(int(v) for v in plots.HEAT_HIGH)
    assert (image == full).all(axis=2).sum() > 100  # row b is all in one cell: the darkest shade


def test_predict_with_a_model_of_grey_images_reads_files_in_its_one_channel(tmp_path):
    from cifarkit.evaluation.predict import to_grey

    synth.make_mnist_folder(tmp_path / "mnist", train=40, test=20)
    workdir = tmp_path / "run"
    args = ["train", "lenet5", "--data", str(tmp_path / "mnist"), "--workdir", str(workdir), "--epochs", "1"]
    trained = runner.invoke(app, [*args, "--batch-size", "8", "-q"])
    assert trained.exit_code == 0, trained.output
    digit = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    iio.imwrite(tmp_path / "digit.png", digit)
    result = runner.invoke(app, ["predict", str(workdir), str(tmp_path / "digit.png")])
    assert result.exit_code == 0, result.output  # a TypeError on 3 channels into 1 before
    assert "digit.png" in result.stdout
    # A grey file read as RGB comes back to exactly its own values.
    rgb = np.repeat(digit[..., None], 3, axis=-1)
    np.testing.assert_array_equal(to_grey(rgb)[..., 0], digit)
