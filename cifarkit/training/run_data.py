"""The data of a training run: the source, its "train" and "test" splits chosen by
``--train-split`` and ``--eval-split`` (TFDS's split syntax), then ``--holdout`` and
``--limit-train`` applied."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UsageError
from ..readers.reader import DataReader
from .plan import HOLDOUT_SPLIT, TrainPlan


@dataclass
class RunData:
    source: DataReader  # with the splits training uses
    full_counts: dict[str, int]  # the splits of the source as read, before --limit-train/--holdout
    image_size: int | None  # square size images of mixed sizes are brought to, or None
    input_shape: tuple[int, int, int]  # uint8 input of the saved model


def open_run_data(config: TrainPlan) -> RunData:
    """The source's splits chosen by ``--train-split``/``--eval-split``, with ``--holdout`` and
    ``--limit-train`` applied as new splits of the training images."""
    from ..data import open_data

    source = open_data(config.data, verify=config.verify)
    full = dict(source.counts)
    source = select_run_splits(source, config.train_split, config.eval_split)
    rng = np.random.default_rng(config.seed)
    train_count = source.counts["train"]  # what --train-split selected
    order = spread_order(source.known_labels("train"), train_count, rng)
    if config.holdout and config.holdout >= train_count:
        raise UsageError(
            f"--holdout must leave training images: train has {train_count}. Received: holdout={config.holdout}"
        )
    held, kept = order[: config.holdout], order[config.holdout :]
    if config.limit_train is not None:
        kept = kept[: config.limit_train]
    if config.holdout or config.limit_train is not None:
        # Sorted, so the subsets keep dataset order (evaluation reads them in order).
        picks = {"train": np.sort(kept)}
        if config.holdout:
            picks[HOLDOUT_SPLIT] = np.sort(held)
        source = source.subset("train", picks)
    if source.image_shape is None:
        size = config.recipe.source_size
        return RunData(source, full, size, (size, size, 3))
    return RunData(source, full, None, tuple(source.image_shape))


def spread_order(labels: np.ndarray | None, count: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``count`` images in which, where the labels are known, every class is
    spread evenly (each class shuffled, its ``i``-th of ``n`` images keyed ``(i + u) / n``), so that
    the first ``--holdout`` images hold every class in its share."""
    if labels is None:
        return rng.permutation(count)
    keys = np.empty(count)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        keys[members] = (np.arange(len(members)) + rng.random(len(members))) / len(members)
    return np.argsort(keys, kind="stable")


def class_coverage_note(source: DataReader) -> str | None:
    """A warning where the run's test split, as far as its labels are known without decoding,
    holds fewer classes than its training split (a slice of data stored class by class)."""
    train, test = source.known_labels("train"), source.known_labels("test")
    if train is None or test is None:
        return None
    trained, tested = np.unique(train), np.unique(test)
    if len(tested) >= len(trained):
        return None
    names = ", ".join(source.class_names[i] for i in tested[:5]) + (", ..." if len(tested) > 5 else "")
    return (
        f"warning: the test split holds {len(tested)} of the {len(trained)} classes trained on ({names}): its accuracy "
        "says little about the others; --holdout N holds out images of every class"
    )


def select_run_splits(source, train_split: str, eval_split: str):
    """The source with exactly the splits a run uses: "train" and "test", each what its option's
    split spec selects (``--train-split 'test[:8000]' --eval-split 'test[8000:]'``). A spec naming
    a split the data lacks is refused in one line that says how to choose others."""
    for option, spec in (("--train-split", train_split), ("--eval-split", eval_split)):
        try:
            pieces = source.pieces(spec)
        except UsageError as exc:
            example = next(iter(source.counts), "test")
            raise UsageError(
                f"{exc} (choose with {option}, e.g. --train-split '{example}[:80%]' --eval-split '{example}[80%:]')"
            ) from None
        if not sum(len(p) for p in pieces):
            raise UsageError(f"{option} {spec!r} selects no images from {source.location}")
    return source.select({"train": train_split, "test": eval_split})
