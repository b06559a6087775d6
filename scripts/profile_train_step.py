#!/usr/bin/env python3
"""Where a training step's time goes: TensorFlow's op times in cifarkit's trainer, by kind.

Builds exactly what ``scripts/bench_train.py`` times as ``cifarkit`` (``--model``, by default
``alexnet-cifar`` at ``--width``, batch ``--batch``, the trainer's compiled model and pipeline,
with the model's default optimizer and precision unless ``--optimizer``/``--precision`` say
otherwise), trains one warm-up epoch, then traces ``--epochs`` epochs with ``tf.profiler`` and
sums the time of every TensorFlow op by kind (convolutions and their two gradients, batch norm,
dense layers, pooling, activations, the augmentation where it runs in the step, casts between
precisions, the optimizer's updates, the rest).

Op times are summed over TensorFlow's inter-op threads, so on two cores they add up to about
twice the wall time when both cores are busy. The last line answers the question behind the
training-speed target: how fast would a step be if every op but the convolutions took no time
at all? That is an upper bound for any change that leaves the convolutions alone (fused batch
norm, a cheaper optimizer, ...).

    python scripts/profile_train_step.py --images 2560 --epochs 2 --width 0.5 [--data PATH] [--top 15]
    python scripts/profile_train_step.py --model whitenet --batch 1024 --images 10240 [--optimizer muon]
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import DEFAULT_BATCH, DEFAULT_MODEL, REAL_ARCHIVE, build_cifarkit  # noqa: E402

# Op kind by TensorFlow op type, with oneDNN's "_Mkl"/"_MklNative" prefix and the leading "_" of
# grappler's fused ops dropped first (so "_MklNativeConv2D", "_FusedConv2D" and "Conv2D" agree).
KIND_BY_TYPE = {
    "Conv2D": "convolution forward",
    "FusedConv2D": "convolution forward",
    "Conv2DWithBias": "convolution forward",
    "Conv2DBackpropInput": "convolution input gradient",
    "Conv2DBackpropFilter": "convolution filter gradient",
    "MatMul": "dense (matmul)",
    "FusedMatMul": "dense (matmul)",
    "BiasAddGrad": "dense (matmul)",
    "MaxPool": "pooling",
    "MaxPoolGrad": "pooling",
    "Relu": "activation",
    "ReluGrad": "activation",
    "Erf": "activation",
    "Tanh": "activation",
    "Cast": "precision casts",
    "FusedBatchNormV3": "batch norm",
    "FusedBatchNormGradV3": "batch norm",
}
# Scopes whose element-wise ops belong to a layer (Keras builds batch norm from small ops).
BY_SCOPE = (
    ("batchnorm", "batch norm"),
    ("moments", "batch norm"),
    ("/bn", "batch norm"),
    ("SGD", "optimizer update"),
    ("sgd", "optimizer update"),
    ("Adam", "optimizer update"),
    ("preprocess", "augmentation"),
    ("gelu", "activation"),
)

_OP_TYPE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def op_kind(name: str, op_type: str) -> str:
    base = op_type.removeprefix("_MklNative").removeprefix("_Mkl").removeprefix("_")
    if base in KIND_BY_TYPE:
        return KIND_BY_TYPE[base]
    for scope, kind in BY_SCOPE:
        if scope in name:
            return kind
    return "other"


def op_seconds(trace: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per op kind and per op type, summed over the executor threads of one trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    space.ParseFromString(trace.read_bytes())
    kinds: dict[str, float] = collections.defaultdict(float)
    types: dict[str, float] = collections.defaultdict(float)
    for plane in space.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):  # the executor's threads run the graph's ops
                continue
            for event in line.events:
                full_name = plane.event_metadata[event.metadata_id].name  # "scope/name:OpType"
                name, _, op_type = full_name.rpartition(":")
                if not name or "::" in full_name or not _OP_TYPE.match(op_type):  # profiler bookkeeping, not an op
                    continue
                seconds = event.duration_ps * 1e-12
                kinds[op_kind(name, op_type)] += seconds
                types[op_type] += seconds
    return kinds, types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2560, help="training images per epoch (default: 2560)")
    parser.add_argument("--epochs", type=int, default=2, help="traced epochs, after one warm-up epoch")
    parser.add_argument("--width", type=float, default=0.5, help="alexnet-cifar width multiplier (default: 0.5)")
    parser.add_argument("--data", type=Path, default=REAL_ARCHIVE, help=f"CIFAR-10 source (default: {REAL_ARCHIVE})")
    parser.add_argument("--top", type=int, default=12, help="op types to list (default: 12)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"registry model (default: {DEFAULT_MODEL})")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"batch size (default: {DEFAULT_BATCH})")
    parser.add_argument("--optimizer", help="sgd, adam or muon (default: the model's)")
    parser.add_argument("--precision", help="float32 or mixed (default: the model's on this machine)")
    args = parser.parse_args()
    if args.images < args.batch or args.epochs < 1:
        sys.exit(f"--images must be at least --batch ({args.batch}) and --epochs at least 1")
    if not args.data.exists():
        sys.exit(f"{args.data}: no such dataset; pass --data (see ../shared/data/README.md)")

    # The training transform: where augmentation runs on the device, it is part of the step.
    model, ds, steps, note = build_cifarkit(args, augment=True)
    import tensorflow as tf

    model.fit(ds, epochs=1, verbose=0)  # warm-up: tracing, oneDNN primitive creation
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        model.fit(ds, epochs=args.epochs, verbose=0)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        traces = sorted(Path(logdir).rglob("*.xplane.pb"))
        if not traces:
            sys.exit("tf.profiler wrote no trace")
        kinds, types = op_seconds(traces[-1])

    total_steps = steps * args.epochs
    images_per_second = args.batch * total_steps / wall
    step_ms = 1000 * wall / total_steps
    op_ms = 1000 * sum(kinds.values()) / total_steps
    print(f"{args.model}, batch {args.batch}, {total_steps} traced steps ({note})")
    print(
        f"wall {step_ms:.0f} ms a step ({images_per_second:.0f} images/s, profiler on); "
        f"op time {op_ms:.0f} ms a step summed over threads\n"
    )
    print(f"{'kind':<30} {'ms/step':>8} {'share':>6}")
    for kind, seconds in sorted(kinds.items(), key=lambda item: -item[1]):
        ms = 1000 * seconds / total_steps
        print(f"{kind:<30} {ms:8.1f} {ms / op_ms:6.1%}")
    print(f"\n{'op type':<30} {'ms/step':>8}")
    for op_type, seconds in sorted(types.items(), key=lambda item: -item[1])[: args.top]:
        print(f"{op_type:<30} {1000 * seconds / total_steps:8.1f}")

    conv_share = sum(s for k, s in kinds.items() if k.startswith("convolution")) / sum(kinds.values())
    print(
        f"\nconvolutions: {conv_share:.0%} of op time. If every other op took no time, a step would run at "
        f"about {images_per_second / conv_share:.0f} images/s (now {images_per_second:.0f})."
    )


if __name__ == "__main__":
    main()
