"""Pieces the model families share: the paper's local response normalisation and the two ends
every model has (a checked image input, float32 logits).

Importing this module imports Keras and registers ``cifarkit>LocalResponseNormalization``, which
``keras.models.load_model`` needs to read back a saved model that uses it. Everything here is
``keras.ops``, so the models build, train and save on any Keras backend (TensorFlow, JAX, PyTorch).
"""

from __future__ import annotations

import numbers

import keras
from keras import ops

from ..constants import CHANNELS

# Krizhevsky et al. 2012, section 3.3: constants chosen on a validation set.
LRN_SIZE = 5  # n: adjacent channels summed over, centred on the channel normalised
LRN_K = 2.0  # k: additive constant, keeps the denominator away from zero
LRN_ALPHA = 1e-4  # alpha: weight of the sum of squares (not divided by n, as in the paper)
LRN_BETA = 0.75  # beta: exponent of the denominator

# Batch norm's moving averages keep 90% of their value each step (PyTorch's and timm's default),
# not Keras's 99%: at 0.99 they still hold about half of their initial 0/1 after 70 steps, so a
# short run evaluates at chance (10% on CIFAR-10) while its training accuracy is 20%.
BN_MOMENTUM = 0.9

# Under mixed precision the layer normalises in float32 and casts back: a sum of squares of
# activations in the hundreds overflows float16 (max 65504) and loses digits in bfloat16.
_LOW_PRECISION = ("float16", "bfloat16")


@keras.saving.register_keras_serializable(package="cifarkit")
class LocalResponseNormalization(keras.layers.Layer):
    """Across-channel normalisation: ``b_i = a_i / (k + alpha * sum_j a_j^2) ** beta``.

    The sum runs over the ``size`` channels centred on ``i`` (clipped at the first and last
    channel), at the same spatial position. Channels-last inputs of rank 4.
    """

    def __init__(
        self, size: int = LRN_SIZE, k: float = LRN_K, alpha: float = LRN_ALPHA, beta: float = LRN_BETA, **kwargs
    ):
        super().__init__(**kwargs)
        # An even window cannot be centred on the channel it normalises.
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd integer. Received: size={size!r}")
        if k < 0 or alpha < 0 or beta < 0:
            raise ValueError(f"k, alpha and beta must be non-negative. Received: k={k}, alpha={alpha}, beta={beta}")
        self.size = int(size)
        self.k = float(k)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(
                f"LocalResponseNormalization expects (batch, height, width, channels) inputs. "
                f"Received: input_shape={tuple(input_shape)}"
            )
        super().build(input_shape)

    def call(self, inputs):
        dtype = keras.backend.standardize_dtype(inputs.dtype)
        x = ops.cast(inputs, "float32") if dtype in _LOW_PRECISION else inputs
        y = self._fused(x) if keras.backend.backend() == "tensorflow" else self._sliced(x)
        return ops.cast(y, dtype) if dtype in _LOW_PRECISION else y

    def _fused(self, x):
        """TensorFlow's LRN kernel, the same formula (alpha not divided by the window either):
        one pass where the sliced form makes eight tensors of the input's size, and a backward
        pass that keeps only the input and output. In the paper ``alexnet`` at batch 32 on a CPU
        it halved the training step and kept 5 MB an image less."""
        import tensorflow as tf

        return tf.nn.local_response_normalization(x, self.size // 2, self.k, self.alpha, self.beta)

    def _sliced(self, x):
        # The sum over [c - r, c + r] as 2r + 1 shifted slices of the zero-padded squares: exact
        # clipping at the first and last channel, and no cumulative sum to lose digits in. Alpha
        # is not divided by the window size, which is the paper's formula (and TensorFlow's
        # tf.nn.local_response_normalization with depth_radius = r).
        radius = self.size // 2
        channels = x.shape[-1]
        squares = ops.pad(ops.square(x), [(0, 0), (0, 0), (0, 0), (radius, radius)])
        window = squares[..., :channels]
        for shift in range(1, self.size):
            window = window + squares[..., shift : shift + channels]
        return x / ops.power(self.k + self.alpha * window, self.beta)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "k": self.k, "alpha": self.alpha, "beta": self.beta}


def image_input(input_shape, native_size: int, min_size: int, model: str) -> keras.KerasTensor:
    """The model's input: ``input_shape`` checked, or the native ``(size, size, 3)`` when None.

    Inputs are float32 images already normalised by the data pipeline; no model rescales.
    """
    if input_shape is None:
        input_shape = (native_size, native_size, CHANNELS)
    shape = tuple(input_shape)
    if len(shape) != 3 or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in shape
    ):
        raise ValueError(
            f"input_shape must be (height, width, channels) with positive sizes. Received: input_shape={input_shape}"
        )
    if min(shape[:2]) < min_size:
        raise ValueError(f"{model} needs inputs of at least {min_size}x{min_size}. Received: input_shape={shape}")
    return keras.Input(shape=tuple(int(d) for d in shape), name="image")


def check_num_classes(num_classes) -> int:
    """Checked before anything is built, so a bad value fails before 60M weights are initialised."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer. Received: num_classes={num_classes!r}")
    return int(num_classes)


def check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    return float(dropout)


def float32_logits(x: keras.KerasTensor) -> keras.KerasTensor:
    """Pass-through whose output is float32 under a mixed-precision policy, so losses and softmax
    never run in float16 (Keras mixed-precision guide); a no-op in plain float32."""
    return keras.layers.Activation("linear", dtype="float32", name="logits")(x)


def batch_norm_layer(name: str) -> keras.layers.BatchNormalization:
    """The batch norm every cifarkit model uses (see :data:`BN_MOMENTUM`), fused on TensorFlow."""
    from .batch_norm import FusedBatchNorm

    return FusedBatchNorm(momentum=BN_MOMENTUM, name=name)
