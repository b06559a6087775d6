"""What a training run is asked for (:class:`TrainConfig`) and the run as resolved
(:class:`TrainPlan`): what :func:`cifarkit.training.config.resolve` makes of the request, every
default applied and every value checked, the recipe a :class:`~cifarkit.augment.recipes.Recipe` and
the test-time views a tuple. The trainer reads only the plan; nothing downstream looks a recipe up
by name or parses ``--tta`` again.

``config.json`` is its serialisation (:meth:`TrainPlan.to_json`): the recipe by name and crop, the
views comma-separated, so run folders of every version resume and evaluate as they did, and
:meth:`TrainPlan.from_file` reads one back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..augment.recipes import Recipe
    from ..metadata.run_files import RunConfigFile

HOLDOUT_SPLIT = "holdout"
DEFAULT_STEPS_PER_EXECUTION = 8  # steps per call into the compiled function: less Python per step


@dataclass
class TrainConfig:
    """What ``cifarkit train`` was asked for; ``None`` means "the model's default".
    :func:`resolve` makes the run's :class:`TrainPlan` of it."""

    model: str
    workdir: str
    data: str | None = None
    sample: bool = False  # the data is the bundled sample (recorded, and said in the report)
    verify: bool = True
    model_options: dict = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    recipe: str | None = None
    crop: int | None = None
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    label_smoothing: float | None = None  # None: the model's default (0 unless it declares one)
    seed: int = 0
    precision: str | None = None  # None: the model's default (config.default_precision)
    jit: bool | None = None
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION
    validate_every: int | None = None  # None: the model's default (validation_epochs)
    augment_on: str | None = None
    strategy: str = "auto"
    holdout: int = 0  # images held out of train for validation; 0: validate on the test split
    limit_train: int | None = None
    train_split: str = "train"  # TFDS split syntax (cifarkit.readers.splits): "test[:8000]", "train+test[:50%]"
    eval_split: str = "test"  # the run's "test" split: validation (without --holdout) and the final report
    # Where the best epoch is chosen (best.keras): holdout, test (asked by name only) or none (the
    # final model); None: on the holdout where there is one, else none.
    select_on: str | None = None
    # Methods of cifarkit.training.methods, None: the model's default (off unless it declares them).
    nesterov: bool | None = None
    averaging: str | None = None  # none, ema, lookahead
    whiten: bool | None = None  # whitening initialisation of the first convolution
    warmup: float | None = None  # fraction of the steps the per-step schedules warm up over
    muon_scale: float | None = None  # --optimizer muon: the filters' rate over the run's rate
    # Test-time views in the final report, as --tta writes them ("flip,translate", "none") or a
    # tuple of cifarkit.evaluation.tta.VIEWS; parsed once, by resolve.
    tta: str | tuple[str, ...] | None = None

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainPlan:
    """A run's settings as resolved. Read back from a config.json that lacks some settings (an
    older run folder's), those settings are None."""

    model: str
    workdir: str  # absolute
    data: str  # absolute
    recipe: Recipe  # the crop is its crop
    epochs: int
    batch_size: int
    optimizer: str  # OPTIMIZERS
    lr: float
    momentum: float | None  # SGD only
    weight_decay: float
    schedule: str  # SCHEDULES
    label_smoothing: float
    jit: bool
    augment_on: str  # host or device
    nesterov: bool | None  # SGD only
    averaging: str  # AVERAGING
    whiten: bool
    warmup: float | None  # None: the schedule's own fraction
    tta: tuple[str, ...]  # test-time views in the final report (cifarkit.evaluation.tta.VIEWS), () for none
    sample: bool = False
    verify: bool = True
    model_options: dict = field(default_factory=dict)
    seed: int = 0
    precision: str = "float32"
    steps_per_execution: int = DEFAULT_STEPS_PER_EXECUTION
    validate_every: int = 1
    strategy: str = "auto"
    holdout: int = 0
    limit_train: int | None = None
    train_split: str = "train"
    eval_split: str = "test"
    select_on: str = "none"  # cifarkit.metadata.run_files.SELECTIONS
    muon_scale: float | None = None  # muon only

    @property
    def crop(self) -> int:
        return self.recipe.crop

    @property
    def val_split(self) -> str:
        return HOLDOUT_SPLIT if self.holdout else "test"

    @property
    def validation_epochs(self) -> list[int]:
        """The epochs (1-based) after which validation runs: every ``validate_every``-th, and the last."""
        every = self.validate_every
        return [epoch for epoch in range(1, self.epochs + 1) if epoch % every == 0 or epoch == self.epochs]

    def to_json(self) -> dict:
        """config.json's content: :class:`TrainConfig`'s keys, in its order, with the values
        ``cifarkit train`` would take to ask for this run again."""
        from ..evaluation.tta import views_text

        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(recipe=self.recipe.name, crop=self.recipe.crop, tta=views_text(self.tta))
        return TrainConfig(**values).to_json()

    @staticmethod
    def from_file(record: RunConfigFile) -> TrainPlan:
        """The plan a run's config.json (as read and checked:
        :func:`cifarkit.metadata.run_files.read_run_config`) holds; its recipe and views are
        parsed here, once."""
        from ..augment.recipes import get_recipe
        from ..evaluation.tta import parse_views

        values = record.model_dump()
        crop = values.pop("crop")
        values.update(
            recipe=get_recipe(values["recipe"], crop),
            tta=parse_views(values["tta"]),
            select_on=record.selection(),
            validate_every=record.validate_every or 1,  # not recorded before it existed: every epoch
        )
        return TrainPlan(**values)
