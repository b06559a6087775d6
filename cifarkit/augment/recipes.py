"""Named augmentation recipes as data: ordered lists of ops from :mod:`cifarkit.augment.ops`.

A :class:`Recipe` says *what* happens, in order (``resize(256) | crop(227) | flip |
pca_jitter(0.1) | normalize``), and the size images of other sizes are brought to before batching;
the model's input size follows from the ops. Everything else is derived from the list:
:meth:`Recipe.describe`, the preview rows (:func:`preview_stages`, the prefixes of the list),
the host transforms (:func:`train_transform`, :func:`eval_transform`, :func:`ten_crop_transform`,
each the whole list compiled into one XLA function per batch) and the saved
:class:`~cifarkit.augment.layer.Augmentation` layer, which runs the same ops in ``keras.ops``.

To add a recipe, add one entry to :data:`RECIPES` (the CLI's ``--recipe`` choices and the model
registry's known recipes are read from it). To add an op, see :mod:`cifarkit.augment.ops`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from ..constants import IMAGE_SIZE
from ..errors import UsageError
from ..runtime.lazy import tf
from .ops import PCA_SIGMA, Op, make_op

if TYPE_CHECKING:  # numpy stays unimported for the CLI's choices and the model registry
    from ..readers.stats import Stats

# The paper resizes every image to 256x256 and trains on 224x224 crops; 227 is the size at which
# the 11x11 stride-4 first layer tiles exactly ((227 - 11) / 4 + 1 = 55), so it is the default.
PAPER_RESIZE = 256
PAPER_CROPS = (227, 224)
# The usual CIFAR recipe: pad 4 pixels (reflect) and take a random 32x32 crop.
CIFAR_PAD = 4
CIFAR_SIZE = IMAGE_SIZE
AIRBENCH_PAD = 2  # airbench's translation: pad 2 (reflect), random 32x32 crop
AIRBENCH_WIDE_PAD = 4  # airbench96's, for its longer runs (31-40 epochs)
AIRBENCH_CUTOUT = 12  # airbench96's cutout square, with the wide translation
MNIST_SIZE, MNIST_PAD = 28, 2  # LeNet-5's 32x32 input from MNIST's 28x28
INCEPTION_CROP = 224  # what most ImageNet trainers feed a model after a random-resized crop
# Version of the op list in a saved Augmentation layer's config. Version 1 (a config without the
# key) holds the recipe as fixed fields: crop, resize, pad, pad_mode, flip, pca_sigma, standardize.
RECIPE_FORMAT = 2


@dataclass(frozen=True)
class Recipe:
    name: str
    ops: tuple[tuple[str, tuple], ...]  # (op name, arguments) in order
    source_size: int  # square size that images of other sizes (folder trees) are brought to

    def __post_init__(self):
        object.__setattr__(self, "ops", tuple((name, tuple(args)) for name, args in self.ops))
        _checked = self.crop  # every op name, argument and size checked now, not at the first batch

    @property
    def steps(self) -> list[Op]:
        return [make_op(name, *args) for name, args in self.ops]

    @property
    def crop(self) -> int:
        """Side of the model's input: the source size carried through every op."""
        size = self.source_size
        for op in self.steps:
            size = op.out_size(size)
        return size

    @property
    def ten_crop(self) -> bool:
        """Whether the paper's ten-crop test applies: the recipe crops a window out of the image it
        resized, so the four corners, the centre and their mirrors are ten different views."""
        return self.arg("resize") is not None and self.arg("crop") is not None

    def arg(self, op_name: str, default=None):
        """The first argument of the recipe's ``op_name`` op, or ``default`` if it has none."""
        return next((args[0] for name, args in self.ops if name == op_name and args), default)

    def describe(self) -> str:
        return ", ".join(op.phrase() for op in self.steps)

    def to_config(self) -> dict:
        return {
            "name": self.name,
            "ops": [[name, list(args)] for name, args in self.ops],
            "source_size": self.source_size,
        }


