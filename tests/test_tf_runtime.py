"""cifarkit's commands ask TensorFlow for oneDNN's CPU kernels before it loads, unless the user chose."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import os, sys
from cifarkit.tf_runtime import prefer_onednn
prefer_onednn()
from tensorflow.python.util import _pywrap_util_port
print(os.environ.get("TF_ENABLE_ONEDNN_OPTS"), _pywrap_util_port.IsMklEnabled())
"""


def _probe(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split("\n")[-2]


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 only")
def test_onednn_is_on_unless_the_user_chose():
    assert _probe(None) == "1 True"  # TensorFlow really loaded its oneDNN kernels
    assert _probe("0") == "0 False"  # the user's choice stands


def test_too_late_once_tensorflow_is_loaded(monkeypatch):
    import tensorflow  # noqa: F401  (loaded, as in this test process)

    from cifarkit.tf_runtime import prefer_onednn

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    prefer_onednn()
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ  # no claim that could not take effect
