"""The two small pieces :mod:`cifarkit.models.whitenet` adds to Keras, registered so that saved
models load: a bias that learns faster (:class:`ScaledBias`), the partial identity
initialisation of its convolutions (:class:`PartialIdentity`) and a cheaper GELU
(:func:`tanh_gelu`, :func:`sigmoid_gelu`).

Everything is ``keras.ops``, so they build, train and save on any Keras backend.
"""

from __future__ import annotations

import math

import keras
from keras import ops

# x * sigmoid(1.702 x) is within 0.02 of GELU everywhere (Hendrycks & Gimpel 2016, section 2).
SIGMOID_GELU_SLOPE = 1.702


@keras.saving.register_keras_serializable(package="cifarkit")
def tanh_gelu(x):
    """GELU's tanh form ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``: within 0.0005 of the
    exact GELU, under bfloat16's rounding of what it returns (3 significant digits), at the cost
    of the sigmoid form rather than of the exact one's erf."""
    return ops.gelu(x, approximate=True)


@keras.saving.register_keras_serializable(package="cifarkit")
def sigmoid_gelu(x):
    """GELU's sigmoid approximation ``x * sigmoid(1.702 x)``: on a CPU the exact GELU's erf and
    its gradient's exp took 30% of whitenet's step, this takes about half of that."""
    return x * ops.sigmoid(ops.cast(SIGMOID_GELU_SLOPE, x.dtype) * x)


@keras.saving.register_keras_serializable(package="cifarkit")
class ScaledBias(keras.layers.Layer):
    """``x + scale * b`` with ``b`` one trained number per channel, starting at 0.

    Under SGD the gradient reaching ``b`` is ``scale`` times the one reaching the sum, and a step of
    ``b`` moves the sum ``scale`` times as far: the bias learns ``scale**2`` times faster than a
    plain one would, with no optimizer option (airbench trains batch-norm biases at 64x the rate).
    """

    def __init__(self, scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not scale > 0:
            raise ValueError(f"scale must be positive. Received: scale={scale!r}")
        self.scale = float(scale)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + ops.cast(self.scale * self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="cifarkit")
class PartialIdentity(keras.initializers.Initializer):
    """A conv kernel (kh, kw, in, out) drawn uniform in +-1/sqrt(fan in) (PyTorch's default),
    whose first ``min(in, out)`` filters are the identity on their input channel (a 1 at the
    centre tap): airbench's partial Dirac initialisation, so each block starts close to passing
    its input through."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kh, kw, cin, cout = shape
        bound = 1 / math.sqrt(kh * kw * cin)
        kernel = keras.random.uniform(shape, -bound, bound, dtype=dtype or "float32", seed=self.seed)
        keep = min(cin, cout)
        eye = ops.pad(ops.eye(keep, dtype=kernel.dtype), [(0, cin - keep), (0, cout - keep)])
        centre = ops.one_hot(kh // 2 * kw + kw // 2, kh * kw, dtype=kernel.dtype)
        dirac = ops.reshape(centre, (kh, kw, 1, 1)) * eye[None, None]
        taken = ops.reshape(ops.pad(ops.ones((keep,), kernel.dtype), [(0, cout - keep)]), (1, 1, 1, cout))
        return kernel * (1 - taken) + dirac

    def get_config(self):
        return {"seed": self.seed}