def _airbench(name: str, pad: int, cutout: int | None = None) -> Recipe:
    ops = (("pad", (pad, "REFLECT")), ("crop", (CIFAR_SIZE,)), ("alt_flip", ()), ("normalize", (True,)))
    if cutout:
        ops += (("cutout", (cutout,)),)  # after normalisation, as airbench96: the hole is the mean colour
    return Recipe(name, ops, source_size=CIFAR_SIZE)


RECIPES: dict[str, Recipe] = {
    "paper": Recipe(
        "paper",
        (
            ("resize", (PAPER_RESIZE,)),
            ("crop", (PAPER_CROPS[0],)),
            ("flip", ()),
            ("pca_jitter", (PCA_SIGMA,)),
            ("normalize", (False,)),
        ),
        source_size=PAPER_RESIZE,
    ),
    "cifar": Recipe(
        "cifar",
        (("pad", (CIFAR_PAD, "REFLECT")), ("crop", (CIFAR_SIZE,)), ("flip", ()), ("normalize", (True,))),
        source_size=CIFAR_SIZE,
    ),
    # airbench (Jordan 2024, section 3.2): translate by up to 2 pixels (reflect padding), and flip
    # every image in every other epoch, exactly (alt_flip), instead of a coin per presentation.
    "airbench": _airbench("airbench", AIRBENCH_PAD),
    # The same with translations of up to 4 pixels: more augmentation for runs long enough to
    # overfit airbench's (whitenet at 22 epochs: 98.7% of the training images right, 89.9% of the test).
    "airbench-wide": _airbench("airbench-wide", AIRBENCH_WIDE_PAD),
    # airbench96's augmentation: the wide translation and a 12x12 cutout square (DeVries & Taylor
    # 2017), the regularisation of its 31-40-epoch runs at widths that fit the training set.
    "airbench-cutout": _airbench("airbench-cutout", AIRBENCH_WIDE_PAD, AIRBENCH_CUTOUT),
    # Szegedy et al. 2015's random-resized crop (8-100% of the area, aspect 3/4-4/3) then a flip,
    # as most ImageNet trainers do; JPEG files can be read only within the crop
    # (cifarkit.readers.image_decode.decode_random_crop).
    "inception": Recipe(
        "inception",
        (("random_resized_crop", (INCEPTION_CROP,)), ("flip", ()), ("normalize", (True,))),
        source_size=PAPER_RESIZE,
    ),
    # LeCun et al. 1998, section III.A: the 28x28 digits centred in a 32x32 field (pad 2 with the
    # background, 0), then normalised to zero mean and unit variance; no augmentation, no flip
    # (a mirrored digit is another symbol).
    "mnist": Recipe(
        "mnist",
        (("pad", (MNIST_PAD, "CONSTANT")), ("crop", (MNIST_SIZE + 2 * MNIST_PAD,)), ("normalize", (True,))),
        source_size=MNIST_SIZE,
    ),
}


def check_channels(recipe: Recipe, channels: int | None, where) -> None:
    """Refuse, in one line, a recipe that mixes colours (the paper's PCA lighting) for grey images."""
    if channels == 1 and recipe.arg("pca_jitter") is not None:
        raise UsageError(
            f"--recipe {recipe.name} shifts colours along RGB's principal components; {where} holds grey "
            "images (--recipe mnist or cifar)"
        )


def get_recipe(name: str, crop: int | None = None) -> Recipe:
    """The recipe ``name``; ``crop`` changes the window of a recipe that resizes first."""
    try:
        recipe = RECIPES[name]
    except KeyError:
        raise UsageError(f"unknown recipe {name!r}; choose one of: {', '.join(RECIPES)}") from None
    if crop is not None and crop != recipe.crop:
        if not recipe.ten_crop:  # only a window cut from a resized image has a size to choose
            raise UsageError(f"recipe {name!r} has no --crop option. Received: crop={crop}")
        resize = recipe.arg("resize")
        if not 1 <= crop <= resize:
            raise UsageError(f"--crop must be between 1 and {resize}. Received: crop={crop}")
        ops = tuple((op, (crop,) if op == "crop" else args) for op, args in recipe.ops)
        recipe = replace(recipe, ops=ops)
    return recipe


