"""A mistyped option or a bad value is answered before TensorFlow or Keras loads (the seconds they
take to import were the wait for a one-line usage error), in one line, with the usual exit code.

Each command runs in a fresh process whose import system refuses ``tensorflow`` and ``keras``:
a command that reaches either exits with a code and a line of its own, so the test sees the
import itself, not a timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from synth import make_cifar10_python

# The CLI behind an import system in which tensorflow and keras cannot load: reaching either
# ends the process at once with code 97 and the name on stderr.
GUARDED_CLI = """
import importlib.abc, os, sys

class RefuseTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in ("tensorflow", "keras"):
            os.write(2, f"IMPORTED {name}\\n".encode())
            os._exit(97)
        return None

sys.meta_path.insert(0, RefuseTensorFlow())
sys.argv[0] = "cifarkit"
from cifarkit.cli import main
main()
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("early")
    data = make_cifar10_python(folder, per_batch=2, test=2).path
    model = folder / "model.keras"
    model.write_bytes(b"not read: every option is checked before the model is")
    return {"data": data, "model": model, "missing": folder / "missing", "workdir": folder / "run"}


TRAIN = ("train", "lenet5", "--data", "{data}", "--workdir", "{workdir}")
# (arguments, exit code, what the line says); {data}, {model}, {missing}, {workdir}: the files below.
CASES = {
    "train-epochs": ((*TRAIN, "--epochs", "-1"), 2, "--epochs must be a positive integer"),
    "train-tta": ((*TRAIN, "--tta", "nonsense"), 2, "--tta takes a comma-separated list"),
    "train-holdout": ((*TRAIN, "--holdout", "-3"), 2, "--holdout must be 0 or more"),
    "train-warmup": ((*TRAIN, "--warmup", "2"), 2, "--warmup must be a fraction"),
    "train-model-option": ((*TRAIN, "--model-option", "bogus=1"), 2, "model 'lenet5' has no option 'bogus'"),
    "train-split-form": ((*TRAIN, "--train-split", "train[[:"), 2, "--train-split: split 'train[[:'"),
    "eval-split-form": ((*TRAIN, "--eval-split", "test[:5"), 2, "--eval-split: split 'test[:5'"),
    "train-missing-data": (
        ("train", "lenet5", "--data", "{missing}", "--workdir", "{workdir}"),
        1,
        "{missing}: no such file or folder",
    ),
    "export-format": (("export", "--format", "bogus", "--data", "{data}"), 2, "'bogus' is not one of"),
    "export-quality": (("export", "--quality", "0", "--data", "{data}"), 2, "--quality must be between 1 and 100"),
    "evaluate-tta": (("evaluate", "{model}", "--tta", "nonsense"), 2, "--tta takes a comma-separated list"),
    "evaluate-split-form": (("evaluate", "{model}", "--eval-split", "test[[:"), 2, "--eval-split: split 'test[[:'"),
    "evaluate-missing-data": (("evaluate", "{model}", "--data", "{missing}"), 1, "{missing}: no such file or folder"),
    "predict-missing-image": (("predict", "{model}", "{missing}"), 1, "{missing}: no such file or folder"),
    "export-model-quantize": (("export-model", "{model}", "--quantize", "int8"), 2, "--quantize int8 is for --format"),
    "export-model-name": (
        ("export-model", "{model}", "--format", "tflite", "--name", ".."),
        2,
        "--name must be a plain file name",
    ),
    "stats-image-size": (("stats", "--data", "{data}", "--image-size", "0"), 2, "Invalid value for '--image-size'"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_bad_option_is_one_line_before_tensorflow_loads(files, tmp_path, case):
    args, code, says = CASES[case]
    names = {key: str(path) for key, path in files.items()}
    done = subprocess.run(
        [sys.executable, "-c", GUARDED_CLI, *(arg.format(**names) for arg in args)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
    )
    assert "IMPORTED" not in done.stderr, f"TensorFlow or Keras loaded before the option was checked: {done.stderr}"
    assert done.returncode == code, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: "), done.stderr
    assert says.format(**names) in lines[0], done.stderr
    assert not files["workdir"].exists()  # a refused command wrote nothing


def test_the_guard_sees_a_command_that_loads_tensorflow(files, tmp_path):
    """The guard itself: a command that does import TensorFlow (a summary builds the model) is caught."""
    done = subprocess.run(
        [sys.executable, "-c", GUARDED_CLI, "summary", "lenet5"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 97 and "IMPORTED" in done.stderr
