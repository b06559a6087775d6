"""What every export shares, whatever its format: the same bytes from any number of workers, the
refusals that keep an output folder consistent, clear errors. Each format's own round trip is in
tests/formats/."""

from __future__ import annotations

import csv
import errno
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from cifarkit.errors import OutputError, UsageError
from cifarkit.export import ExportOptions, export_dataset
from cifarkit.sources import open_source

import synth


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


