"""``cifarkit train``: one run folder per training run, resumable after a kill.

Resuming: the backup holds the weights, the optimizer (slots, step count, learning rate), the
augmentation layer's seed state, the history rows, the best accuracy so far and the plateau
schedule's counters. Keras starts every epoch at its first step, so an epoch backed up part-way
runs again in full from the weights it had reached; the data order of the epochs left is in
:mod:`cifarkit.training.inputs`.

Augmentation runs either on the host (``tf.data`` map; the bare network trains on float crops)
or on the device (the pipeline ships uint8 batches and the wrapped model trains, its first layer
augmenting inside the compiled step). Both share the very layers that are saved, so the saved
model is the same either way. On Keras's JAX and PyTorch backends the run needs no TensorFlow:
the device augments, :mod:`cifarkit.readers.feed` brings the batches, and what is TensorFlow's
(``tf.distribute``, host augmentation) is refused in one line where it is asked for.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import OutputError, SourceError, UsageError
from ..metadata.run_files import SELECT_NONE
from ..runtime.progress import progress_mode
from ..runtime.strategy import keras_backend
from ..writers.atomic import remove_partials
from ..writers.folder_lock import hold as hold_folder
from .callbacks import BACKUP_SECONDS, Checkpoints, History, LearningRate, Progress, RunBackup
from .compile import Compiled, compile_for_training
from .config import TrainConfig, resolve
from .inputs import check_inputs, run_inputs
from .keras_compat import patch_for_multi_worker
from .methods import method_callbacks
from .plan import TrainPlan
from .report import final_report
from .run_data import RunData, class_coverage_note, open_run_data
from .rundir import (
    BACKUP_DIR,
    BACKUP_STATE,
    CONFIG_FILE,
    LOG_DIR,
    REPORT_FILE,
    STATS_FILE,
    RunState,
    check_workdir,
    clear_run,
    damaged_backup,
    read_backup,
    read_report,
    write_json,
)
from .tensorboard_logs import tensorboard_callback


@dataclass
class TrainResult:
    workdir: Path
    report: Any  # cifarkit.metadata.run_files.RunReport; None for a worker other than the chief
    resumed_from: int | None = None  # epochs already done when this process started
    already_finished: bool = False


def train(
    config: TrainConfig,
    *,
    overwrite: bool = False,
    quiet: bool = False,
    say: Callable[[str], None] | None = None,
    backup_seconds: float | None = BACKUP_SECONDS,
    progress: str | None = None,
) -> TrainResult:
    """Train ``config.model`` as configured, into ``config.workdir``; resume it if it was cut off.

    The chief holds the run folder's lock from the state check to the end, so a second training
    on the same folder is refused in one line instead of interleaving its files with this one's.
    Everything that can refuse the run (settings, data, batch size, model options, the backup)
    is checked before the first file is written, so a refused start leaves the folder as it was.
    ``progress`` is a mode of :mod:`cifarkit.runtime.progress` (None: a bar on a terminal, lines
    elsewhere, nothing when ``quiet``).
    """
    from ..runtime.strategy import make_strategy

    progress = progress or progress_mode(quiet)
    say = say or (lambda message: None if quiet else print(message, file=sys.stderr))
    # The strategy first: a multi-worker strategy must exist before TensorFlow runs anything.
    placement = make_strategy(config.strategy)
    plan = resolve(config)
    workdir = Path(plan.workdir)
    if not placement.is_chief:
        # Other workers compute the same things (their saves take part in collective ops) but
        # keep them in a scratch folder; only their backup lives beside the chief's. The chief
        # holds the lock for all of them.
        state = check_workdir(workdir, plan, overwrite)
        if state is RunState.FINISHED:
            return TrainResult(workdir, read_report(workdir), already_finished=True)
        out = Path(tempfile.mkdtemp(prefix="cifarkit-worker-"))
        try:
            backup_folder = workdir / f"backup-{placement.task.replace(':', '-')}"
            return _Run(plan, placement, out, backup_folder, state, quiet, say, progress).train(backup_seconds)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    with hold_folder(workdir, "a training run"):
        state = check_workdir(workdir, plan, overwrite)
        if state is RunState.FINISHED:
            return TrainResult(workdir, read_report(workdir), already_finished=True)
        run = _Run(plan, placement, workdir, workdir / BACKUP_DIR, state, quiet, say, progress)
        return run.train(backup_seconds)


@dataclass
class _Run:
    """One process's part of a run: ``out`` is the run folder (a scratch folder for workers
    other than the chief) and ``backup_folder`` where this process's backup lives."""

    config: TrainPlan
    placement: Any  # cifarkit.runtime.strategy.Placement
    out: Path
    backup_folder: Path
    state: RunState
    quiet: bool
    say: Callable[[str], None]
    progress: str = "off"  # a mode of cifarkit.runtime.progress

    def train(self, backup_seconds: float | None) -> TrainResult:
        # First everything that can refuse the run, reading only; nothing is written before commit().
        config = self.config
        backup = read_backup(self.backup_folder, config.epochs) if self.state is RunState.RESUME else None
        initial_epoch = backup.epoch if backup else 0
        data, stats, steps = self.read_data()
        compiled = compile_for_training(config, self.placement, data, stats, steps, self.say)
        if self.placement.name == "multi-worker" and keras_backend() == "tensorflow":
            patch_for_multi_worker(compiled.train_model, self.placement.strategy)
        callbacks, stateful = self.callbacks(compiled, steps, backup, backup_seconds)
        if backup is not None:
            restore_backup(self.backup_folder, backup, compiled.train_model, stateful, self.placement)

        self.commit(stats, backup)
        self.announce(data, backup)
        inputs = run_inputs(config, data, stats, self.placement, steps, initial_epoch)
        try:
            with self.placement.fitting():
                compiled.train_model.fit(
                    inputs.train,
                    validation_data=inputs.validation,
                    validation_freq=config.validation_epochs,
                    epochs=config.epochs,
                    initial_epoch=initial_epoch,
                    callbacks=inputs.callbacks + callbacks,
                    verbose=0,
                    shuffle=False,
                    **inputs.fit_options,
                )  # the pipeline shuffles
        finally:
            inputs.close()
        resumed_from = initial_epoch if backup is not None else None
        return self.finish(compiled, data, stats, stateful, resumed_from)

    def read_data(self) -> tuple[RunData, Any, int]:
        """The run's data, its statistics and the steps of an epoch; a batch that does not fit is refused."""
        from ..readers.stats import stats_for

        config = self.config
        data = open_run_data(config)
        check_inputs(data, config.recipe)
        note = class_coverage_note(data.source)
        if note:
            self.say(note)
        source = data.source
        self.placement.check_batch(config.batch_size)
        steps = source.counts["train"] // config.batch_size
        if steps < 1:
            raise UsageError(
                f"--batch-size is larger than the {source.counts['train']} training images. "
                f"Received: batch_size={config.batch_size}"
            )
        statistics = self.recorded_stats(source) or stats_for(
            source, "train", image_size=data.image_size, progress=self.progress
        )
        return data, statistics, steps

    def recorded_stats(self, source):
        """A resumed run's statistics as its folder recorded them, which spares a pass over the data
        (minutes for a photo export); None where the run is not resumed, or the file is unreadable
        or counts another number of training images. Read from the run folder, which a worker
        other than the chief shares but does not write."""
        from ..readers.stats import load_stats

        if self.state is not RunState.RESUME:
            return None
        try:
            stats = load_stats(Path(self.config.workdir) / STATS_FILE)
        except SourceError:
            return None
        return stats if stats.split == "train" and stats.images == source.counts["train"] else None

    def callbacks(self, compiled: Compiled, steps: int, backup, backup_seconds: float | None):
        """(the callbacks in the order they run, the stateful ones the backup records)."""
        config = self.config
        history = History(self.out, steps * config.batch_size, config.val_split)
        schedule = LearningRate(config.schedule, config.lr, config.epochs)
        checkpoints = Checkpoints(
            compiled.export_model,
            self.out,
            choose=config.select_on != SELECT_NONE,
            validated=config.validation_epochs,
        )
        stateful = [history, schedule, checkpoints]
        # Mid-epoch saves only where every worker decides alike; time differs between workers.
        every = backup_seconds if self.placement.name != "multi-worker" else None
        callbacks = [
            schedule,
            *method_callbacks(config, compiled, steps),  # weight averaging, the epoch for alt_flip
            Progress(steps, config.batch_size, config.epochs, self.progress, val_name=config.val_split),
            history,
            checkpoints,
            tensorboard_callback(self.out / LOG_DIR, self.say if self.placement.is_chief else (lambda m: None)),
            # last: it records the others' state
            RunBackup(self.backup_folder, stateful, every, serial=backup.serial if backup else 0),
        ]
        return callbacks, stateful

    def commit(self, stats, backup) -> None:
        """The run is accepted: from here on it writes to its folder."""
        from ..readers.stats import save_stats

        if self.placement.is_chief:
            if self.state is RunState.OVERWRITE:
                clear_run(self.out)
            remove_partials(self.out)  # what a killed save left (models, backup weights, history, ...)
            write_json(self.out / CONFIG_FILE, self.config.to_json())
            save_stats(stats, self.out / STATS_FILE)
        if backup is None and self.backup_folder.exists():
            shutil.rmtree(self.backup_folder, ignore_errors=True)  # no committed state: start afresh

    def announce(self, data: RunData, backup) -> None:
        config, source, placement = self.config, data.source, self.placement
        if backup is not None:
            # Keras starts epochs at their first step: an epoch backed up part-way runs again in full,
            # from the weights it had reached.
            partial = (
                (
                    f" (the backup was {backup.step} steps into it; that epoch runs again in full "
                    "from the weights it had reached)"
                )
                if backup.step
                else ""
            )
            self.say(
                f"resumed from the backup in {self.backup_folder}: continuing at epoch {backup.epoch + 1} of "
                f"{config.epochs}{partial}"
            )
        chosen = "reported only" if config.select_on == SELECT_NONE else "the best epoch chosen on it"
        self.say(
            f"training {config.model} on {source.name} ({source.counts['train']:,} images, validation: "
            f"{config.val_split} {source.counts[config.val_split]:,}, {chosen}) for {config.epochs} "
            f"epoch{'' if config.epochs == 1 else 's'}, batch "
            f"{config.batch_size} on {placement.replicas} replica(s) ({placement.name}), augmentation on the "
            f"{config.augment_on}, {config.precision}"
        )

    def finish(self, compiled: Compiled, data: RunData, stats, stateful: list, resumed_from: int | None) -> TrainResult:
        if not self.placement.is_chief:
            shutil.rmtree(self.backup_folder, ignore_errors=True)
            return TrainResult(self.out, None, resumed_from)
        history, _, checkpoints = stateful
        history.write()  # also after a resume that had no epochs left to run
        report = final_report(
            self.config, self.placement, compiled, data, stats, history, checkpoints, self.out, resumed_from
        )
        write_json(self.out / REPORT_FILE, report)
        report = read_report(self.out)  # what the file says, read as a finished run's report is
        # Finished: report.json now marks the run. The state goes first, so a kill during the removal
        # never leaves a state naming deleted weights.
        (self.backup_folder / BACKUP_STATE).unlink(missing_ok=True)
        shutil.rmtree(self.backup_folder, ignore_errors=True)
        return TrainResult(self.out, report, resumed_from)


