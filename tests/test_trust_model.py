"""Models from elsewhere never run unasked: a SavedModel or ``.tflite`` file that this user's
``export-model`` did not write is refused by ``predict`` and ``evaluate`` without ``--trust-model``;
a run folder is read through its own ``.keras`` file only; a ``.keras`` file loads in safe mode;
a damaged ``.tflite`` file that crashes the interpreter is one line, never a signal here."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from synth import make_learnable_cifar10
from typer.testing import CliRunner

from cifarkit.cli import app

runner = CliRunner()
MUTATION_SEEDS = range(12)


def invoke(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def one_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("cifarkit: error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def write_file_savedmodel(folder: Path, marker: Path) -> Path:
    """A SavedModel with cifarkit's signature and metadata whose serving function also writes
    ``marker``: what a SavedModel from elsewhere may do when its signature is called."""
    import tensorflow as tf

    names = [f"class{i}" for i in range(10)]

    class WritesAFile(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
        def serve(self, images):
            tf.io.write_file(str(marker), "the SavedModel ran")
            count = tf.shape(images)[0]
            return {
                "probabilities": tf.fill([count, 10], 0.1),
                "class_names": tf.tile(tf.constant([names]), [count, 1]),
            }

        @tf.function(input_signature=[])
        def metadata(self):
            return {"class_names": tf.constant(names), "image_size": tf.constant(32)}

    module = WritesAFile()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A trained run, its SavedModel and TFLite exports, an image, and a SavedModel that writes a file."""
    root = tmp_path_factory.mktemp("trust")
    data = make_learnable_cifar10(root / "data", per_batch=10, test=20, noise=0.85, seed=3)
    run = root / "run"
    result = invoke(
        "train", "lenet5", "--data", data.path, "--workdir", run, "--epochs", "1", "--batch-size", "16", "--quiet"
    )
    assert result.exit_code == 0, result.output
    exports = {}
    for fmt in ("savedmodel", "tflite"):
        result = invoke("export-model", run, "--format", fmt, "--quiet")
        assert result.exit_code == 0, result.output
        exports[fmt] = Path(result.stdout.split("wrote ", 1)[1].split(" (", 1)[0])
    iio.imwrite(root / "image.png", data.test_images[0])
    marker = root / "the-savedmodel-ran.txt"
    evil = write_file_savedmodel(root / "evil", marker)
    return {
        "root": root,
        "data": data,
        "run": run,
        "image": root / "image.png",
        "marker": marker,
        "evil": evil,
        **exports,
    }


def test_a_savedmodel_from_elsewhere_is_refused_in_one_line_and_never_runs(made, tmp_path):
    marker = made["marker"]
    marker.unlink(missing_ok=True)
    error = one_error(invoke("predict", made["evil"], made["image"], "--csv", tmp_path / "p.csv"))
    assert str(made["evil"]) in error and "--trust-model" in error and "no record of export-model" in error
    error = one_error(invoke("evaluate", made["evil"], "--data", made["data"].path, "--out", tmp_path / "e", "--quiet"))
    assert "--trust-model" in error
    assert not marker.exists() and not (tmp_path / "p.csv").exists() and not (tmp_path / "e").exists()

    # Asked for, it runs: the user's choice.
    result = invoke("predict", made["evil"], made["image"], "--csv", tmp_path / "p.csv", "--trust-model")
    assert result.exit_code == 0, result.output
    assert marker.read_text() == "the SavedModel ran"
    marker.unlink()


