"""``cifarkit export`` run again on its own finished export: it says the export is complete and
writes nothing (it had said "resumed" and reported the images it skipped as a rate of tens of
thousands a second); a file removed since is written again."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.writers.folder_lock import LOCK_NAME

runner = CliRunner()


def export(source: Path, out: Path, fmt: str, *more: str):
    args = ["export", "--source", str(source), "--format", fmt, "--out", str(out), "--workers", "1", "-q", *more]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file's modification time and bytes, but the lock's (each command holds it anew)."""
    files = [p for p in folder.rglob("*") if p.is_file() and p.name != LOCK_NAME]
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes()) for p in files}


@pytest.mark.parametrize("fmt", ["png", "tfrecord"])
def test_a_finished_export_run_again_is_complete_and_untouched(cifar10_tar, tmp_path, fmt):
    out = tmp_path / "out"
    first = export(cifar10_tar.path, out, fmt)
    assert first.stdout.startswith("Exported 40 images")
    before = snapshot(out)

    again = export(cifar10_tar.path, out, fmt)
    assert again.stdout == f"{out} is already complete: 40 images (train 30, test 10); nothing to do\n"
    assert "resumed" not in again.output and "images/s" not in again.output
    assert snapshot(out) == before  # not one file rewritten, the state and metadata included


def test_a_shard_removed_from_a_finished_export_is_written_again(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    export(cifar10_tar.path, out, "tfrecord", "--shards", "2")
    shard = next(out.glob("*-test.tfrecord-00001-of-00002"))
    written = shard.read_bytes()
    shard.unlink()

    again = export(cifar10_tar.path, out, "tfrecord", "--shards", "2")
    assert again.stdout.startswith("Exported 40 images")
    assert shard.read_bytes() == written


def test_a_finished_export_asked_for_with_other_options_is_still_refused(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    export(cifar10_tar.path, out, "tfrecord", "--shards", "2")
    result = runner.invoke(app, ["export", "--source", str(cifar10_tar.path), "-f", "tfrecord", "--out", str(out)])
    assert result.exit_code == 1 and "holds an export with other options" in result.stderr