def _kernel_misfit(weights: Path, model) -> str | None:
    """How the backup's kernels (weights of rank 2 and more) differ in shape from the model's, or
    None when they match or the file cannot be read as a weights file (then it is damaged)."""
    import h5py

    saved: list[tuple[int, ...]] = []

    def collect(name, item):
        if isinstance(item, h5py.Dataset) and len(item.shape) >= 2:
            saved.append(tuple(item.shape))

    try:
        with h5py.File(weights, "r") as file:
            layers = file.get("layers")
            if not isinstance(layers, h5py.Group):
                return None
            layers.visititems(collect)
    except Exception:
        return None
    wanted = [tuple(variable.shape) for variable in model.weights if len(variable.shape) >= 2]
    if sorted(saved) == sorted(wanted):
        return None
    only_saved = sorted(set(saved) - set(wanted))
    only_wanted = sorted(set(wanted) - set(saved))
    if not only_saved and not only_wanted:
        return f"{len(saved)} kernels against the model's {len(wanted)}"
    return f"kernels {_shapes(only_saved)} in the backup, {_shapes(only_wanted)} in the model"


def _shapes(shapes: list[tuple[int, ...]]) -> str:
    return ", ".join("x".join(map(str, shape)) for shape in shapes[:3]) + (" ..." if len(shapes) > 3 else "") or "none"


def restore_backup(folder: Path, backup, train_model, stateful: list, placement) -> None:
    """Weights, optimizer and callback state from the committed backup; damage is one line."""
    with placement.strategy.scope():
        train_model.optimizer.build(train_model.trainable_variables)
    weights = folder / backup.weights
    try:
        train_model.load_weights(weights)
    except Exception as exc:  # h5py and Keras raise many kinds for a truncated or foreign file
        misfit = _kernel_misfit(weights, train_model)
        if misfit:
            raise OutputError(
                f"{weights}: the run's backup holds another network than the one asked for ({misfit}); "
                "resume with the model options (-m) the run was started with, or pass --overwrite to start "
                "it again"
            ) from None
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise damaged_backup(weights, f"cannot load it: {why}") from None
    for item in stateful:
        item.restore(getattr(backup.callbacks, item.key))  # checked as the backup was read
