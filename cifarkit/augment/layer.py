"""The recipe as a Keras layer, for augmentation on the accelerator (``--augment-on device``).

The pipeline then ships uint8 batches; this layer, first in the model, runs the recipe's ops
(:mod:`cifarkit.augment.ops`) inside the compiled training step, in their ``keras.ops`` form
(:mod:`cifarkit.augment.device`) so that it runs on any Keras backend: random views in training,
the centre view otherwise. Its random draws come from a Keras ``SeedGenerator`` (a variable
advanced every step), so runs are reproducible under a seed and the layer saves and loads with
the model. The config holds the op list and its format version; a config of recipe format 1
(the recipe as fixed fields, no version) loads too.
"""

from __future__ import annotations

import keras
from keras import ops

from ..readers.stats import Stats
from . import device as device_augment
from .recipes import RECIPE_FORMAT, Recipe, recipe_from_config


@keras.saving.register_keras_serializable(package="cifarkit")
class Augmentation(keras.layers.Layer):
    def __init__(self, recipe: Recipe | dict, stats: Stats | dict, seed: int = 0, recipe_format: int = 1, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(recipe, Recipe) and recipe_format > RECIPE_FORMAT:
            raise ValueError(
                f"this layer was saved by a newer cifarkit (recipe format {recipe_format}, this one "
                f"reads up to {RECIPE_FORMAT}). Received: recipe_format={recipe_format}"
            )
        self.recipe = recipe if isinstance(recipe, Recipe) else recipe_from_config(recipe)
        self.steps = tuple(self.recipe.steps)
        self.stats = stats if isinstance(stats, Stats) else Stats.from_json(stats)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        # The training epoch, for ops that depend on it (alt_flip), set by the trainer
        # (cifarkit.training.methods.EpochCounter); only recipes with such an op have it.
        self.epoch = None
        if any(op.uses_epoch for op in self.steps):
            self.epoch = self.add_weight(shape=(), dtype="int32", initializer="zeros", trainable=False, name="epoch")
        # Preprocessing works in float32 whatever the model's compute dtype; the model casts.
        self._autocast = False

    def draw(self, batch, image_size: int) -> list:
        """One training batch's random choices, one per op (advances the seed)."""
        return device_augment.draw_ops(self.steps, self.seed_generator, batch, image_size)

    def views(self, images, draws=None):
        """The recipe's views of uint8 ``images``: those of ``draws`` (from :meth:`draw`), or the
        centre ones without."""
        training = draws is not None
        epoch = self.epoch if training and self.epoch is not None else None
        return device_augment.run_ops(self.steps, self.stats, images, "train" if training else "eval", draws, epoch)

    def call(self, images, training=None):
        draws = self.draw(ops.shape(images)[0], images.shape[1]) if training else None
        return self.views(images, draws)

    def compute_output_shape(self, input_shape):
        size = input_shape[1]
        if size is None:
            return (input_shape[0], self.recipe.crop, self.recipe.crop, input_shape[-1])
        for op in self.steps:
            size = op.out_size(size)
        return (input_shape[0], size, size, input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            recipe=self.recipe.to_config(), recipe_format=RECIPE_FORMAT, stats=self.stats.to_json(), seed=self.seed
        )
        return config
