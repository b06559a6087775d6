"""Run folders under damage and contention: a damaged config, model or backup, a full disk while
training, a refused start, leftovers of a killed save, and two trainings on one folder.

Each failure must be one line on stderr and exit 1 (2 for bad settings), and must lose nothing:
the files of the run stay as they were, and the last good backup still resumes the run.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import synth
from synth import make_learnable_cifar10
from typer.testing import CliRunner

from cifarkit.cli import app

runner = CliRunner()
MODEL_FILES = ("last.keras", "history.csv", "curves.png", "config.json", "stats.json")


def train_args(data, workdir: Path, *extra: str) -> list[str]:
    # Two epochs of 12 steps: the crashed run below stops between them.
    return synth.lenet5_train_args(data, workdir, *extra, quiet=False)


def one_error(result, code: int = 1) -> str:
    """The single 'cifarkit: error:' line of a failed command, which must end its output."""
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.endswith(errors[0] + "\n"), result.stderr
    assert "Traceback" not in result.output
    return errors[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_learnable_cifar10(tmp_path_factory.mktemp("run-folder-data"))


@pytest.fixture(scope="module")
def crashed_run(data, tmp_path_factory):
    """A run stopped at the start of its second epoch: epoch 1 in history.csv, last.keras and
    a committed backup of epoch 1 (what a kill or a crash leaves)."""
    import cifarkit.training as trainer

    workdir = tmp_path_factory.mktemp("crashed") / "run"
    config = trainer.TrainConfig(model="lenet5", workdir=str(workdir), data=str(data.path), epochs=2, batch_size=16)
    with pytest.MonkeyPatch.context() as patch:
        synth.crash_during_training(patch, epoch=1)
        with pytest.raises(synth.TrainingCrash):
            trainer.train(config, quiet=True)
    state = json.loads((workdir / "backup" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 0
    return workdir


@pytest.fixture
def run_copy(crashed_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(crashed_run, copy)  # config.json still names the crashed run's folder
    return copy


def _resumes(data, workdir: Path, *extra: str) -> None:
    result = runner.invoke(app, train_args(data, workdir, *extra))
    assert result.exit_code == 0, result.output
    assert "continuing at epoch 2 of 2" in result.stderr
    report = json.loads((workdir / "report.json").read_text())
    assert report["resumed_from_epoch"] == 1 and report["epochs_run"] == 2


def test_a_run_folder_moved_elsewhere_resumes_there(data, crashed_run, run_copy):
    assert json.loads((run_copy / "config.json").read_text())["workdir"] == str(crashed_run)
    _resumes(data, run_copy)
    assert json.loads((run_copy / "config.json").read_text())["workdir"] == str(run_copy)
    assert (run_copy / "last.keras").is_file()


def test_a_run_records_its_model_options_defaults_included(run_copy):
    recorded = json.loads((run_copy / "config.json").read_text())["model_options"]
    assert recorded == {"modern": False, "activation": None, "pool": None}


def test_a_run_folder_that_recorded_only_the_options_given_resumes(data, run_copy):
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "model_options": {}}))
    _resumes(data, run_copy)


def _a_newer_default(monkeypatch) -> None:
    """lenet5's ``pool`` declared "max", as a later release might change a default."""
    from cifarkit.models.registry import ModelInfo

    declared = ModelInfo.option_defaults.fget
    monkeypatch.setattr(ModelInfo, "option_defaults", property(lambda info: {**declared(info), "pool": "max"}))


def test_a_run_folder_that_recorded_only_the_options_given_resumes_at_an_older_default(data, run_copy, monkeypatch):
    config = json.loads((run_copy / "config.json").read_text())
    (run_copy / "config.json").write_text(json.dumps({**config, "model_options": {}}))
    _a_newer_default(monkeypatch)
    _resumes(data, run_copy, "-m", "pool=null")  # the default the run was made with, given
    assert json.loads((run_copy / "config.json").read_text())["model_options"]["pool"] is None


