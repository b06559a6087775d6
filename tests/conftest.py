"""Shared fixtures: small synthetic datasets in the real on-disk layouts (see synth.py)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Tests live in subfolders that follow the code (tests/training/, ...); their helpers (synth.py)
# stay here, importable from every folder whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).parent))

import synth  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# export-model's signing key (cifarkit.modelio.trust) in a folder of the test session, not the user's
if "CIFARKIT_CONFIG_DIR" not in os.environ:
    os.environ["CIFARKIT_CONFIG_DIR"] = tempfile.mkdtemp(prefix="cifarkit-test-config-")
    atexit.register(shutil.rmtree, os.environ["CIFARKIT_CONFIG_DIR"], True)


@pytest.fixture(scope="session")
def cifar10_tar(tmp_path_factory) -> synth.SynthDataset:
    """CIFAR-10, python version, as the home page serves it (Python 2 pickles): 5x6 train, 10 test."""
    return synth.make_cifar10_python(tmp_path_factory.mktemp("c10"), per_batch=6, test=10)


@pytest.fixture(scope="session")
def cifar100_tar(tmp_path_factory) -> synth.SynthDataset:
    return synth.make_cifar100_python(tmp_path_factory.mktemp("c100"), train=24, test=10)
