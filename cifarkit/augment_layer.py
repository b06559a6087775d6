"""The recipe as a Keras layer, for augmentation on the accelerator (``--augment-on device``).

The pipeline then ships uint8 batches; this layer, first in the model, runs the transforms of
:mod:`cifarkit.recipes` inside the compiled training step, written in ``keras.ops``
(:mod:`cifarkit.device_augment`) so that it runs on any Keras backend: random views in training,
the centre view otherwise. Its random draws come from a Keras ``SeedGenerator`` (a variable
advanced every step), so runs are reproducible under a seed and the layer saves and loads with
the model.
"""

from __future__ import annotations

import dataclasses

import keras
from keras import ops

from . import device_augment
from .recipes import Recipe
from .stats import Stats


@keras.saving.register_keras_serializable(package="cifarkit")
class Augmentation(keras.layers.Layer):
    def __init__(self, recipe: Recipe | dict, stats: Stats | dict, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.recipe = recipe if isinstance(recipe, Recipe) else Recipe(**recipe)
        self.stats = stats if isinstance(stats, Stats) else Stats.from_json(stats)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # Preprocessing works in float32 whatever the model's compute dtype; the model casts.
        self._autocast = False

    def draw(self, batch, image_size: int) -> device_augment.Draw:
        """One training batch's random windows, mirrors and colour weights (advances the seed)."""
        recipe = self.recipe
        span = device_augment.source_span(recipe, image_size)
        return device_augment.draw_views(self.seed_generator, batch, span, recipe.crop, recipe.flip, recipe.pca_sigma)

    def call(self, images, training=None):
        if training:
            draw = self.draw(ops.shape(images)[0], images.shape[1])
            return device_augment.views(self.recipe, self.stats, images, draw)
        return device_augment.eval_views(self.recipe, self.stats, images)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.recipe.crop, self.recipe.crop, 3)

    def get_config(self):
        config = super().get_config()
        config.update(recipe=dataclasses.asdict(self.recipe), stats=self.stats.to_json(), seed=self.seed)
        return config