def test_a_model_default_changed_since_the_run_is_refused_not_resumed(data, run_copy, monkeypatch):
    before = snapshot(run_copy)
    _a_newer_default(monkeypatch)
    error = one_error(runner.invoke(app, train_args(data, run_copy)), code=1)
    assert "holds a run with other settings (model_options:" in error and "'pool': 'max'" in error
    assert snapshot(run_copy) == before


def test_a_run_folder_made_in_another_precision_names_the_option_that_resumes_it(data, run_copy):
    """Mixed precision is the default only where the CPU computes bfloat16: a run folder from
    another machine differs in that alone, and the one line says how to go on with it."""
    config = json.loads((run_copy / "config.json").read_text())
    assert config["precision"] == "float32"
    (run_copy / "config.json").write_text(json.dumps({**config, "precision": "mixed"}))
    before = snapshot(run_copy)
    error = one_error(runner.invoke(app, train_args(data, run_copy)), code=1)
    assert "(precision: 'mixed' -> 'float32'); --precision mixed resumes it; pass --overwrite" in error
    assert snapshot(run_copy) == before
    # Another difference besides: no such hint, only the difference.
    (run_copy / "config.json").write_text(json.dumps({**config, "precision": "mixed", "lr": 0.5}))
    error = one_error(runner.invoke(app, train_args(data, run_copy)), code=1)
    assert "resumes it" not in error and "holds a run with other settings (lr:" in error
    (run_copy / "config.json").write_text(json.dumps({**config, "precision": "mixed"}))
    _resumes(data, run_copy, "--precision", "mixed")  # as the line says


def test_a_muon_run_from_before_its_scale_was_recorded_names_the_option_that_resumes_it(data, run_copy):
    """Muon's scale was 0.04 for every model until each training family declared its own (lenet5's
    is 0.5 now): the folder differs only there, and the line says how to resume it."""
    config = json.loads((run_copy / "config.json").read_text())
    older = {key: value for key, value in config.items() if key != "muon_scale"}  # not recorded then
    (run_copy / "config.json").write_text(json.dumps({**older, "optimizer": "muon"}))
    before = snapshot(run_copy)
    error = one_error(runner.invoke(app, train_args(data, run_copy, "--optimizer", "muon")), code=1)
    assert "(muon_scale: 0.04 -> 0.5); --muon-scale 0.04 resumes it; pass --overwrite" in error
    assert snapshot(run_copy) == before


def test_a_backup_of_another_network_is_named_as_such_not_as_damage(data, tmp_path):
    """An older run folder recorded only the options given; resumed without the widths it was made
    with, its backup's kernels do not fit the model, and the one line says so (not "damaged")."""
    import cifarkit.training as trainer

    workdir = tmp_path / "run"
    config = trainer.TrainConfig(
        model="whitenet",
        workdir=str(workdir),
        data=str(data.path),
        epochs=2,
        batch_size=16,
        model_options={"widths": "8,16,16"},
    )
    with pytest.MonkeyPatch.context() as patch:
        synth.crash_during_training(patch, epoch=1)
        with pytest.raises(synth.TrainingCrash):
            trainer.train(config, quiet=True)
    recorded = json.loads((workdir / "config.json").read_text())
    (workdir / "config.json").write_text(json.dumps({**recorded, "model_options": {}}))
    before = snapshot(workdir)
    command = ["train", "whitenet", "--data", str(data.path), "--workdir", str(workdir), "--epochs", "2"]
    error = one_error(runner.invoke(app, [*command, "--batch-size", "16", "--quiet"]))
    assert "holds another network than the one asked for" in error and "damaged" not in error
    assert "3x3x8x8" in error and "3x3x64x64" in error  # block 1's second convolution, saved and asked
    assert snapshot(workdir) == before


# --------------------------------------------------------------------------------------------
# evaluate on a damaged run folder


