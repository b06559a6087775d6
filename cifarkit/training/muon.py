"""Muon for the convolution filters, Nesterov SGD for everything else: :class:`MuonSGD`.

Muon (Keller Jordan, 2024, "Muon: an optimizer for hidden layers in neural networks"; the
optimizer of airbench94_muon, which reaches airbench94's accuracy in 8 epochs where SGD needs
about 10) replaces a filter's momentum-smoothed gradient by the nearest semi-orthogonal matrix,
computed by a few Newton-Schulz iterations, so that every direction of the update moves the same
distance however skewed the gradient's spectrum is. Each filter tensor is also held at a fixed
norm (sqrt of its output channels), which stands in for weight decay. Biases, batch-norm
parameters and the linear head keep plain Nesterov SGD: orthogonalising a vector means nothing.

Everything is ``keras.ops``, so it trains on every Keras backend, and it is registered so that a
saved model's optimizer loads (a resumed run continues from its momenta).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from .defaults import MUON_SCALE  # the filters' rate over the SGD rate, unless a run sets its own

MUON_MOMENTUM = 0.6  # airbench94_muon's, lower than SGD's: the orthogonalisation already smooths
NEWTON_SCHULZ_STEPS = 3
# The quintic iteration's coefficients (Jordan 2024): chosen for the steepest slope at zero, so that
# three steps push every singular value into roughly [0.5, 1.5], which trains as well as exactly 1.
QUINTIC = (3.4445, -4.7750, 2.0315)
EPS = 1e-7


def orthogonalize(matrix, steps: int = NEWTON_SCHULZ_STEPS):
    """``matrix`` (rows, cols) with its singular values pushed towards 1 (``U S' V^T`` for
    ``U S V^T``, ``S'`` near 1) by quintic Newton-Schulz iterations, computed in float32."""
    a, b, c = QUINTIC
    x = ops.cast(matrix, "float32")
    tall = matrix.shape[0] > matrix.shape[1]
    if tall:  # iterate on the wide side: the Gram matrix is then the smaller one
        x = ops.transpose(x)
    x = x / (ops.sqrt(ops.sum(ops.square(x))) + EPS)  # the spectral norm is then at most 1
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return ops.transpose(x) if tall else x


def is_filter(variable) -> bool:
    """A convolution's kernel (kh, kw, in, out): what Muon updates."""
    return len(variable.shape) == 4


@keras.saving.register_keras_serializable(package="cifarkit")
class MuonSGD(keras.optimizers.SGD):
    """Nesterov SGD at ``learning_rate``; convolution filters by Muon at ``learning_rate *
    muon_scale``, with momentum ``muon_momentum``, each filter tensor renormalised to a Frobenius
    norm of sqrt(output channels) before its step (airbench94_muon's update)."""

    def __init__(
        self,
        learning_rate=0.01,
        momentum: float = 0.85,
        nesterov: bool = True,
        muon_scale: float = MUON_SCALE,
        muon_momentum: float = MUON_MOMENTUM,
        name: str = "muon_sgd",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, momentum=momentum, nesterov=nesterov, name=name, **kwargs)
        if not muon_scale > 0 or not 0 <= muon_momentum < 1:
            raise ValueError(
                f"muon_scale must be positive and muon_momentum in [0, 1). Received: muon_scale={muon_scale!r}, "
                f"muon_momentum={muon_momentum!r}"
            )
        self.muon_scale = float(muon_scale)
        self.muon_momentum = float(muon_momentum)

    def build(self, variables):
        super().build(variables)
        if self.momentum == 0:  # SGD keeps no momenta then, and Muon always needs its own
            self.momentums = [
                self.add_variable_from_reference(v, name="momentum") if is_filter(v) else None for v in variables
            ]

    def update_step(self, gradient, variable, learning_rate):
        if not is_filter(variable):
            return super().update_step(gradient, variable, learning_rate)
        momentum = self.momentums[self._get_variable_index(variable)]
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(momentum, self.muon_momentum * momentum + gradient)
        direction = gradient + self.muon_momentum * momentum if self.nesterov else momentum
        shape = variable.shape
        update = ops.reshape(orthogonalize(ops.reshape(direction, (-1, shape[-1]))), shape)
        norm = ops.sqrt(ops.sum(ops.square(variable)))
        held = variable * (math.sqrt(shape[-1]) / (norm + EPS))
        rate = ops.cast(learning_rate, variable.dtype) * self.muon_scale
        self.assign(variable, held - rate * ops.cast(update, variable.dtype))

    def get_config(self):
        return {**super().get_config(), "muon_scale": self.muon_scale, "muon_momentum": self.muon_momentum}
