"""The batches of the TensorFlow-free path as Keras's ``fit`` reads them: every validation pass is
the whole split, once, in dataset order, in every epoch (here on the TensorFlow backend, whose
Keras reads Python data the same way)."""

from __future__ import annotations

from types import SimpleNamespace

import keras
import numpy as np

from cifarkit.data import open_data
from cifarkit.runtime.strategy import Placement
from cifarkit.training.inputs import _fed


def test_every_epoch_validates_on_the_whole_split_once(cifar10_tar):
    source = open_data(cifar10_tar.path)  # 30 training images, 10 test images
    config = SimpleNamespace(batch_size=4, seed=0, val_split="test")  # validation: batches of 4, 4, 2
    placement = Placement(None, "default", 1, ("cpu",))
    inputs = _fed(config, SimpleNamespace(source=source), placement, steps=7, initial_epoch=0, backend="jax")
    test_labels = cifar10_tar.splits["test"].labels.astype(np.float64)

    def label_mean(y_true, y_pred):  # what the pass saw: the mean of its labels
        return keras.ops.cast(y_true, "float32")

    def label_square(y_true, y_pred):
        return keras.ops.square(keras.ops.cast(y_true, "float32"))

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(), keras.layers.Dense(10)])
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=[label_mean, label_square],
    )
    try:
        history = model.fit(
            inputs.train, validation_data=inputs.validation, epochs=3, verbose=0, shuffle=False, **inputs.fit_options
        ).history
    finally:
        inputs.close()
    np.testing.assert_allclose(history["val_label_mean"], np.mean(test_labels), rtol=1e-6)
    np.testing.assert_allclose(history["val_label_square"], np.mean(test_labels**2), rtol=1e-6)
