"""``--overwrite`` removes only what the earlier export wrote (known from its state), never a
file of the user's own and never anything outside OUT; what it cannot vouch for makes it refuse,
in one line naming it, before it removes anything."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.errors import OutputError
from cifarkit.formats import image_tree
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source
from cifarkit.writers import folder_lock

runner = CliRunner()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _export(source: Path, out: Path, fmt: str, *more: str):
    return runner.invoke(
        app, ["export", "--source", str(source), "--format", fmt, "--out", str(out), "--workers", "1", "--quiet", *more]
    )


def _one_line(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: "), result.stderr
    assert all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "mine, named",
    [
        ("train/cat/mine.txt", "train/cat/mine.txt"),
        ("train/mine.png", "train/mine.png"),
        ("notes.txt", "notes.txt"),
        ("test/cat/00000.jpg", "test/cat/00000.jpg"),
        ("train/cat/99999.png", "train/cat/99999.png"),
        ("photos/a.png", "out/photos:"),  # a folder of the user's is named as a whole
    ],
)
def test_overwrite_refuses_a_folder_holding_a_file_of_the_users_own(cifar10_tar, tmp_path, mine, named):
    out = tmp_path / "out"
    assert _export(cifar10_tar.path, out, "png").exit_code == 0
    (out / mine).parent.mkdir(parents=True, exist_ok=True)
    (out / mine).write_text("mine")
    before = _tree(out)
    _one_line(
        _export(cifar10_tar.path, out, "jpg", "--overwrite"),
        named,
        "not written by the earlier export",
        "nothing was removed",
    )
    assert _tree(out) == before  # the export and the user's file alike


def test_overwrite_without_a_state_removes_nothing(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    (out / "train" / "cat").mkdir(parents=True)
    (out / "train" / "cat" / "00000.png").write_bytes(b"a photo of mine")
    (out / "labels.txt").write_text("mine\n")
    _one_line(_export(cifar10_tar.path, out, "png", "--overwrite"), "out/labels.txt", "not written by cifarkit")
    assert (out / "train" / "cat" / "00000.png").read_bytes() == b"a photo of mine"
    result = _export(cifar10_tar.path, out, "png")
    _one_line(result, "did not write", "(labels.txt)", "choose another --out")


def test_overwrite_never_follows_a_link_out_of_out(cifar10_tar, tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    assert _export(cifar10_tar.path, out, "png").exit_code == 0
    shutil.move(out / "train", elsewhere)
    (out / "train").symlink_to(elsewhere, target_is_directory=True)
    before = _tree(elsewhere)
    _one_line(_export(cifar10_tar.path, out, "jpg", "--overwrite"), "train", "not written")
    assert _tree(elsewhere) == before and (out / "train").is_symlink()


def test_a_crafted_state_naming_a_split_outside_out_removes_nothing(cifar10_tar, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "sentinel").write_text("keep")
    out = tmp_path / "a" / "out"
    assert _export(cifar10_tar.path, out, "png").exit_code == 0
    state = json.loads((out / ".cifarkit-export.json").read_text())
    state["counts"]["../../victim"] = 1
    (out / ".cifarkit-export.json").write_text(json.dumps(state))
    before = _tree(out)
    _one_line(
        _export(cifar10_tar.path, out, "jpg", "--overwrite"),
        ".cifarkit-export.json",
        "split name",
        "choose another --out",
    )
    assert (victim / "sentinel").read_text() == "keep" and _tree(out) == before


@pytest.mark.parametrize("first, second", [("png", "jpg"), ("tfrecord", "png"), ("jpg", "tfrecord")])
def test_overwrite_replaces_an_export_of_any_format_completely(cifar10_tar, tmp_path, first, second):
    out = tmp_path / "out"
    assert _export(cifar10_tar.path, out, first, *(("--shards", "3") if first == "tfrecord" else ())).exit_code == 0
    result = _export(cifar10_tar.path, out, second, "--overwrite")
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh"
    assert _export(cifar10_tar.path, fresh, second).exit_code == 0
    assert _tree(out) == _tree(fresh)  # not a file of the first export left


def test_overwrite_clears_an_export_interrupted_in_its_second_split(cifar10_tar, tmp_path, monkeypatch):
    dataset, out = open_source(cifar10_tar.path), tmp_path / "out"
    real = image_tree.write_images

    def dies_in_test(images, folder, names, codec, quality):
        if folder.endswith(".partial-test"):
            real(images[:2], folder, names[:2], codec, quality)
            raise KeyboardInterrupt
        return real(images, folder, names, codec, quality)

    monkeypatch.setattr(image_tree, "write_images", dies_in_test)
    with pytest.raises(KeyboardInterrupt):
        export_dataset(dataset, out, ExportOptions(format="png", workers=1, quiet=True))
    monkeypatch.setattr(image_tree, "write_images", real)
    assert (out / "train").is_dir() and len(list((out / ".partial-test").rglob("*.png"))) == 2
    export_dataset(dataset, out, ExportOptions(format="jpg", workers=1, quiet=True, overwrite=True))
    assert not list(out.rglob("*.png")) and not (out / ".partial-test").exists()
    assert len(list(out.rglob("*.jpg"))) == 40


def test_an_unreadable_state_is_refused_not_guessed_at(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    assert _export(cifar10_tar.path, out, "png").exit_code == 0
    (out / ".cifarkit-export.json").write_text("[" * 50_000 + "]" * 50_000)
    before = _tree(out)
    for more in ([], ["--overwrite"]):
        _one_line(_export(cifar10_tar.path, out, "jpg", *more), ".cifarkit-export.json", "nested")
    assert _tree(out) == before


def test_a_state_written_before_it_recorded_the_command_still_resumes(cifar10_tar, tmp_path):
    dataset, out = open_source(cifar10_tar.path), tmp_path / "out"
    export_dataset(dataset, out, ExportOptions(format="tfrecord", workers=1, quiet=True))
    state = json.loads((out / ".cifarkit-export.json").read_text())
    assert state.pop("resume") == {"source": str(cifar10_tar.path)}
    (out / ".cifarkit-export.json").write_text(json.dumps(state, sort_keys=True) + "\n")
    summary = export_dataset(dataset, out, ExportOptions(format="tfrecord", workers=1, quiet=True))
    assert summary.skipped == 40  # resumed, not refused as another export
    assert json.loads((out / ".cifarkit-export.json").read_text())["resume"] == {"source": str(cifar10_tar.path)}


def test_the_lock_of_a_folder_is_neither_foreign_nor_removed(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    assert _export(cifar10_tar.path, out, "png").exit_code == 0
    assert _export(cifar10_tar.path, out, "jpg", "--overwrite").exit_code == 0
    assert (out / folder_lock.LOCK_NAME).is_file()


def test_overwrite_of_an_empty_folder_with_only_a_lock_writes_the_export(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / folder_lock.LOCK_NAME).write_text("")
    with pytest.raises(OutputError, match="did not write"):  # the lock alone is not a foreign file
        (out / "x").write_text("")
        export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1, quiet=True))
    (out / "x").unlink()
    export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1, quiet=True))
    assert len(list(out.rglob("*.png"))) == 40
