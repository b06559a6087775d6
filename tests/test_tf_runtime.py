"""cifarkit's commands ask TensorFlow for oneDNN's CPU kernels before it loads, unless the user chose."""

from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import sys

import pytest

PROBE = """
import os, sys
from cifarkit.runtime.tensorflow import prefer_onednn
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

    from cifarkit.runtime.tensorflow import prefer_onednn

    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    prefer_onednn()
    assert "TF_ENABLE_ONEDNN_OPTS" not in os.environ  # no claim that could not take effect


def test_filtered_stderr_drops_known_banners_and_passes_on_the_rest(capfd):
    from cifarkit.runtime.tensorflow import STARTUP_BANNERS, filtered_stderr

    with filtered_stderr(STARTUP_BANNERS):
        # Written to the file descriptor, as TensorFlow's C++ code does, not through sys.stderr.
        os.write(2, b"I0000 00:00:1.0 1 port.cc:153] oneDNN custom operations are on. You may see\n")
        os.write(2, b"something the user must see\n")
        os.write(2, b"E0000 00:00:1.0 1 cuda_platform.cc:52] failed call to cuInit: INTERNAL\n")
    assert capfd.readouterr().err == "something the user must see\n"

    with pytest.raises(RuntimeError), filtered_stderr(STARTUP_BANNERS):
        os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on.\n")
        raise RuntimeError("import failed")
    assert "oneDNN custom operations are on" in capfd.readouterr().err  # a failure shows everything


QUIET_PROBE = """
import sys
from cifarkit.runtime.tensorflow import prefer_onednn, quiet_tensorflow_startup
prefer_onednn()
quiet_tensorflow_startup()
import tensorflow as tf
# The GPU probe ran during the import; devices and thread pools must still be configurable.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.threading.set_inter_op_parallelism_threads(1)
print(len(tf.config.list_logical_devices("CPU")), tf.constant(2) * 3)
print("end", file=sys.stderr)
"""


def _quiet_probe(log_level: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    if log_level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = log_level
    done = subprocess.run([sys.executable, "-c", QUIET_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 tf.Tensor(6,")
    return done


def test_commands_load_tensorflow_without_its_banners_unless_the_user_sets_the_log_level():
    assert _quiet_probe(None).stderr == "end\n"
    if platform.machine().lower() in ("x86_64", "amd64"):
        # The banners are real (so the first check means something), and a user's own
        # TF_CPP_MIN_LOG_LEVEL gets TensorFlow's output untouched.
        assert "oneDNN custom operations are on" in _quiet_probe("0").stderr


def test_a_failing_command_prints_one_line_after_loading_tensorflow(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    command = [sys.executable, "-m", "cifarkit", "evaluate", str(tmp_path / "missing-run")]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr == f"cifarkit: error: {tmp_path / 'missing-run'}: no such run folder or model file\n"


def test_cpu_bfloat16_support_is_read_from_the_cpu_flags(tmp_path):
    from cifarkit.runtime.tensorflow import cpu_has_bfloat16

    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu avx2\n")
    sapphire = tmp_path / "sapphire"
    sapphire.write_text("flags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    graviton = tmp_path / "graviton"
    graviton.write_text("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")
    assert cpu_has_bfloat16(avx2) is False
    assert cpu_has_bfloat16(sapphire) is True
    assert cpu_has_bfloat16(graviton) is True
    assert cpu_has_bfloat16(tmp_path / "missing") is None  # not Linux: no claim either way


LAZY_PROBE = """
import os, sys
from cifarkit.augment.recipes import epoch_variable, get_recipe
from cifarkit.cli import main
from cifarkit.runtime.lazy import tf

sys.argv = ["cifarkit", "--version"]  # main prepares the runtime as for any command, then exits
try:
    main()
except SystemExit:
    pass
assert "tensorflow" not in sys.modules, "loaded before its first use"
epoch = epoch_variable(get_recipe("airbench"))  # the stand-in's first use: a tf.Variable
from tensorflow.python.util import _pywrap_util_port
print(type(epoch).__name__, tf.Variable is sys.modules["tensorflow"].Variable, _pywrap_util_port.IsMklEnabled())
print(os.environ["TF_CPP_MIN_LOG_LEVEL"], "end", file=sys.stderr)
"""


def test_the_lazy_stand_in_loads_tensorflow_on_first_use_as_the_commands_arrange_it():
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TF_ENABLE_ONEDNN_OPTS")}
    done = subprocess.run([sys.executable, "-c", LAZY_PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    variable, same, onednn = done.stdout.split("\n")[-2].split()
    assert variable.endswith("Variable") and same == "True"
    assert done.stderr == "2 end\n"  # quiet: no start-up banners (test above: they are real)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert onednn == "True"  # the oneDNN choice was made before the stand-in loaded TensorFlow


LAZY_KERAS_WITHOUT_TENSORFLOW = """
import sys
sys.modules["tensorflow"] = None  # as where TensorFlow is not installed
import cifarkit
from cifarkit.runtime.lazy import keras, ops, tf
layer = keras.saving.get_registered_object("cifarkit>Augmentation")  # registered as Keras loaded
print(float(ops.add(1.0, 2.0)), keras.backend.backend(), layer.__name__)
try:
    tf.constant(1)
except ImportError:
    print("ImportError")
"""


def test_the_keras_stand_ins_on_jax_import_no_tensorflow_and_register_cifarkits_layers():
    if importlib.util.find_spec("jax") is None:
        pytest.skip("JAX is not installed")
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", LAZY_KERAS_WITHOUT_TENSORFLOW], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["3.0", "jax", "Augmentation", "ImportError"]
