"""The memory a training run needs, estimated before it starts and said in one line when it is large.

A run's peak resident memory is roughly the sum of

- the runtime: TensorFlow and Keras loaded (0.66 GB on Linux x86), the data decoded in memory
  (0.3 GB for CIFAR-10) and the input pipeline, together :data:`RUNTIME_BYTES`;
- copies of the parameters, 4 bytes a value: the weights, their gradients and the optimizer's
  slots (SGD's momentum, Adam's two moments, a weight average); the initial values TensorFlow's
  oneDNN allocator keeps in its pool; with weight decay, the L2 term's squares and their
  gradient during a step; and the backup's copy of weights and slots, built in memory as it is
  written (:func:`cifarkit.training.keras_compat.backup_weights_bytes`), with the arrays it
  converts on the way;
- the activations a step keeps for its backward pass: about the bytes of every layer's output
  (:data:`ACTIVATION_FACTOR`; measured 0.8 of them for alexnet, whose ReLUs run inside its
  convolutions, and 1.2 for whitenet, whose GELUs keep their inputs).

Evaluation feeds the network at most a training batch's pixels at once
(:data:`cifarkit.evaluation.evaluate.EVAL_PIXELS`), so it needs no more. The constants were
measured on ``alexnet`` at batch 32 and 128 (3.4 and 3.9 GB, docs/BENCHMARKS.md) and ``whitenet``
at 1024 (3.3 GB); the figure is an estimate to plan by, within a few tenths of a GB, not a bound.
"""

from __future__ import annotations

from dataclasses import dataclass

GB = 1e9
RUNTIME_BYTES = int(1.2 * GB)
ACTIVATION_FACTOR = 1.0
SAY_ABOVE = int(2 * GB)  # below this a run fits any machine cifarkit runs on: nothing to say


@dataclass(frozen=True)
class MemoryEstimate:
    parameters: int
    parameter_bytes: int  # every copy of the parameters a run holds at its peak
    activation_bytes: int  # one training batch's
    runtime_bytes: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.runtime_bytes + self.parameter_bytes + self.activation_bytes


def optimizer_slots(config) -> int:
    """Values the optimizer and the weight averaging keep per weight."""
    if config.optimizer == "muon":
        slots = 1  # Muon keeps momenta for the filters even at momentum 0
    elif config.optimizer == "sgd":
        slots = 1 if config.momentum else 0
    else:
        slots = 2  # Adam's first and second moments
    return slots + (1 if config.averaging and config.averaging != "none" else 0)


def activation_values(network) -> int:
    """Values one image leaves in the network's layer outputs (the input included)."""
    total = 0
    for tensor in [*network.inputs, *(_output(layer) for layer in network._flatten_layers(include_self=False))]:
        shape = getattr(tensor, "shape", None)
        if shape is None or any(dim is None for dim in shape[1:]):
            continue
        size = 1
        for dim in shape[1:]:
            size *= int(dim)
        total += size
    return total


def _output(layer):
    try:
        return layer.output
    except (AttributeError, ValueError):  # a layer never called, or called more than once
        return None


def parameter_copies(config) -> int:
    """Copies of the parameters a run holds at its peak (alexnet, SGD with momentum and weight
    decay: 9, 2.1 GB)."""
    slots = optimizer_slots(config)
    training = 2 + slots  # weights, gradients, slots
    kept = 1 + (2 if config.weight_decay else 0)  # initial values in the pool; the L2 term's squares and gradient
    backup = 1 + slots + 1  # weights and slots, and the arrays converted on the way
    return training + kept + backup


def estimate_memory(network, config) -> MemoryEstimate:
    """The estimate for ``network`` trained as ``config`` (a :class:`~cifarkit.training.plan.TrainPlan`) plans."""
    parameters = int(network.count_params())
    value_bytes = 2 if config.precision == "mixed" else 4  # mixed precision computes in 16 bits
    activations = activation_values(network) * config.batch_size * value_bytes * ACTIVATION_FACTOR
    return MemoryEstimate(parameters, parameters * 4 * parameter_copies(config), int(activations))


def _gb(count: float) -> str:
    return f"{count / GB:.1f} GB"


def memory_line(estimate: MemoryEstimate, model: str, batch_size: int) -> str | None:
    """The line ``cifarkit train`` says before training, or None for a run that needs little."""
    if estimate.total < SAY_ABOVE:
        return None
    return (
        f"memory: {model} at batch {batch_size} needs about {_gb(estimate.total)}: "
        f"{_gb(estimate.parameter_bytes)} for its {estimate.parameters / 1e6:.1f}M parameters (weights, "
        f"gradients, optimizer state, the backup's copy), {_gb(estimate.activation_bytes)} of activations, "
        f"{_gb(estimate.runtime_bytes)} for TensorFlow and the data"
    )
