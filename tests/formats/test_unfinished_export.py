"""Leftovers never pass for data: an export that did not finish, in any split and any format, is
reported by every reader as unfinished, with the command that finishes it; that command, run as
given, ends with the export an uninterrupted run writes."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cifarkit
from cifarkit import data
from cifarkit.cli import app
from cifarkit.errors import SourceError
from cifarkit.formats import export as export_module
from cifarkit.formats import image_tree, tfrecord
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source

runner = CliRunner()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _interrupt_png_in_test(monkeypatch):
    """The image-tree export dies in its second split: train/ finished, .partial-test/ half-way."""
    real = image_tree.write_images

    def dies(images, folder, names, codec, quality):
        if folder.endswith(".partial-test"):
            real(images[:3], folder, names[:3], codec, quality)
            raise KeyboardInterrupt
        return real(images, folder, names, codec, quality)

    monkeypatch.setattr(image_tree, "write_images", dies)


def _interrupt_after_one_shard(monkeypatch):
    real, written = tfrecord.write_shard, []

    def dies(*args):
        if written:
            raise KeyboardInterrupt
        written.append(args[0])
        return real(*args)

    monkeypatch.setattr(tfrecord, "write_shard", dies)


def _interrupt_before_cifarkit_info(monkeypatch):
    """Killed after TFDS's metadata, before cifarkit_info.json: a TFDS folder in all but name."""

    def dies(path, info):
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "write_json", dies)


CASES = {
    "png, in its second split": ("png", {}, _interrupt_png_in_test),
    "tfrecord, after one shard": ("tfrecord", {"shards": 2}, _interrupt_after_one_shard),
    "tfrecord, before cifarkit_info.json": ("tfrecord", {}, _interrupt_before_cifarkit_info),
    "tfrecord --tfds-layout": ("tfrecord", {"tfds_layout": True, "shards": 2}, _interrupt_after_one_shard),
}


@pytest.fixture(params=list(CASES))
def unfinished(request, cifar10_tar, tmp_path, monkeypatch) -> tuple[Path, str, dict]:
    fmt, more, interrupt = CASES[request.param]
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        interrupt(patch)
        with pytest.raises(KeyboardInterrupt):
            export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format=fmt, workers=1, quiet=True, **more))
    return out, fmt, more


def _message_of(call) -> str:
    with pytest.raises(SourceError, match="an unfinished export") as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_every_library_reader_refuses_an_unfinished_export(unfinished, cifar10_tar):
    out, fmt, more = unfinished
    for read in (lambda: open_source(out), lambda: data.open_data(out), lambda: cifarkit.load(out, "train")):
        message = _message_of(read)
        assert f"re-run `cifarkit export --source {cifar10_tar.path} --format {fmt} --out {out}" in message


def test_every_command_refuses_an_unfinished_export_in_one_line(unfinished, tmp_path):
    out, _, _ = unfinished
    for command in (
        ["info", str(out)],
        ["stats", "--data", str(out), "--out", str(tmp_path / "s.json"), "--quiet"],
        ["export", "--source", str(out), "--format", "jpg", "--out", str(tmp_path / "again"), "--quiet"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "an unfinished export; re-run `cifarkit export" in lines[0], result.stderr
    assert not (tmp_path / "again").exists() and not (tmp_path / "s.json").exists()


def test_the_command_an_unfinished_export_names_finishes_it(unfinished, cifar10_tar, tmp_path):
    out, fmt, more = unfinished
    command = re.search(r"re-run `([^`]*)`", _message_of(lambda: data.open_data(out))).group(1)
    words = shlex.split(command)
    assert words[:2] == ["cifarkit", "export"]
    result = runner.invoke(app, [*words[1:], "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh"
    export_dataset(open_source(cifar10_tar.path), fresh, ExportOptions(format=fmt, workers=1, quiet=True, **more))
    assert _tree(out) == _tree(fresh)
    assert data.open_data(out).counts == {"train": 30, "test": 10}


def test_an_export_of_chosen_options_is_finished_by_a_command_with_them(cifar10_tar, tmp_path, monkeypatch):
    out = tmp_path / "out"
    options = ExportOptions(format="tfrecord", splits=("test",), shards=3, encoding="raw", workers=1, quiet=True)
    with monkeypatch.context() as patch:
        _interrupt_after_one_shard(patch)
        with pytest.raises(KeyboardInterrupt):
            export_dataset(open_source(cifar10_tar.path), out, options)
    message = _message_of(lambda: open_source(out))
    assert "--split test --shards 3 --encoding raw` to finish it" in message
