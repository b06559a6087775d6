#!/usr/bin/env python3
"""cifarkit's FusedBatchNorm against Keras's BatchNormalization, side by side in one process.

Two measures, each in interleaved rounds (fused, plain, fused, ...) so that a host whose speed
drifts treats both alike, reported as medians and the ratio plain/fused:

  layer   one batch norm's forward and backward pass at the shapes of whitenet's six layers
          (batch 1024) and alexnet-cifar's five (batch 128)
  step    a whole training step (``train_on_batch``, SGD) of ``--model``: the registry's model
          (which uses FusedBatchNorm) against a clone of it with Keras's layer in its place

    python scripts/bench_batch_norm.py [--precision mixed|float32] [--rounds 7] [--only layer|step]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# (name, batch shape): the activations each batch norm of the default models sees.
LAYER_SHAPES = (
    ("whitenet block1 (x2)", (1024, 16, 16, 64)),
    ("whitenet block2 (x2)", (1024, 8, 8, 256)),
    ("whitenet block3 (x2)", (1024, 4, 4, 256)),
    ("alexnet-cifar bn1 (w0.35)", (128, 32, 32, 22)),
    ("alexnet-cifar bn2 (w0.35)", (128, 16, 16, 67)),
)
STEP_BATCH = {"whitenet": 1024, "alexnet-cifar": 128}


def interleaved(contenders: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each callable, run in turn ``rounds`` times after one warm-up call each."""
    for run in contenders.values():
        run()
    times = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def layer_runner(layer_class, shape, dtype: str):
    import keras
    import tensorflow as tf

    layer = layer_class(momentum=0.6, epsilon=1e-12, center=False, scale=False, dtype=dtype)
    layer.build(shape)
    x = tf.cast(tf.random.stateless_normal(shape, (0, 1)) * 3 + 1, keras.mixed_precision.Policy(dtype).compute_dtype)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.cast(layer(x, training=True), "float32"))
        return tape.gradient(loss, x)

    return lambda: step().numpy()


def bench_layers(dtype: str, rounds: int) -> None:
    import keras

    from cifarkit.models.batch_norm import FusedBatchNorm

    print(f"one batch norm, forward + backward, {dtype}: median of {rounds} interleaved rounds")
    print(f"{'activations':30} {'shape':22} {'fused ms':>9} {'keras ms':>9} {'ratio':>6}")
    for name, shape in LAYER_SHAPES:
        medians = interleaved(
            {
                "fused": layer_runner(FusedBatchNorm, shape, dtype),
                "keras": layer_runner(keras.layers.BatchNormalization, shape, dtype),
            },
            rounds,
        )
        ratio = medians["keras"] / medians["fused"]
        print(f"{name:30} {str(shape):22} {medians['fused'] * 1e3:9.1f} {medians['keras'] * 1e3:9.1f} {ratio:6.2f}x")


def with_keras_batch_norm(model):
    """A clone of ``model`` whose FusedBatchNorm layers are Keras's own, with the same weights."""
    import keras

    from cifarkit.models.batch_norm import FusedBatchNorm

    def clone(layer):
        if isinstance(layer, FusedBatchNorm):
            return keras.layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    plain = keras.models.clone_model(model, clone_function=clone)
    plain.set_weights(model.get_weights())
    return plain


def step_runner(model, batch: int):
    import keras
    import numpy as np

    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch, *model.input_shape[1:])).astype(model.input.dtype)
    y = rng.integers(0, 10, batch)
    return lambda: model.train_on_batch(x, y)


def bench_step(model_name: str, dtype: str, rounds: int) -> None:
    import keras

    from cifarkit.models import create_model

    keras.mixed_precision.set_global_policy(dtype)
    options = {"width": 0.35} if model_name == "alexnet-cifar" else {}
    fused = create_model(model_name, **options)
    plain = with_keras_batch_norm(fused)
    batch = STEP_BATCH.get(model_name, 128)
    medians = interleaved({"fused": step_runner(fused, batch), "keras": step_runner(plain, batch)}, rounds)
    ratio = medians["keras"] / medians["fused"]
    print(
        f"{model_name} training step, batch {batch}, {dtype}: FusedBatchNorm {medians['fused'] * 1e3:.0f} ms, "
        f"Keras's batch norm {medians['keras'] * 1e3:.0f} ms: {ratio:.2f}x "
        f"({batch / medians['fused']:.0f} vs {batch / medians['keras']:.0f} images/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("mixed", "float32"), default="mixed")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=("layer", "step"))
    parser.add_argument("--models", default="whitenet,alexnet-cifar")
    args = parser.parse_args()
    dtype = "mixed_bfloat16" if args.precision == "mixed" else "float32"
    if args.only in (None, "layer"):
        bench_layers(dtype, args.rounds)
    if args.only in (None, "step"):
        for name in args.models.split(","):
            bench_step(name, dtype, args.rounds)


if __name__ == "__main__":
    main()