@pytest.mark.parametrize(
    "config, message",
    [
        ([1], "the top level: "),
        ({}, "model: Field required"),
        ("data-null", "data: Input should be a valid string"),
    ],
)
def test_evaluate_refuses_a_damaged_run_configuration_in_one_line(crashed_run, tmp_path, config, message):
    run = tmp_path / "run"
    shutil.copytree(crashed_run, run)
    if config == "data-null":
        config = json.loads((run / "config.json").read_text())
        config["data"] = None
    (run / "config.json").write_text(json.dumps(config))
    error = one_error(runner.invoke(app, ["evaluate", str(run), "--quiet"]))
    assert f"{run / 'config.json'}: not a training run's configuration ({message}" in error
    assert "--data" in error


@pytest.mark.parametrize("damage", ["flipped", "truncated"])
def test_a_damaged_model_file_is_one_line(crashed_run, data, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(crashed_run, run)
    model = run / "last.keras"
    raw = bytearray(model.read_bytes())
    if damage == "flipped":
        for i in range(len(raw) // 3, len(raw) // 3 + 64):  # inside the weights member
            raw[i] ^= 0xFF
    else:
        del raw[len(raw) // 2 :]
    model.write_bytes(bytes(raw))
    error = one_error(runner.invoke(app, ["evaluate", str(run), "--quiet"]))
    assert str(model) in error
    assert ("does not match its checksum" if damage == "flipped" else "is it truncated?") in error
    error = one_error(runner.invoke(app, ["evaluate", str(model), "--data", str(data.path), "--quiet"]))
    assert str(model) in error


# --------------------------------------------------------------------------------------------
# resume with a damaged backup: refused in one line, nothing touched, --overwrite starts again


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncated-weights", "cannot load it"),
        ("state-list", "the top level: "),
        ("state-without-epoch", "epoch: Field required"),
        ("state-not-json", "Invalid JSON"),
        ("weights-missing", "is missing"),
        ("history-rows", "callbacks.history.rows.0.epoch: Input should be a valid integer"),
    ],
)
def test_resume_with_a_damaged_backup_is_refused_and_touches_nothing(data, run_copy, damage, message):
    backup = run_copy / "backup"
    state = json.loads((backup / "state.json").read_text())
    weights = backup / state["weights"]
    if damage == "truncated-weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "state-list":
        (backup / "state.json").write_text("[1]")
    elif damage == "state-without-epoch":
        del state["epoch"]
        (backup / "state.json").write_text(json.dumps(state))
    elif damage == "state-not-json":
        (backup / "state.json").write_text('{"epoch": 1,')
    elif damage == "weights-missing":
        weights.unlink()
    else:
        state["callbacks"]["history"]["rows"] = [{"epoch": "one"}]
        (backup / "state.json").write_text(json.dumps(state))
    before = snapshot(run_copy)

    error = one_error(runner.invoke(app, train_args(data, run_copy)))
    assert "damaged run backup" in error and message in error and "--overwrite" in error
    assert snapshot(run_copy) == before  # not one file written, removed or changed

    if damage != "truncated-weights":
        return  # the way out is the same for every kind of damage; one run shows it (fast tests)
    result = runner.invoke(app, train_args(data, run_copy, "--overwrite"))
    assert result.exit_code == 0, result.output
    assert json.loads((run_copy / "report.json").read_text())["resumed_from_epoch"] is None


# --------------------------------------------------------------------------------------------
# a full disk while training


def _fail_writes_to(monkeypatch, name_part: str, error: int = errno.ENOSPC) -> list[str]:
    """Every atomic write whose file name holds ``name_part`` fails as on a full disk."""
    from cifarkit.writers import atomic

    real = atomic.write_plain
    failed = []

    def write_plain(path, data):
        if name_part in Path(path).name:
            failed.append(str(path))
            raise OSError(error, os.strerror(error), str(path))
        return real(path, data)

    monkeypatch.setattr(atomic, "write_plain", write_plain)
    return failed


@pytest.mark.parametrize(
    "name_part, what",
    [
        ("weights-000002.weights.h5", "backup/weights-000002.weights.h5: No space left on device"),
        ("history.csv", "history.csv: No space left on device"),
    ],
)
def test_a_full_disk_while_training_ends_in_one_line_and_the_backup_resumes(
    data, run_copy, monkeypatch, name_part, what
):
    failed = _fail_writes_to(monkeypatch, name_part)
    error = one_error(runner.invoke(app, train_args(data, run_copy)))
    assert failed and error.startswith("cifarkit: error: cannot write ") and error.endswith(what)
    state = json.loads((run_copy / "backup" / "state.json").read_text())
    assert state["epoch"] == 1  # the last good backup is still the one committed
    assert sorted(p.name for p in (run_copy / "backup").iterdir()) == ["state.json", state["weights"]]
    assert not [p for p in run_copy.rglob(".*.part*")]  # no temporary file left behind

    monkeypatch.undo()  # space again: the same command goes on from the backup
    _resumes(data, run_copy)


def test_a_full_disk_under_the_tensorboard_logs_is_one_line_not_out_of_memory(data, run_copy, monkeypatch):
    import tensorflow as tf

    real = tf.summary.create_file_writer

    class FullDisk:
        def __init__(self, logdir):
            self.writer = real(logdir)
            self.logdir = logdir

        def as_default(self):
            return self.writer.as_default()

        def flush(self):
            # What TensorFlow raises when its events file cannot be written.
            raise tf.errors.ResourceExhaustedError(
                None, None, f"{self.logdir}/events.out.tfevents; No space left on device"
            )

        def close(self):
            self.writer.close()

    monkeypatch.setattr(tf.summary, "create_file_writer", FullDisk)
    error = one_error(runner.invoke(app, train_args(data, run_copy)))
    assert (
        error == f"cifarkit: error: cannot write the TensorBoard logs in {run_copy / 'logs'}: No space left on device"
    )
    assert json.loads((run_copy / "backup" / "state.json").read_text())["epoch"] == 1


def test_backup_weights_never_touch_the_disk_through_hdf5(data, run_copy, monkeypatch):
    """HDF5 that hits a full disk cannot close its file and crashes the process when it exits
    (exit 139): the backup's HDF5 bytes are built in memory and written by plain writes."""
    import h5py

    real = h5py.File
    opened = []

    def file(name, mode="r", *args, **kwargs):
        if isinstance(name, (str, os.PathLike)) and mode != "r":
            opened.append(str(name))
        return real(name, mode, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", file)
    _resumes(data, run_copy)
    assert opened == []


def _tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir(parents=True)
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        ).returncode
        == 0
    )


