"""JPEG/PNG tree exports: layout, fidelity, staged splits that resume byte-identical, reading back."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import synth
from test_export import _manifest, _tree_bytes

from cifarkit.errors import OutputError
from cifarkit.formats import image_tree
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source


@pytest.mark.parametrize("workers", [1, 2])
def test_png_tree_is_lossless_and_laid_out_by_split_and_class(cifar10_tar, tmp_path, workers):
    out = tmp_path / "png"
    summary = export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=workers))
    assert summary.counts == {"train": 30, "test": 10}
    rows = _manifest(out)
    assert len(rows) == 40
    for row in rows:
        truth = cifar10_tar.splits[row["split"]]
        index = int(row["index"])
        assert row["path"] == f"{row['split']}/{row['label_name']}/{index:05d}.png"
        np.testing.assert_array_equal(iio.imread(out / row["path"]), truth.images[index])
        assert int(row["label"]) == truth.labels[index]
    for split, truth in cifar10_tar.splits.items():
        for label, name in enumerate(cifar10_tar.class_names):
            files = list((out / split / name).glob("*.png")) if (out / split / name).exists() else []
            assert len(files) == int((truth.labels == label).sum())
    assert (out / "labels.txt").read_text().splitlines() == list(cifar10_tar.class_names)
    info = json.loads((out / "cifarkit_info.json").read_text())
    assert info["splits"]["train"]["count"] == 30 and info["class_names"] == list(cifar10_tar.class_names)


def test_jpeg_tree_is_close_to_the_source(tmp_path):
    # Smooth images (gradients), as real photos are: JPEG q95 keeps them within a few levels.
    # Stated tolerance: mean absolute error <= 2 levels, max <= 24.
    dataset = open_source(synth.make_cifar10_python(tmp_path / "src", per_batch=4, test=4).path)
    images = dataset.take("train", 0, 20).images.copy()
    yy, xx = np.mgrid[0:32, 0:32]
    for i in range(len(images)):  # replace noise with smooth gradients so the tolerance means something
        images[i] = np.stack([yy * 7 + i, xx * 6 + 2 * i, (xx + yy) * 4], -1)
    dataset.batches["train"] = [dataset.take("train", 0, 20)]
    dataset.batches["train"][0].images = images
    out = tmp_path / "jpg"
    export_dataset(dataset, out, ExportOptions(format="jpg", quality=95, splits=("train",), workers=1))
    for row in _manifest(out):
        decoded = iio.imread(out / row["path"]).astype(int)
        diff = np.abs(decoded - images[int(row["index"])].astype(int))
        assert diff.mean() <= 2.0 and diff.max() <= 24, (row["path"], diff.mean(), diff.max())


def test_rerun_after_interruption_completes_and_matches(cifar10_tar, tmp_path, monkeypatch):
    dataset = open_source(cifar10_tar.path)
    export_dataset(dataset, tmp_path / "ref", ExportOptions(format="png", workers=1))
    monkeypatch.setattr(image_tree, "IMAGES_PER_TASK", 7)  # train: chunks 0, 7, 14, 21, 28
    real_write_images = image_tree.write_images
    chunks_written = []

    def interrupted_after_two_chunks(images, folder, names, fmt, quality):
        if len(chunks_written) == 2:  # the third chunk dies half-way through its first file
            Path(folder, names[0]).write_bytes(b"\x89PNG half")
            raise KeyboardInterrupt
        chunks_written.append(names[0])
        return real_write_images(images, folder, names, fmt, quality)

    monkeypatch.setattr(image_tree, "write_images", interrupted_after_two_chunks)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export_dataset(dataset, out, ExportOptions(format="png", workers=1))
    monkeypatch.setattr(image_tree, "write_images", real_write_images)
    # Nothing under a final name yet: the split is still in its staging folder, with the
    # half-written file of the chunk that was cut short.
    assert not (out / "train").exists() and not (out / "manifest.csv").exists()
    assert len(list((out / ".partial-train").rglob("*.png"))) == 15

    summary = export_dataset(dataset, out, ExportOptions(format="png", workers=2))
    assert summary.skipped == 14  # the two chunks in the journal were not written again
    assert _tree_bytes(out) == _tree_bytes(tmp_path / "ref")
    assert not list(out.glob(".partial-*"))


def test_a_finished_split_is_not_written_again(cifar10_tar, tmp_path, monkeypatch):
    dataset = open_source(cifar10_tar.path)
    out = tmp_path / "out"
    export_dataset(dataset, out, ExportOptions(format="jpg", workers=1))
    (out / "manifest.csv").unlink()  # killed after the splits, before the metadata
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")}
    monkeypatch.setattr(image_tree, "write_images", None)  # any call would fail
    summary = export_dataset(dataset, out, ExportOptions(format="jpg", workers=1))
    assert summary.skipped == 40 and (out / "manifest.csv").is_file()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.jpg")} == before


def test_exported_tree_reads_back_in_the_original_order(cifar10_tar, tmp_path):
    out = tmp_path / "png"
    export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1))
    again = open_source(out)
    assert again.count("train") == 30
    np.testing.assert_array_equal(np.stack(list(again.take("train", 0, 30).images)), cifar10_tar.splits["train"].images)
    np.testing.assert_array_equal(again.take("train", 0, 30).labels, cifar10_tar.splits["train"].labels)


def test_a_resume_with_another_png_compressor_is_refused(cifar10_tar, tmp_path, monkeypatch):
    # Two deflate implementations (or zlib versions) may write different bytes for the same
    # pixels: mixing them would break the promise that a resumed export is byte-identical.
    from cifarkit.formats.codecs import png

    dataset, out = open_source(cifar10_tar.path), tmp_path / "out"
    export_dataset(dataset, out, ExportOptions(format="png", workers=1))
    state = json.loads((out / ".cifarkit-export.json").read_text())
    assert state["png_deflate"] == png.COMPRESSOR and state["layout"] == "staged splits"
    monkeypatch.setattr(png, "COMPRESSOR", "zlib level 6")
    with pytest.raises(OutputError, match="other options"):
        export_dataset(dataset, out, ExportOptions(format="png", workers=1))
