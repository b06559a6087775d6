"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998, "Gradient-Based Learning Applied to Document
Recognition"): on 32x32 greyscale as in the paper (MNIST's 28x28 padded by 2, the mnist recipe),
or on 32x32 RGB (CIFAR); the input's channels are the data's.

Simplified as it usually is: every C3 map sees all S2 maps (the paper wires each to a subset),
plain tanh instead of 1.7159 * tanh(2x/3), parameter-free average pooling instead of trainable
subsampling, and a dense layer of logits instead of the RBF output units.
Keras is imported inside the builder, so registering it costs nothing.
"""

from __future__ import annotations

from ..runtime.lazy import keras
from .registry import register_model

LENET_INPUT_SIZE = 32
# Five valid 5x5 convolutions and two 2x2 poolings take 32 -> 28 -> 14 -> 10 -> 5 -> 1; smaller
# inputs leave nothing for C5.
LENET_MIN_INPUT_SIZE = 32
KERNEL = 5
POOL = 2
# Feature maps of C1, C3, C5 and the units of F6, as in the paper.
C1_MAPS, C3_MAPS, C5_MAPS, F6_UNITS = 6, 16, 120, 84

POOLS = {"avg": "AveragePooling2D", "max": "MaxPooling2D"}


@register_model("lenet5", input_size=LENET_INPUT_SIZE, recipe="cifar", training="cifar")
def lenet5(
    num_classes: int = 10,
    input_shape=None,
    *,
    modern: bool = False,
    activation: str | None = None,
    pool: str | None = None,
) -> keras.Model:
    """LeCun et al. 1998: conv 6-16-120, FC 84, tanh and average pooling (modern=True: ReLU, max-pool)."""
    from .layers import check_num_classes, float32_logits, image_input

    num_classes = check_num_classes(num_classes)
    # modern=True is shorthand for the ReLU/max-pool variant; an explicit activation or pool wins.
    activation = activation or ("relu" if modern else "tanh")
    pool = pool or ("max" if modern else "avg")
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}. Received: pool={pool!r}")
    try:
        keras.activations.get(activation)
    except ValueError:
        raise ValueError(f"activation must be a Keras activation name. Received: activation={activation!r}") from None
    pooling = getattr(keras.layers, POOLS[pool])

    inputs = image_input(input_shape, LENET_INPUT_SIZE, LENET_MIN_INPUT_SIZE, "lenet5")
    x = keras.layers.Conv2D(C1_MAPS, KERNEL, activation=activation, name="conv1")(inputs)
    x = pooling(POOL, name="pool1")(x)
    x = keras.layers.Conv2D(C3_MAPS, KERNEL, activation=activation, name="conv2")(x)
    x = pooling(POOL, name="pool2")(x)
    # C5 is a convolution in the paper; at 32x32 its output is 1x1x120, a dense layer in effect.
    x = keras.layers.Conv2D(C5_MAPS, KERNEL, activation=activation, name="conv3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(F6_UNITS, activation=activation, name="fc4")(x)
    x = keras.layers.Dense(num_classes, name="fc5")(x)
    return keras.Model(inputs, float32_logits(x), name="lenet5")
