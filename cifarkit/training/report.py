"""report.json: what a finished run reached, how fast, on what, and with which settings.

The test numbers come from evaluating the run's model file as ``cifarkit evaluate`` would (the
final model, last.keras, unless the run chose a best epoch: best.keras), so the report says what
the file itself does, and on what that file was chosen.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path

from ..evaluation.evaluate import evaluate_model
from ..evaluation.tta import views_text
from ..metadata.run_files import SELECT_NONE, SELECT_TEST
from ..modelio.keras_file import load_model
from ..runtime.strategy import keras_backend
from ..runtime.tensorflow import onednn_state
from .plan import TrainPlan
from .rundir import BEST_MODEL, LAST_MODEL


def test_numbers(config: TrainPlan, data, out: Path) -> dict:
    """The saved model's accuracy on the test split, with the test-time views the plan names and
    the ten-crop accuracy where its recipe has one (:attr:`cifarkit.augment.recipes.Recipe.ten_crop`)."""
    model_name = BEST_MODEL if config.select_on != SELECT_NONE and (out / BEST_MODEL).is_file() else LAST_MODEL
    model = load_model(out / model_name)
    averaged = None
    if config.tta:
        # The final model (no choice made on the test split), with its test-time views averaged;
        # the pass scores the centre view among them, so it is not scored again.
        last = model if model_name == LAST_MODEL else load_model(out / LAST_MODEL)
        averaged = evaluate_model(last, data.source, "test", image_size=data.image_size, tta=config.tta)
    if averaged is not None and model_name == LAST_MODEL:
        result = averaged.centre_view()
    else:
        result = evaluate_model(model, data.source, "test", image_size=data.image_size)
    test = {
        "split": "test",
        "images": result.count,
        "model": model_name,
        "accuracy": result.accuracy,
        "top5": result.top_k_accuracy,
        "top_k": result.top_k,
    }
    if averaged is not None:
        test["tta"] = {
            "model": LAST_MODEL,
            "views": views_text(config.tta),
            "accuracy": averaged.centre_view().accuracy,
            "tta_accuracy": averaged.accuracy,
        }
    if config.recipe.ten_crop:
        test["ten_crop_accuracy"] = evaluate_model(
            model, data.source, "test", image_size=data.image_size, ten_crop=True
        ).accuracy
    return test


def final_report(
    config: TrainPlan, placement, compiled, data, stats, history, checkpoints, out: Path, resumed_from
) -> dict:
    """report.json's content; ``history`` and ``checkpoints`` are the run's callbacks."""
    test = test_numbers(config, data, out)
    rows = history.rows
    # The first epoch of each process includes tracing and compiling; leave it out where possible.
    rates = [r["images_per_second"] for r in rows[1:]] or [r["images_per_second"] for r in rows]
    source = data.source
    chose = config.select_on != SELECT_NONE
    return {
        "model": config.model,
        "test": test,
        "selected_on": config.select_on,
        "best_epoch": checkpoints.best_epoch if chose else None,
        "best_val_accuracy": checkpoints.best if chose and math.isfinite(checkpoints.best) else None,
        **({"warning": SELECTED_ON_TEST} if config.select_on == SELECT_TEST else {}),
        "last_epoch": rows[-1] if rows else None,
        "epochs_run": len(rows),
        "resumed_from_epoch": resumed_from,
        "images_per_second": round(statistics.median(rates), 1) if rates else None,
        "wall_seconds": round(history.wall_seconds(), 1),
        "validation": validation_text(config),
        "dataset": {
            "name": source.name,
            "kind": source.kind,
            "location": str(source.location),
            "bundled_sample": config.sample,
            "class_names": list(source.class_names),
            "counts": dict(source.counts),
            "source_counts": data.full_counts,
        },
        "stats": {
            "origin": stats_origin(stats, source.name),
            "images": stats.images,
            "mean": list(stats.mean),
            "std": list(stats.std),
        },
        "strategy": {"name": placement.name, "replicas": placement.replicas, "devices": list(placement.devices)},
        "precision": config.precision,
        # What ran, where it differs from what was asked (config): jit is off for several CPU
        # replicas, one step per call under multi-worker or on PyTorch; the Keras backend.
        "runtime": {
            "backend": keras_backend(),
            "jit": compiled.jit,
            "steps_per_execution": compiled.steps_per_execution,
            "cpu_kernels": onednn_state() if keras_backend() == "tensorflow" else None,
        },
        "config": config.to_json(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


SELECTED_ON_TEST = (
    "the best epoch was chosen on the test split (--select-on test), so best.keras's test accuracy is optimistic"
)


def validation_text(config: TrainPlan) -> str:
    """What validation ran on, and what was chosen on it."""
    if config.holdout:
        where = f"holdout: {config.holdout} images drawn from train under seed {config.seed}"
    else:
        where = "test split (no holdout): the val_ numbers of each epoch are the test split's"
    if config.select_on == SELECT_NONE:
        chosen = "nothing is chosen on it: the run's model is the final one, last.keras"
    else:
        chosen = f"the best epoch is chosen on it: the run's model is {BEST_MODEL}"
    if config.schedule == "plateau":
        chosen += "; the plateau schedule cuts the learning rate on its accuracy"
    every = config.validate_every
    when = f"; validated every {every} epochs and after the last" if every > 1 else ""
    return f"{where}{when}; {chosen}"


def stats_origin(stats, dataset_name: str) -> str:
    from ..readers.stats import bundled_stats

    bundled = bundled_stats(dataset_name)
    if bundled is not None and bundled == stats:
        return f"bundled statistics of the full {dataset_name} training split"
    return f"computed from the {stats.images} training images used"