def test_a_run_folder_is_read_through_its_own_keras_file_not_a_savedmodel_lying_in_it(made, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(made["run"], run, ignore=shutil.ignore_patterns("exported"))
    shutil.copytree(made["evil"], run / "1")  # a numbered SavedModel beside last.keras
    made["marker"].unlink(missing_ok=True)
    result = invoke("predict", run, made["image"], "--csv", tmp_path / "p.csv")
    assert result.exit_code == 0, result.output
    result = invoke("evaluate", run, "--quiet")
    assert result.exit_code == 0, result.output
    assert "model:          " + str(run / "last.keras") in result.stdout
    assert not made["marker"].exists()


def test_what_export_model_wrote_runs_unasked_and_a_changed_copy_does_not(made, tmp_path):
    for fmt in ("savedmodel", "tflite"):
        result = invoke("predict", made[fmt], made["image"], "--csv", tmp_path / f"{fmt}.csv")
        assert result.exit_code == 0, result.output

    # The graph swapped for another: the record's digest no longer matches.
    swapped = tmp_path / "swapped"
    shutil.copytree(made["savedmodel"], swapped)
    shutil.copy(made["evil"] / "saved_model.pb", swapped / "saved_model.pb")
    error = one_error(invoke("predict", swapped, made["image"], "--csv", tmp_path / "p.csv"))
    assert "saved_model.pb is not what export-model wrote" in error
    # A genuine record copied into a model from elsewhere: the digests do not match either.
    dressed = tmp_path / "dressed"
    shutil.copytree(made["evil"], dressed)
    shutil.copytree(made["savedmodel"] / "assets.extra", dressed / "assets.extra")
    error = one_error(invoke("predict", dressed, made["image"], "--csv", tmp_path / "p.csv"))
    assert "is not what export-model wrote" in error
    # A TFLite file copied without its record, or given another one's.
    alone = tmp_path / "alone.tflite"
    shutil.copy(made["tflite"], alone)
    assert "no record of export-model" in one_error(invoke("predict", alone, made["image"]))
    assert not made["marker"].exists()


def test_a_record_signed_with_another_key_is_refused(made, tmp_path, monkeypatch):
    """A folder from another machine brings a record that verifies there, not here: the MAC
    covers the digests under a key that never leaves the machine that wrote it."""
    from cifarkit.modelio.trust import record_export

    forged = tmp_path / "forged"
    shutil.copytree(made["evil"], forged)
    monkeypatch.setenv("CIFARKIT_CONFIG_DIR", str(tmp_path / "elsewhere"))
    assert record_export(forged, "savedmodel") is None  # signed, but with another key
    monkeypatch.undo()
    record = json.loads((forged / "assets.extra" / "cifarkit-export.json").read_text())
    assert record["files"]["saved_model.pb"]  # the digests are right, only the key is not ours
    made["marker"].unlink(missing_ok=True)
    error = one_error(invoke("predict", forged, made["image"], "--csv", tmp_path / "p.csv"))
    assert "not signed on this machine" in error and "--trust-model" in error
    assert not made["marker"].exists()


def test_a_keras_file_loads_in_safe_mode_only(tmp_path):
    """A Lambda layer is Python bytecode in the file: refused, never deserialised into code."""
    import keras

    marker = tmp_path / "the-lambda-ran.txt"
    writes = eval(f"lambda x: x + len(open({str(marker)!r}, 'w').name) * 0")  # the path in its bytecode
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Lambda(writes)])
    marker.unlink()  # building the model called it once
    model.save(tmp_path / "code.keras")
    iio.imwrite(tmp_path / "image.png", np.zeros((32, 32, 3), np.uint8))
    error = one_error(invoke("predict", tmp_path / "code.keras", tmp_path / "image.png"))
    assert "code.keras: cannot load the model" in error
    assert not marker.exists()


def mutated(data: bytes, seed: int) -> bytes:
    """``data`` with a few bytes overwritten, mostly in the flatbuffer's tables near the start."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(rng.choice([1, 2, 4, 8, 16])):
        index = rng.randrange(min(len(out), 4096)) if rng.random() < 0.7 else rng.randrange(len(out))
        out[index] = rng.randrange(256)
    return bytes(out)


def test_damaged_tflite_files_are_one_line_or_a_result_never_a_signal_here(made, tmp_path):
    """With --trust-model the interpreter reads what it is given; it runs in a child process, so
    a file that crashes it (SIGSEGV) is one line, and this process lives on to check the next."""
    original = made["tflite"].read_bytes()
    crashed = 0
    for seed in MUTATION_SEEDS:
        model = tmp_path / f"mutated-{seed}.tflite"
        model.write_bytes(mutated(original, seed))
        result = invoke("predict", model, made["image"], "--csv", tmp_path / f"{seed}.csv", "--trust-model")
        if result.exit_code == 0:
            assert len((tmp_path / f"{seed}.csv").read_text().splitlines()) == 2
            continue
        error = one_error(result)
        assert str(model) in error, error
        crashed += "the TFLite interpreter crashed reading it (signal 11: SIGSEGV); the file is damaged" in error
    assert crashed  # the crash path was taken, not only files the interpreter refused itself


def test_the_interpreter_runs_under_an_address_space_limit(made):
    from cifarkit.modelio.exported import open_exported
    from cifarkit.modelio.tflite_process import memory_limit

    model = open_exported(made["tflite"])
    try:
        assert model.image_size == 32 and len(model.class_names) == 10  # the child has set its limit
        limits = Path(f"/proc/{model._process._child.pid}/limits").read_text()
        line = next(row for row in limits.splitlines() if row.startswith("Max address space"))
        assert line.split()[3:5] == [str(memory_limit(made["tflite"]))] * 2
    finally:
        model.close()


def test_an_interpreter_that_never_answers_is_stopped_in_one_line(tmp_path, monkeypatch):
    # A damaged .tflite can send the interpreter into a loop: the child that never answers stands in.
    from cifarkit.errors import SourceError
    from cifarkit.modelio import tflite_process

    silent = tmp_path / "silent_worker.py"
    silent.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    monkeypatch.setattr(tflite_process, "WORKER", silent)
    monkeypatch.setattr(tflite_process, "ANSWER_SECONDS", 1.0)
    (tmp_path / "model.tflite").write_bytes(b"TFL3")
    process = tflite_process.InterpreterProcess(tmp_path / "model.tflite", threads=1)
    try:
        with pytest.raises(SourceError, match="gave no answer in time and was stopped") as caught:
            process.describe()
        assert "\n" not in str(caught.value)
        assert process._child.poll() is not None  # the child is gone, not left looping
    finally:
        process.close()
