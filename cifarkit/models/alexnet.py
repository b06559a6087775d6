"""AlexNet: the network of Krizhevsky, Sutskever & Hinton (2012), "ImageNet Classification with
Deep Convolutional Neural Networks", and its shape scaled down for 32x32 CIFAR images.

Keras is imported inside the builders, so registering them costs nothing.
"""

from __future__ import annotations

from ..constants import IMAGE_SIZE
from ..runtime.lazy import keras
from .registry import register_model

# The paper says 224x224, but its first layer (11x11, stride 4, no padding) only gives the 55x55
# maps it reports from 227x227: (227 - 11) / 4 + 1 = 55.
PAPER_INPUT_SIZE = 227
# The smallest input every valid convolution and pooling of the paper network still fits:
# conv1 needs 15 outputs so that pool1 -> 7, pool2 -> 3, pool5 -> 1; 11 + 4 * (15 - 1) = 67.
PAPER_MIN_INPUT_SIZE = 67

# Section 3.5: weights from N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fully
# connected layers ("accelerates the early stages of learning by providing the ReLUs with positive
# inputs"), 0 elsewhere.
PAPER_WEIGHT_STDDEV = 0.01
PAPER_ONE_BIASES = ("conv2", "conv4", "conv5", "fc6", "fc7")
# "he" is the usual alternative when the paper init stalls, which it tends to with small learning
# rates or without LRN: He-normal weights, zero biases.
INITS = ("paper", "he")

# Section 3.2: the two-GPU split. conv2, conv4 and conv5 see only the kernel maps of their own GPU;
# conv3 and the fully connected layers see both. Conv2D(groups=2) is that connectivity on one device.
PAPER_GROUPED = ("conv2", "conv4", "conv5")
GROUPS = (1, 2)

# Section 3.4: overlapping max-pooling, 3x3 windows every 2 pixels.
POOL_SIZE = 3
POOL_STRIDE = 2

# Section 4.2: dropout 0.5 on the outputs of the two hidden fully connected layers.
DROPOUT = 0.5
FC_WIDTH = 4096

# The 32x32 variant: the same five convolutions, 3x3 everywhere (an 11x11 stride-4 filter would
# leave a 6x6 map from a 32x32 image), batch norm in place of LRN, at the widths of the common
# CIFAR ports of AlexNet. Pooling after conv1, conv2 and conv5 as in the paper: 32 -> 16 -> 8 -> 4.
CIFAR_INPUT_SIZE = IMAGE_SIZE
CIFAR_CONV_WIDTHS = (64, 192, 384, 256, 256)
CIFAR_POOL_AFTER = (1, 2, 5)
CIFAR_KERNEL = 3
CIFAR_FC_WIDTH = 2048


@register_model("alexnet", input_size=PAPER_INPUT_SIZE, recipe="paper", training="paper")
def alexnet(
    num_classes: int = 10, input_shape=None, *, groups: int = 1, init: str = "paper", dropout: float = DROPOUT
) -> keras.Model:
    """Krizhevsky et al. 2012: five conv layers with LRN, three FC layers (groups=2: two towers)."""
    from .layers import LocalResponseNormalization, check_dropout, check_num_classes, float32_logits, image_input

    num_classes = check_num_classes(num_classes)
    if groups not in GROUPS:
        raise ValueError(f"groups must be 1 (one tower) or 2 (the paper's two GPUs). Received: groups={groups!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}. Received: init={init!r}")
    check_dropout(dropout)

    def initializers(name: str) -> dict:
        # A fresh initializer per layer: Keras warns that one unseeded instance reused draws the same values.
        if init == "he":
            return {"kernel_initializer": keras.initializers.HeNormal(), "bias_initializer": "zeros"}
        bias = "ones" if name in PAPER_ONE_BIASES else "zeros"
        return {
            "kernel_initializer": keras.initializers.RandomNormal(stddev=PAPER_WEIGHT_STDDEV),
            "bias_initializer": bias,
        }

    def conv(x, name: str, filters: int, kernel: int, strides: int = 1, padding: str = "same"):
        tower_groups = groups if name in PAPER_GROUPED else 1
        return keras.layers.Conv2D(
            filters,
            kernel,
            strides=strides,
            padding=padding,
            groups=tower_groups,
            activation="relu",
            name=name,
            **initializers(name),
        )(x)

    def pool(x, name: str):
        return keras.layers.MaxPooling2D(POOL_SIZE, strides=POOL_STRIDE, name=name)(x)

    inputs = image_input(input_shape, PAPER_INPUT_SIZE, PAPER_MIN_INPUT_SIZE, "alexnet")
    x = conv(inputs, "conv1", 96, 11, strides=4, padding="valid")
    x = LocalResponseNormalization(name="lrn1")(x)
    x = pool(x, "pool1")
    x = conv(x, "conv2", 256, 5)
    x = LocalResponseNormalization(name="lrn2")(x)
    x = pool(x, "pool2")
    x = conv(x, "conv3", 384, 3)
    x = conv(x, "conv4", 384, 3)
    x = conv(x, "conv5", 256, 3)
    x = pool(x, "pool5")
    x = keras.layers.Flatten(name="flatten")(x)  # 6x6x256 = 9216 at 227x227
    for name in ("fc6", "fc7"):
        x = keras.layers.Dense(FC_WIDTH, activation="relu", name=name, **initializers(name))(x)
        x = keras.layers.Dropout(dropout, name=name.replace("fc", "drop"))(x)
    x = keras.layers.Dense(num_classes, name="fc8", **initializers("fc8"))(x)
    return keras.Model(inputs, float32_logits(x), name="alexnet")


@register_model("alexnet-cifar", input_size=CIFAR_INPUT_SIZE, recipe="cifar", training="cifar")
def alexnet_cifar(
    num_classes: int = 10, input_shape=None, *, width: float = 1.0, dropout: float = DROPOUT
) -> keras.Model:
    """AlexNet's shape for 32x32: five 3x3 conv + batch norm layers, FC 2048-2048 (width scales both)."""
    from .layers import batch_norm_layer, check_dropout, check_num_classes, float32_logits, image_input

    num_classes = check_num_classes(num_classes)
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"width must be a positive number. Received: width={width!r}")
    check_dropout(dropout)

    def scaled(channels: int) -> int:
        return max(1, round(channels * width))

    x = inputs = image_input(input_shape, CIFAR_INPUT_SIZE, 1, "alexnet-cifar")
    for index, channels in enumerate(CIFAR_CONV_WIDTHS, start=1):
        # No conv bias: the batch norm that follows subtracts the mean and adds its own offset.
        x = keras.layers.Conv2D(
            scaled(channels),
            CIFAR_KERNEL,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"conv{index}",
        )(x)
        x = batch_norm_layer(f"bn{index}")(x)
        x = keras.layers.ReLU(name=f"relu{index}")(x)
        if index in CIFAR_POOL_AFTER:
            # "same" keeps the paper's overlapping 3x3/2 windows and halves 32 -> 16 -> 8 -> 4 exactly.
            x = keras.layers.MaxPooling2D(POOL_SIZE, strides=POOL_STRIDE, padding="same", name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for name in ("fc6", "fc7"):
        x = keras.layers.Dense(scaled(CIFAR_FC_WIDTH), activation="relu", kernel_initializer="he_normal", name=name)(x)
        x = keras.layers.Dropout(dropout, name=name.replace("fc", "drop"))(x)
    x = keras.layers.Dense(num_classes, name="fc8")(x)
    return keras.Model(inputs, float32_logits(x), name="alexnet_cifar")