def test_a_really_full_disk_ends_in_one_line_without_a_crash_and_resumes(data, tmp_path):
    """On a small tmpfs (where this machine lets a test mount one), a callback fills the disk
    right before the second backup: the process must exit 1 with one line (it used to crash in
    libhdf5 with exit 139), and resume once there is space again."""
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "8m"):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux)")
    try:
        workdir, filler = disk / "run", disk / "filler"
        script = textwrap.dedent(f"""
            import keras, sys
            import cifarkit.training.loop as loop
            from cifarkit.cli import app

            class FillTheDisk(keras.callbacks.Callback):  # runs just before the backup is written
                def on_epoch_end(self, epoch, logs=None):
                    if epoch == 1:
                        with open({str(filler)!r}, "wb") as out:
                            try:
                                while True:
                                    out.write(bytes(1 << 16))
                                    out.flush()
                            except OSError:
                                pass

            loop.tensorboard_callback = lambda log_dir, say=None: FillTheDisk()
            app(prog_name="cifarkit", args=sys.argv[1:])
        """)
        args = train_args(data, workdir, "--quiet")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        full = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300, env=env
        )
        assert full.returncode == 1, full.stderr[-3000:]
        last = full.stderr.strip().splitlines()[-1]
        assert last.startswith("cifarkit: error: cannot write ") and "No space left on device" in last, full.stderr
        assert "Traceback" not in full.stderr
        state = json.loads((workdir / "backup" / "state.json").read_text())
        assert state["epoch"] == 1

        filler.unlink()
        again = subprocess.run(
            [sys.executable, "-m", "cifarkit", *train_args(data, workdir)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert again.returncode == 0, again.stderr[-3000:]
        assert "continuing at epoch 2 of 2" in again.stderr
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


# --------------------------------------------------------------------------------------------
# a refused start writes nothing


def test_a_refused_start_writes_nothing_so_the_corrected_command_runs(data, tmp_path):
    workdir = tmp_path / "run"
    error = one_error(runner.invoke(app, train_args(data, workdir, "--batch-size", "100000")), code=2)
    assert "batch_size=100000" in error
    assert not workdir.exists()  # the folder it made for the run is gone again, lock and all

    result = runner.invoke(app, train_args(data, workdir, "--epochs", "1"))
    assert result.exit_code == 0, result.output  # not "a run with other settings"


def test_a_refused_overwrite_keeps_the_run_it_would_have_replaced(data, run_copy):
    before = snapshot(run_copy)
    one_error(runner.invoke(app, train_args(data, run_copy, "--batch-size", "100000", "--overwrite")), code=2)
    assert snapshot(run_copy) == before


# --------------------------------------------------------------------------------------------
# leftovers of killed saves


def test_one_temporary_name_scheme_and_the_sweep_finds_every_kind(tmp_path):
    from cifarkit.writers.atomic import is_partial, partial_path, remove_partials

    keras_tmp = partial_path(tmp_path / "last.keras", ".keras")
    assert keras_tmp.name == f".last.keras.{os.getpid()}.part.keras" and is_partial(keras_tmp.name)
    leftovers = [
        keras_tmp.name,
        ".best.123.part.keras",
        ".weights-000002.weights.h5.77.part",
        ".history.csv.5.part",
        "logs/.x.png.9.part",
    ]
    kept = [".cifarkit.lock", "best.keras", "notes.part", ".hidden", "a.part.keras", ".x.part"]
    for name in leftovers + kept:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert remove_partials(tmp_path) == len(leftovers)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(kept)


def test_a_resume_sweeps_away_what_killed_saves_left(data, run_copy):
    pid = 4_000_000  # no such process
    leftovers = [
        f".last.keras.{pid}.part.keras",
        f".best.{pid}.part.keras",
        f"backup/.weights-000002.weights.h5.{pid}.part",
        f".history.csv.{pid}.part",
    ]
    for name in leftovers:
        (run_copy / name).write_bytes(b"half a file")
    _resumes(data, run_copy)
    assert not [name for name in leftovers if (run_copy / name).exists()]


def test_model_saves_go_through_a_name_the_sweep_removes(tmp_path, monkeypatch):
    import keras

    from cifarkit.training.rundir import save_model_atomic
    from cifarkit.writers.atomic import is_partial

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    saved_to = []
    real_save = keras.Model.save
    monkeypatch.setattr(
        keras.Model, "save", lambda self, path, *a, **k: (saved_to.append(Path(path)), real_save(self, path, *a, **k))
    )
    save_model_atomic(model, tmp_path / "last.keras")
    assert saved_to[0].parent == tmp_path and is_partial(saved_to[0].name)  # what a kill would leave
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.keras"]


# --------------------------------------------------------------------------------------------
# one training per run folder


def test_a_second_training_on_a_held_run_folder_is_refused_and_writes_nothing(data, tmp_path):
    from cifarkit.writers import folder_lock

    workdir = tmp_path / "run"
    with folder_lock.hold(workdir, "a training run"):
        holder = (workdir / folder_lock.LOCK_NAME).read_text()
        error = one_error(runner.invoke(app, train_args(data, workdir)))
        assert f"{workdir} is in use by pid {os.getpid()}" in error and "a training run" in error
        assert sorted(p.name for p in workdir.rglob("*")) == [folder_lock.LOCK_NAME]
        assert (workdir / folder_lock.LOCK_NAME).read_text() == holder


def test_the_lock_file_neither_blocks_a_resume_nor_goes_with_overwrite(data, run_copy):
    from cifarkit.writers import folder_lock

    lock = run_copy / folder_lock.LOCK_NAME
    assert lock.is_file()  # the crashed run held it; the kernel released it with the process's descriptor
    result = runner.invoke(app, train_args(data, run_copy, "--lr", "0.01", "--overwrite"))
    assert result.exit_code == 0, result.output
    assert lock.is_file()
    assert json.loads((run_copy / "config.json").read_text())["lr"] == 0.01


def test_a_damaged_report_of_a_finished_run_is_one_line(data, run_copy):
    _resumes(data, run_copy)
    (run_copy / "report.json").write_text("[1]")
    error = one_error(runner.invoke(app, train_args(data, run_copy)))
    assert "report.json: damaged run report" in error and "--overwrite" in error


def test_a_resume_reads_the_statistics_its_run_recorded(data, run_copy, monkeypatch):
    import cifarkit.readers.stats as stats_module

    recorded = (run_copy / "stats.json").read_bytes()

    def another_pass(*args, **kwargs):
        raise AssertionError("the resumed run made another pass over its data for its statistics")

    monkeypatch.setattr(stats_module, "compute_source_stats", another_pass)
    _resumes(data, run_copy)
    assert (run_copy / "stats.json").read_bytes() == recorded


def test_a_resuming_worker_reads_the_statistics_the_chief_recorded(run_copy, monkeypatch):
    """A worker other than the chief writes to a scratch folder, but reads the run folder's stats."""
    import dataclasses

    import cifarkit.readers.stats as stats_module
    import cifarkit.runtime.strategy as strategy_module
    import cifarkit.training as trainer

    make_strategy = strategy_module.make_strategy
    worker = lambda name="auto": dataclasses.replace(make_strategy(name), is_chief=False, task="worker:1")  # noqa: E731
    monkeypatch.setattr(strategy_module, "make_strategy", worker)

    def another_pass(*args, **kwargs):
        raise AssertionError("the resuming worker made another pass over its data for its statistics")

    monkeypatch.setattr(stats_module, "compute_source_stats", another_pass)
    shutil.copytree(run_copy / "backup", run_copy / "backup-worker-1")  # this worker's own backup
    before = snapshot(run_copy)
    config = json.loads((run_copy / "config.json").read_text())
    result = trainer.train(trainer.TrainConfig(**{**config, "workdir": str(run_copy)}), quiet=True)
    assert result.resumed_from == 1
    after = snapshot(run_copy)
    assert {k: v for k, v in after.items() if not k.startswith("backup-worker-1/")} == {
        k: v for k, v in before.items() if not k.startswith("backup-worker-1/")
    }  # the chief's files are the chief's to write


@pytest.mark.parametrize("damage", ["unreadable", "other count"])
def test_a_resume_computes_statistics_it_cannot_use_again(data, run_copy, monkeypatch, damage):
    import cifarkit.readers.stats as stats_module

    stats_file = run_copy / "stats.json"
    recorded = stats_file.read_bytes()
    if damage == "unreadable":
        stats_file.write_text("{not json")
    else:
        stats_file.write_text(json.dumps({**json.loads(recorded), "images": 7}))
    passes = []
    compute = stats_module.compute_source_stats
    monkeypatch.setattr(stats_module, "compute_source_stats", lambda *a, **k: passes.append(1) or compute(*a, **k))
    _resumes(data, run_copy)
    assert passes == [1]
    assert stats_file.read_bytes() == recorded  # the same pass over the same data
