"""The private Keras APIs the trainer patches or calls are still what the patches were written for.

When this fails after a Keras upgrade, the message names the patch and the version it was
written for: check whether the new Keras still needs it (see cifarkit/training/keras_compat.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cifarkit.training import keras_compat
from cifarkit.training.keras_compat import PRIVATE_APIS, PrivateApi


@pytest.mark.parametrize("api", PRIVATE_APIS, ids=lambda api: f"{api.patch}:{api.attribute}")
def test_each_private_api_a_patch_relies_on_is_as_it_was_written_for(api):
    problem = api.mismatch()
    assert problem is None, problem


def test_a_changed_api_is_named_with_its_patch_and_version():
    moved = PrivateApi("multi_worker_scalars", "3.15", "keras.src.backend.tensorflow.trainer", "no_such_function", ())
    assert "has no keras.src.backend.tensorflow.trainer.no_such_function" in moved.mismatch()
    assert "'multi_worker_scalars' patch was written for Keras 3.15" in moved.mismatch()
    changed = dataclasses.replace(keras_compat.MULTI_WORKER_SCALARS, parameters=("values", "strategy"))
    assert "instead of ('values', 'strategy')" in changed.mismatch()


def _model():
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
    model.fit(np.ones((8, 4)), np.zeros((8, 3)), epochs=1, verbose=0)
    return model


def test_backup_weights_fall_back_to_the_public_api_when_the_private_one_changes(tmp_path, monkeypatch):
    import keras

    model = _model()
    in_memory = bytes(keras_compat.backup_weights_bytes(model))
    gone = dataclasses.replace(keras_compat.WEIGHTS_STATE, attribute="_no_save_state")
    monkeypatch.setattr(keras_compat, "WEIGHTS_STATE", gone)
    public = bytes(keras_compat.backup_weights_bytes(model))
    for name, data in (("memory", in_memory), ("public", public)):
        (tmp_path / f"{name}.weights.h5").write_bytes(data)
        again = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
        again.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1, momentum=0.9), loss="mse")
        again.optimizer.build(again.trainable_variables)
        again.load_weights(tmp_path / f"{name}.weights.h5")
        for saved, loaded in zip(model.weights + model.optimizer.variables, again.weights + again.optimizer.variables):
            np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
