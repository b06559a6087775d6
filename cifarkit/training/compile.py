"""The models of a run, built and compiled: optimizer, loss, metrics, precision, XLA.

Two models share one network: the *export* model (uint8 images -> the recipe's augmentation layer
-> network -> softmax with the class names) is what is saved, so a saved model gives
probabilities; the *train* model is what ``fit`` runs, and ends in the logits, for the numerically
stable ``from_logits`` loss: the export model up to its logits when augmentation runs on the
device, or the bare network when the host pipeline already made the float crops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..runtime.lazy import keras
from ..runtime.strategy import gpu_visible, keras_backend
from ..runtime.tensorflow import cpu_has_bfloat16
from .memory import estimate_memory, memory_line
from .plan import TrainPlan
from .run_data import RunData


def build_models(config: TrainPlan, data: RunData, class_names, stats):
    """(saved model: uint8 -> augmentation -> network -> softmax and class names, bare network)."""
    from ..augment.layer import Augmentation
    from ..modelio.keras_file import ClassNames
    from ..models import create_model

    recipe = config.recipe
    channels = data.input_shape[-1]  # 3, or 1 for grey images (MNIST)
    network = create_model(
        config.model,
        num_classes=len(class_names),
        input_shape=(recipe.crop, recipe.crop, channels),
        **config.model_options,
    )
    decay_kernels(network, config.optimizer, config.weight_decay)
    inputs = keras.Input(shape=data.input_shape, dtype="uint8", name="uint8_image")
    views = Augmentation(recipe=recipe, stats=stats, seed=config.seed, name="preprocess")(inputs)
    probabilities = ClassNames(list(class_names), activation="softmax", name="class_names")(network(views))
    return keras.Model(inputs, probabilities, name=config.model.replace("-", "_")), network


def decay_kernels(network, optimizer: str, weight_decay: float) -> None:
    """Weight decay for SGD as the paper writes it: v <- 0.9 v - wd * lr * w - lr * grad, which is
    gradient descent on loss + (wd / 2) * |w|^2, as an L2 term on the kernels. Kernels only:
    decaying biases and batch-norm scales only hurts; and not the filters Muon holds at a fixed
    norm. AdamW decays by itself."""
    from .muon import is_filter

    if optimizer not in ("sgd", "muon") or not weight_decay:
        return
    for layer in network._flatten_layers():
        kernel = getattr(layer, "kernel", None)
        if kernel is not None and kernel.trainable and not (optimizer == "muon" and is_filter(kernel)):
            kernel.regularizer = keras.regularizers.L2(weight_decay / 2)


def make_optimizer(config: TrainPlan, steps: int = 1):
    """The optimizer, its rate a number (per-epoch schedules set it) or, for the per-step
    schedules, a schedule over the run's ``steps * epochs`` steps (cifarkit.training.methods)."""
    from .methods import learning_rate

    lr = learning_rate(config.schedule, config.lr, steps * config.epochs, config.warmup)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=config.momentum, nesterov=bool(config.nesterov))
    if config.optimizer == "muon":
        from .muon import MuonSGD

        return MuonSGD(
            learning_rate=lr,
            momentum=config.momentum,
            nesterov=bool(config.nesterov),
            muon_scale=config.muon_scale,
        )
    # Adam: weight decay decoupled from the gradient (AdamW, Loshchilov & Hutter 2019); as an L2
    # term it would be divided by Adam's running scale and barely act.
    optimizer = keras.optimizers.AdamW(learning_rate=lr, weight_decay=config.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def make_loss(label_smoothing: float):
    if not label_smoothing:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    # Keras' sparse cross-entropy has no label smoothing; one-hot the labels inside the loss instead
    # of shipping one-hot labels through the pipeline.
    def smoothed_crossentropy(y_true, y_pred):
        depth = keras.ops.shape(y_pred)[-1]
        onehot = keras.ops.one_hot(keras.ops.reshape(keras.ops.cast(y_true, "int32"), [-1]), depth)
        return keras.losses.categorical_crossentropy(onehot, y_pred, from_logits=True, label_smoothing=label_smoothing)

    return smoothed_crossentropy


def steps_per_execution(requested: int, steps: int, placement, say: Callable[[str], None]) -> int:
    """How many training steps each call into the compiled function runs, as the backend allows."""
    spe = min(requested, steps)
    backend = keras_backend()
    if spe > 1 and backend == "torch":
        say("note: --steps-per-execution is 1 on the torch backend (Keras runs one step per call there)")
        return 1
    if spe > 1 and backend == "jax" and steps % spe:
        # Keras's JAX loop takes whole groups of steps from the feed, running past an epoch's end
        # into the next one's batches: a group size that divides the epoch keeps epochs whole.
        spe = max(d for d in range(1, spe + 1) if steps % d == 0)
        say(
            f"note: --steps-per-execution is {spe} on the jax backend, so that groups of steps fill the "
            f"{steps} steps of an epoch exactly"
        )
    if placement.name == "multi-worker" and spe > 1 and backend == "tensorflow":
        # Keras' loop of several steps per call fails under the collective strategy (it
        # feeds a placeholder it never binds); one step per call works.
        say("note: --steps-per-execution is 1 under the multi-worker strategy")
        spe = 1
    return spe


@dataclass
class Compiled:
    export_model: Any  # what is saved: uint8 -> preprocessing -> network -> softmax, class names
    network: Any
    train_model: Any  # what ``fit`` runs: the export model (device augmentation) or the network
    steps_per_execution: int  # as used, which can differ from the config's request
    jit: bool  # as used


def compile_for_training(
    config: TrainPlan, placement, data: RunData, stats, steps: int, say: Callable[[str], None] = lambda message: None
) -> Compiled:
    """The models of a run, built under the precision policy and the strategy, and compiled."""
    source = data.source
    keras.utils.set_random_seed(config.seed)
    policy_before = keras.config.dtype_policy()
    if config.precision == "mixed":
        # bfloat16 on CPUs (no float16 matrix units there, and no loss scaling needed); float16 on GPUs.
        gpu = gpu_visible()
        keras.config.set_dtype_policy("mixed_float16" if gpu else "mixed_bfloat16")
        if not gpu and cpu_has_bfloat16() is False:
            say(
                "note: this CPU has no bfloat16 arithmetic (AVX-512 BF16, AMX or Arm BF16), so --precision "
                "mixed is emulated and much slower than float32 here"
            )
    try:
        with placement.strategy.scope():
            export_model, network = build_models(config, data, source.class_names, stats)
            if config.whiten:
                from .methods import whiten_network

                whiten_network(export_model, network, data, say)
            if config.augment_on == "device":
                logits = export_model.get_layer("class_names").input  # before the softmax: the loss takes logits
                train_model = keras.Model(export_model.inputs, logits, name="train_on_uint8")
            else:
                # A separate view, so that compiling it does not attach the optimizer to the saved model.
                train_model = keras.Model(network.inputs, network.outputs, name="train_on_floats")
            optimizer = make_optimizer(config, steps)
            if keras.config.dtype_policy().name == "mixed_float16":
                optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
            top_k = min(5, len(source.class_names))
            spe = steps_per_execution(config.steps_per_execution, steps, placement, say)
            jit = bool(config.jit)
            if jit and placement.replicas > 1 and not gpu_visible() and keras_backend() == "tensorflow":
                # TensorFlow's XLA refuses variables that live on another logical CPU device of the same host.
                say("note: --jit is off for several CPU replicas")
                jit = False
            train_model.compile(
                optimizer=optimizer,
                loss=make_loss(config.label_smoothing),
                # Weighted: a padded batch's rows of weight 0 count for nothing (cifarkit.readers.feed);
                # batches without weights are counted as before.
                weighted_metrics=[
                    keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                    keras.metrics.SparseTopKCategoricalAccuracy(k=top_k, name="top5"),
                ],
                steps_per_execution=spe,
                jit_compile=jit,
            )
    finally:
        keras.config.set_dtype_policy(policy_before)
    note = memory_line(estimate_memory(network, config), config.model, config.batch_size)
    if note:
        say(note)
    return Compiled(export_model, network, train_model, spe, jit)