def recipe_from_config(config: dict) -> Recipe:
    """A recipe from a saved layer's config: the op list, or version 1's fixed fields."""
    if "ops" in config:
        return Recipe(config["name"], tuple((name, tuple(args)) for name, args in config["ops"]), config["source_size"])
    ops = [("resize", (config["resize"],))] if config.get("resize") else []
    if config.get("pad"):
        ops.append(("pad", (config["pad"], config.get("pad_mode", "REFLECT"))))
    ops.append(("crop", (config["crop"],)))
    if config.get("flip", True):
        ops.append(("flip", ()))
    if config.get("pca_sigma"):
        ops.append(("pca_jitter", (config["pca_sigma"],)))
    ops.append(("normalize", (bool(config.get("standardize", False)),)))
    return Recipe(config["name"], tuple(ops), config.get("resize") or config["crop"])


def _compiled(transform: Callable) -> Callable:
    """XLA-compile a transform: the window sampling, colour jitter and normalisation then run as
    one fused loop per batch instead of a chain of full-size intermediate tensors. Compiled
    functions also run inside ``Dataset.map`` and inside a Keras training step."""
    return tf.function(transform, jit_compile=True)


def train_transform(recipe: Recipe, stats: Stats, epoch=None) -> Callable:
    """``fn(uint8 images (N, H, W, 3), seed [2]) -> float32 (N, crop, crop, 3)``; ``epoch`` (from
    :func:`epoch_variable`) is read at every batch by the ops that depend on the epoch."""
    from .host import run_ops

    steps = recipe.steps
    return _compiled(lambda images, seed: run_ops(steps, stats, images, "train", seed, epoch))


def epoch_variable(recipe: Recipe):
    """A ``tf.Variable`` for the training epoch if an op of the recipe reads it (alt_flip), else
    None; the trainer sets it as each epoch begins (cifarkit.training.methods.EpochCounter)."""
    if not any(op.uses_epoch for op in recipe.steps):
        return None
    return tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")


def eval_transform(recipe: Recipe, stats: Stats) -> Callable:
    """``fn(uint8 images) -> float32``: the centre window, no randomness (for the cifar recipe,
    the centre of the padded image is the image itself)."""
    from .host import run_ops

    steps = recipe.steps
    return _compiled(lambda images: run_ops(steps, stats, images, "eval"))


def ten_crop_transform(recipe: Recipe, stats: Stats) -> Callable:
    """``fn(uint8 images (N, ...)) -> float32 (N, 10, crop, crop, 3)``: corners, centre, mirrors."""
    from .host import run_ops

    steps, crop = recipe.steps, recipe.crop

    def transform(images):
        views = run_ops(steps, stats, images, "ten_crop")
        return tf.reshape(views, [tf.shape(images)[0], 10, crop, crop, 3])

    return _compiled(transform)


def preview_stages(recipe: Recipe, stats: Stats) -> list[tuple[str, Callable]]:
    """Rows for ``augment-preview --stages``: ``fn(uint8 images, seed) -> [0, 1] float images``.

    Row k runs the recipe's ops up to its k-th visible one, with the same seed, so each row
    differs from the one above by one op. Ops that only shift values (normalisation) get no row:
    where one has run, it is undone for display, so an op after it (cutout's square, zero after
    normalisation) shows the colour the network sees (the training mean), not black.
    """
    from .host import denormalize, run_ops

    steps = recipe.steps

    def stage(prefix: list[Op]):
        norm = next((op for op in reversed(prefix) if op.name == "normalize"), None)

        def run(images, seed):
            out = run_ops(prefix, stats, images, "train", seed)
            if norm is not None:
                out = denormalize(out, stats.mean, norm.divisor(stats))
            return tf.clip_by_value(out, 0.0, 1.0)

        return run

    return [(op.caption(), stage(steps[: k + 1])) for k, op in enumerate(steps) if op.visible]
