"""VGG (Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image
Recognition"): one builder over the paper's configuration table, sized for CIFAR by default.

For 32x32 inputs each 3x3 convolution is followed by batch norm (without it the 16- and 19-layer
nets barely start training from scratch), and the three 4096-wide FC layers become global average
pooling -> FC 512 -> logits. At 32x32 the last pooling leaves a 1x1x512 map, so global pooling is
exactly a flatten there; at 224x224 it keeps the head at 0.3M parameters instead of the 103M of
flattening 7x7x512 into 4096 units.
Keras is imported inside the builder, so registering the family costs nothing.
"""

from __future__ import annotations

from ..constants import IMAGE_SIZE
from ..runtime.lazy import keras
from .registry import register_model

VGG_INPUT_SIZE = IMAGE_SIZE  # the CIFAR variant: 32x32 in, as in the common CIFAR ports
# Five 2x2 max-pools halve the input five times: 32 / 2**5 = 1.
VGG_MIN_INPUT_SIZE = 32
KERNEL = 3
POOL = 2
HEAD_WIDTH = 512
DROPOUT = 0.5

# Table 1 of the paper: output channels of each 3x3 conv, "M" for a 2x2 max-pool.
POOL_MARK = "M"
VGG_CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # configuration A
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),  # B
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),  # D
    "vgg19": (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ),  # E
}


def _vgg(config: str, num_classes: int, input_shape, batch_norm: bool, dropout: float) -> keras.Model:
    from .layers import batch_norm_layer, check_dropout, check_num_classes, float32_logits, image_input

    num_classes = check_num_classes(num_classes)
    check_dropout(dropout)
    x = inputs = image_input(input_shape, VGG_INPUT_SIZE, VGG_MIN_INPUT_SIZE, config)
    block, index = 1, 1  # conv layers are named conv<block>_<index>, as in the paper's Caffe models
    for item in VGG_CONFIGS[config]:
        if item == POOL_MARK:
            x = keras.layers.MaxPooling2D(POOL, name=f"pool{block}")(x)
            block, index = block + 1, 1
            continue
        suffix = f"{block}_{index}"
        # With batch norm the conv bias is redundant: normalisation subtracts it and adds its own offset.
        x = keras.layers.Conv2D(
            item, KERNEL, padding="same", use_bias=not batch_norm, kernel_initializer="he_normal", name=f"conv{suffix}"
        )(x)
        if batch_norm:
            x = batch_norm_layer(f"bn{suffix}")(x)
        x = keras.layers.ReLU(name=f"relu{suffix}")(x)
        index += 1
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(HEAD_WIDTH, activation="relu", kernel_initializer="he_normal", name="fc1")(x)
    x = keras.layers.Dropout(dropout, name="drop1")(x)
    x = keras.layers.Dense(num_classes, name="fc2")(x)
    return keras.Model(inputs, float32_logits(x), name=config)


@register_model("vgg11", input_size=VGG_INPUT_SIZE, recipe="cifar", training="cifar")
def vgg11(num_classes: int = 10, input_shape=None, *, batch_norm: bool = True, dropout: float = DROPOUT) -> keras.Model:
    """VGG configuration A (8 conv + BN layers), global pooling and FC 512 head."""
    return _vgg("vgg11", num_classes, input_shape, batch_norm, dropout)


@register_model("vgg13", input_size=VGG_INPUT_SIZE, recipe="cifar", training="cifar")
def vgg13(num_classes: int = 10, input_shape=None, *, batch_norm: bool = True, dropout: float = DROPOUT) -> keras.Model:
    """VGG configuration B (10 conv + BN layers), global pooling and FC 512 head."""
    return _vgg("vgg13", num_classes, input_shape, batch_norm, dropout)


@register_model("vgg16", input_size=VGG_INPUT_SIZE, recipe="cifar", training="cifar")
def vgg16(num_classes: int = 10, input_shape=None, *, batch_norm: bool = True, dropout: float = DROPOUT) -> keras.Model:
    """VGG configuration D (13 conv + BN layers), global pooling and FC 512 head."""
    return _vgg("vgg16", num_classes, input_shape, batch_norm, dropout)


@register_model("vgg19", input_size=VGG_INPUT_SIZE, recipe="cifar", training="cifar")
def vgg19(num_classes: int = 10, input_shape=None, *, batch_norm: bool = True, dropout: float = DROPOUT) -> keras.Model:
    """VGG configuration E (16 conv + BN layers), global pooling and FC 512 head."""
    return _vgg("vgg19", num_classes, input_shape, batch_norm, dropout)
