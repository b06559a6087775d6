"""The recipe as a Keras layer, for augmentation on the accelerator (``--augment-on device``).

The pipeline then ships uint8 batches; this layer, first in the model, runs the very transforms
of :mod:`cifarkit.recipes` inside the compiled training step: random views in training, the
centre view otherwise. Its seeds come from a Keras ``SeedGenerator`` (a variable advanced every
step), so runs are reproducible under a seed and the layer saves and loads with the model.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from .recipes import Recipe, eval_transform, train_transform
from .stats import Stats


@keras.saving.register_keras_serializable(package="cifarkit")
class Augmentation(keras.layers.Layer):
    def __init__(self, recipe: Recipe | dict, stats: Stats | dict, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.recipe = recipe if isinstance(recipe, Recipe) else Recipe(**recipe)
        self.stats = stats if isinstance(stats, Stats) else Stats.from_json(stats)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._train = train_transform(self.recipe, self.stats)
        self._eval = eval_transform(self.recipe, self.stats)
        # Preprocessing works in float32 whatever the model's compute dtype; the model casts.
        self._autocast = False

    def call(self, images, training=None):
        if training:
            seed = tf.cast(self.seed_generator.next(), tf.int64)
            return self._train(images, seed)
        return self._eval(images)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.recipe.crop, self.recipe.crop, 3)

    def get_config(self):
        config = super().get_config()
        config.update(recipe=dataclasses.asdict(self.recipe), stats=self.stats.to_json(), seed=self.seed)
        return config
