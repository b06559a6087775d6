"""The codecs export formats write with: PNG, and tf.train.Example records, checked against the
decoders and TensorFlow's own serialisation."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from cifarkit.formats.codecs import example
from cifarkit.formats.codecs.png import encode_png


def test_hand_encoded_example_equals_tensorflows_own():
    import tensorflow as tf

    ours = example.example_bytes({"image": b"\x89PNG...", "label": 7, "id": b"train_00001", "neg": -3})
    feature = tf.train.Feature
    expected = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": feature(bytes_list=tf.train.BytesList(value=[b"\x89PNG..."])),
                "label": feature(int64_list=tf.train.Int64List(value=[7])),
                "id": feature(bytes_list=tf.train.BytesList(value=[b"train_00001"])),
                "neg": feature(int64_list=tf.train.Int64List(value=[-3])),
            }
        )
    )
    assert tf.train.Example.FromString(ours) == expected


def test_png_encoder_is_lossless_for_any_size():
    import tensorflow as tf

    rng = np.random.default_rng(3)
    for shape in [(32, 32, 3), (1, 1, 3), (17, 23, 3), (64, 5, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        data = encode_png(image)
        np.testing.assert_array_equal(iio.imread(data, extension=".png"), image)
        np.testing.assert_array_equal(tf.io.decode_png(data).numpy(), image)
