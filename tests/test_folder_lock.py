"""cifarkit.writers.folder_lock: a command that fails in a folder it made leaves no folder holding
its lock alone; the lock stays everywhere else (a finished command, a folder that was there, a
folder that holds what the command wrote)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.errors import UsageError
from cifarkit.writers.folder_lock import LOCK_NAME, hold


def test_a_failed_command_removes_the_folders_it_made_for_nothing(tmp_path):
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(UsageError), hold(out, "an export"):
        assert (out / LOCK_NAME).is_file()
        raise UsageError("refused")
    assert sorted(tmp_path.iterdir()) == []  # all three folders it made are gone


def test_a_failed_command_keeps_a_folder_that_was_there_and_what_it_wrote(tmp_path):
    there = tmp_path / "there"
    there.mkdir()
    with pytest.raises(UsageError), hold(there, "an export"):
        raise UsageError("refused")
    assert [p.name for p in there.iterdir()] == [LOCK_NAME]

    made = tmp_path / "made"
    with pytest.raises(UsageError), hold(made, "an export"):
        (made / "half.png").write_bytes(b"written before it failed")
        raise UsageError("failed")
    assert sorted(p.name for p in made.iterdir()) == [LOCK_NAME, "half.png"]


def test_a_finished_command_keeps_its_lock_file_empty(tmp_path):
    out = tmp_path / "out"
    with hold(out, "an export"):
        assert "an export" in (out / LOCK_NAME).read_text()
    assert (out / LOCK_NAME).read_text() == ""


def test_a_refused_training_leaves_no_run_folder(tmp_path):
    from synth import make_cifar10_python

    data = make_cifar10_python(tmp_path / "data", per_batch=2, test=2).path
    workdir = tmp_path / "runs" / "lenet"
    args = ["train", "lenet5", "--data", str(data), "--workdir", str(workdir), "--batch-size", "1000", "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "batch_size=1000" in result.stderr
    assert not (tmp_path / "runs").exists()
