"""What every export shares, whatever its format: the same bytes from any number of workers, the
refusals that keep an output folder consistent, clear errors. Each format's own round trip is in
tests/formats/."""

from __future__ import annotations

import csv
import errno
import os
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import synth

from cifarkit.errors import OutputError, UsageError
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(out: Path) -> list[dict[str, str]]:
    with open(out / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_workers_do_not_change_a_single_byte(cifar10_tar, tmp_path):
    dataset = open_source(cifar10_tar.path)
    export_dataset(dataset, tmp_path / "one", ExportOptions(format="jpg", workers=1))
    export_dataset(dataset, tmp_path / "two", ExportOptions(format="jpg", workers=2))
    assert _tree_bytes(tmp_path / "one") == _tree_bytes(tmp_path / "two")


def test_a_different_export_into_the_same_folder_is_refused_until_overwrite(cifar10_tar, tmp_path):
    dataset = open_source(cifar10_tar.path)
    out = tmp_path / "out"
    export_dataset(dataset, out, ExportOptions(format="jpg", workers=1))
    before = _tree_bytes(out)
    with pytest.raises(OutputError, match="--overwrite"):
        export_dataset(dataset, out, ExportOptions(format="png", workers=1))
    assert _tree_bytes(out) == before  # nothing lost
    export_dataset(dataset, out, ExportOptions(format="png", workers=1, overwrite=True))
    assert not list(out.rglob("*.jpg")) and len(list(out.rglob("*.png"))) == 40


def test_a_folder_with_foreign_files_is_refused(cifar10_tar, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="did not write"):
        export_dataset(open_source(cifar10_tar.path), tmp_path, ExportOptions(format="png", workers=1))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_full_disk_is_a_clear_error_and_leaves_no_file_under_a_final_name(cifar10_tar, tmp_path, monkeypatch):
    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd, data):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", failing_write)
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="No space left on device"):
        export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1))
    monkeypatch.undo()
    assert not list(out.rglob("*.part"))
    for path in out.rglob("*.png"):  # every file under a final name is a complete PNG
        iio.imread(path)


def test_unwritable_output_is_a_clear_error(cifar10_tar, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="a-file"):
        export_dataset(open_source(cifar10_tar.path), blocker / "out", ExportOptions(format="png", workers=1))


def test_bad_options_name_the_value(cifar10_tar):
    with pytest.raises(UsageError, match="quality=0"):
        ExportOptions(quality=0)
    with pytest.raises(UsageError, match="bmp"):
        ExportOptions(format="bmp")
    with pytest.raises(UsageError, match="validation"):
        export_dataset(open_source(cifar10_tar.path), Path("unused"), ExportOptions(splits=("validation",)))


@pytest.mark.parametrize(
    "asked, message",
    [
        (dict(format="png", quality=80), "--quality is for --format jpg or tfrecord…; --format png does not use it"),
        (dict(format="jpg", encoding="raw"), "--encoding is for --format tfrecord…; --format jpg does not use it"),
        (dict(format="png", shards=3), "--shards is for --format tfrecord…;"),
        (dict(format="jpeg", tfds_layout=True), "--tfds-layout is for --format tfrecord…; --format jpg does not"),
        (dict(format="tfrecord", layout="coarse/fine"), "--layout is for --format jpg or png; --format tfrecord"),
        (dict(format="tfrecord", quality=80), "--quality is for JPEG records (--encoding jpeg); --encoding auto"),
        (dict(format="jpg", layout="flat"), "unknown layout 'flat'"),
        (dict(format="tfrecord", encoding="webp"), "unknown encoding 'webp'"),
    ],
)
def test_an_option_the_format_does_not_use_is_refused_unless_it_has_its_default_value(asked, message):
    # "…": the other formats that own the option, in the order they are registered
    with pytest.raises(UsageError, match=re.escape(message).replace("…", "[^;]*")):
        ExportOptions(workers=1, **asked)
    # The default value of another format's option asks for nothing: the adapter takes the options.
    options = ExportOptions(format=asked["format"], workers=1, quality=95, encoding="auto", layout="class")
    assert options.adapter.name == options.format == ("jpg" if asked["format"] == "jpeg" else asked["format"])


def test_the_cli_refuses_an_option_the_format_ignores_in_one_line_before_reading(cifar10_tar, tmp_path):
    from typer.testing import CliRunner

    from cifarkit.cli import app

    out = tmp_path / "out"
    for extra in (["--format", "png", "--quality", "80"], ["--format", "jpg", "--encoding", "raw"]):
        result = CliRunner().invoke(app, ["export", "--source", str(cifar10_tar.path), "--out", str(out), *extra])
        assert result.exit_code == 2 and "does not use it" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()
    # jpeg names the jpg format: the same files, the same folder name.
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--source",
            str(cifar10_tar.path),
            "--out",
            str(out),
            "--format",
            "jpeg",
            "--split",
            "test",
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in (out / "test").rglob("*.*"))[0] == ".jpg" and "as jpg" in result.stdout


def test_image_folder_source_exports_too(tmp_path):
    data = synth.make_image_folder(tmp_path / "pets")
    out = tmp_path / "out"
    export_dataset(open_source(data.path), out, ExportOptions(format="png", workers=2))
    rows = _manifest(out)
    assert {r["label_name"] for r in rows} == {"cat", "dog"}
    for row in rows:
        image = iio.imread(out / row["path"])
        truth = data.splits[row["split"]].images[int(row["index"])]
        np.testing.assert_array_equal(image, truth)
