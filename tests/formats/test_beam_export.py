"""``cifarkit export --runner beam``: Apache Beam's DirectRunner, in worker processes, writes the
bytes the local exporter writes (every file of OUT, the metadata and the state included), which
cifarkit and TFDS read back; the checks, ``--skip-bad`` and resuming behave as locally; a source
that changed under the workers, a bad flag and a missing Beam are each one line.

The pipeline tests need apache_beam (the test and beam extras install it) and are skipped without
it; the missing-Beam test blocks its import and runs everywhere."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import synth
from PIL import Image
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.errors import SourceError, UsageError
from cifarkit.formats import ADAPTERS, FORMATS
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source

runner = CliRunner()
needs_beam = pytest.mark.skipif(
    importlib.util.find_spec("apache_beam") is None,
    reason="Apache Beam is not installed (pip install 'cifarkit[beam]')",
)
# Beam's DirectRunner in worker processes, as a cluster runs a pipeline (each its own Python).
MULTI = "--runner=DirectRunner --direct_num_workers=2 --direct_running_mode=multi_processing"
IN_PROCESS = "--runner=DirectRunner --direct_running_mode=in_memory"


def _files(root: Path) -> dict[str, bytes]:
    """Every file below ``root`` (hidden ones too: the export state) by its relative path."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _error_line(result, code: int = 1) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code, result.output
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: "), result.output
    return lines[0]


def _export(source: Path, out: Path, *args: str):
    result = runner.invoke(app, ["export", "-s", str(source), "-o", str(out), "-q", *args])
    assert result.exit_code == 0, result.output
    return result


def _beam(beam_options: str = IN_PROCESS):
    from cifarkit.formats.beam_export import BeamRunner

    return BeamRunner(beam_options)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> synth.SynthDataset:
    """A small photo tree of JPEGs of two sizes: 2 classes x 5 train, x 2 test."""
    root = tmp_path_factory.mktemp("beam") / "photos"
    return synth.make_image_folder(root, ext="jpg", per_class={"train": 5, "test": 2}, sizes=((40, 30), (21, 33)))


def _check_tfds_reads(out: Path, truth: synth.SynthDataset, photos: bool = False) -> None:
    """TFDS reads every image and label; a photo is its JPEG file's own bytes, decoded as TensorFlow
    decodes that file (Pillow's decode may differ in the last bit), an array its pixels."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(out))
    for split, expected in truth.splits.items():
        assert builder.info.splits[split].num_examples == len(expected.labels)
        records = {r["id"].decode(): r for r in tfds.as_numpy(builder.as_dataset(split))}
        for i, label in enumerate(expected.labels):
            record = records[f"{split}_{i:05d}"]
            assert record["label"] == label
            if photos:
                source = (truth.path / split / expected.filenames[i]).read_bytes()
                np.testing.assert_array_equal(record["image"], tf.io.decode_jpeg(source).numpy())
            else:
                np.testing.assert_array_equal(record["image"], expected.images[i])


@needs_beam
def test_a_cifar10_archive_in_beam_worker_processes_is_the_local_export_byte_for_byte(cifar10_tar, tmp_path):
    local, beam = tmp_path / "local", tmp_path / "beam"
    _export(cifar10_tar.path, local, "-f", "tfrecord", "--shards", "3", "--workers", "2")
    _export(cifar10_tar.path, beam, "-f", "tfrecord", "--shards", "3", "--runner", "beam", "--beam-options", MULTI)
    written = _files(beam)
    assert written == _files(local)
    assert {"cifarkit_info.json", "dataset_info.json", "features.json", "label.labels.txt", "manifest.csv"} <= set(
        written
    )
    assert sum(".tfrecord-" in name for name in written) == 6  # 3 shards a split, each its own work item
    info = runner.invoke(app, ["info", str(beam)])
    assert info.exit_code == 0 and "cifarkit TFRecord export" in info.output, info.output
    assert info.output.splitlines()[-1].split() == ["total", "30", "10"]
    _check_tfds_reads(beam, cifar10_tar)


@needs_beam
def test_a_photo_tree_in_beam_worker_processes_is_the_local_export_byte_for_byte(photos, tmp_path):
    local, beam = tmp_path / "local", tmp_path / "beam"
    _export(photos.path, local, "-f", "tfrecord", "--shards", "2")
    _export(photos.path, beam, "-f", "tfrecord", "--shards", "2", "--runner", "beam", "--beam-options", MULTI)
    assert _files(beam) == _files(local)
    info = runner.invoke(app, ["info", str(beam)])
    assert info.exit_code == 0 and info.output.splitlines()[-1].split() == ["total", "10", "4"], info.output
    _check_tfds_reads(beam, photos, photos=True)


@needs_beam
@pytest.mark.parametrize("name", [f for f in FORMATS if f != "tfrecord"])
def test_every_format_written_by_beam_is_the_local_export_byte_for_byte(photos, tmp_path, name):
    """A format of piece files (a piece per work item) and the image trees (a split per item)."""
    shards = {"shards": 2} if "shards" in ADAPTERS[name].options else {}
    local, beam = tmp_path / "local", tmp_path / "beam"
    export_dataset(open_source(photos.path), local, ExportOptions(format=name, workers=1, quiet=True, **shards))
    options = ExportOptions(format=name, workers=1, quiet=True, runner=_beam(), **shards)
    summary = export_dataset(open_source(photos.path), beam, options)
    assert summary.counts == {"train": 10, "test": 4} and summary.skipped == 0
    assert _files(beam) == _files(local)


@needs_beam
def test_beam_resumes_an_interrupted_export_writing_only_the_missing_shard(cifar10_tar, tmp_path):
    local, resumed = tmp_path / "local", tmp_path / "resumed"
    for out in (local, resumed):
        export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="tfrecord", shards=3, workers=1))
    missing = resumed / "cifar10-train.tfrecord-00001-of-00003"
    missing.unlink()
    (resumed / "cifarkit_info.json").unlink()  # as a kill before the end leaves it
    kept = {p.name: p.stat().st_mtime_ns for p in resumed.glob("*.tfrecord-*")}
    options = ExportOptions(format="tfrecord", shards=3, workers=1, quiet=True, runner=_beam())
    summary = export_dataset(open_source(cifar10_tar.path), resumed, options)
    assert summary.skipped == 40 - 10  # every image but the missing shard's 10
    assert {p.name: p.stat().st_mtime_ns for p in resumed.glob("*.tfrecord-*") if p != missing} == kept
    assert _files(resumed) == _files(local)


def _with_a_broken_jpeg(photos: synth.SynthDataset, root: Path) -> Path:
    tree = root / "photos"
    shutil.copytree(photos.path, tree)
    broken = tree / "train" / "cat" / "cat_002.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    return broken


@needs_beam
def test_beam_checks_every_file_first_and_skip_bad_leaves_out_the_same_files(photos, tmp_path):
    broken = _with_a_broken_jpeg(photos, tmp_path)
    out = tmp_path / "refused"
    options = ExportOptions(format="webdataset", workers=1, quiet=True, runner=_beam())
    with pytest.raises(SourceError) as refused:
        export_dataset(open_source(tmp_path / "photos"), out, options)
    message = str(refused.value)
    assert message.startswith("1 of 14 image files cannot be read") and str(broken) in message
    assert "\n" not in message and not out.exists()  # nothing written
    local, beam = tmp_path / "local", tmp_path / "beam"
    export_dataset(open_source(tmp_path / "photos"), local, ExportOptions(format="webdataset", skip_bad=True))
    options = ExportOptions(format="webdataset", workers=1, quiet=True, skip_bad=True, runner=_beam())
    summary = export_dataset(open_source(tmp_path / "photos"), beam, options)
    assert summary.counts["train"] == 9 and [c.path for c in summary.bad] == [str(broken)]
    assert _files(beam) == _files(local)


@needs_beam
def test_a_source_that_changed_under_the_workers_is_refused_naming_it(photos, tmp_path):
    tree = tmp_path / "photos"
    shutil.copytree(photos.path, tree)
    dataset = open_source(tree)  # the command's listing ...
    Image.new("RGB", (8, 8)).save(tree / "train" / "dog" / "dog_999.jpg")  # ... and a file added since
    out = tmp_path / "out"
    with pytest.raises(SourceError) as refused:
        export_dataset(dataset, out, ExportOptions(format="tfrecord", workers=1, quiet=True, runner=_beam()))
    assert str(refused.value).startswith(f"{tree}: a Beam worker found other images there than the command listed")
    assert not out.exists()


@needs_beam
def test_a_worker_with_another_writer_writes_nothing_and_says_what_differs(cifar10_tar, tmp_path):
    """On other machines another cifarkit, zlib or pyarrow would write other bytes: the worker
    compares what decides them with the command's before it writes (here, another version)."""
    from cifarkit.formats.beam_work import SourceRef, WritePieces, digest, writer_fingerprint

    dataset = open_source(cifar10_tar.path)
    options = ExportOptions(format="tfrecord", workers=1, quiet=True)
    shard = options.adapter.plan(dataset, "test", options)[0]
    ours = {**writer_fingerprint(dataset, ("test",), options), "splits": ["test"]}
    ref = SourceRef(str(cifar10_tar.path), digest(dataset))
    out = tmp_path / "out"
    out.mkdir()
    results = list(WritePieces(ref, str(out), options, {**ours, "cifarkit": "0.0.1"}).process(("test", (shard,))))
    assert results == [
        {
            "split": "test",
            "error": "a Beam worker would write other bytes than this machine: its cifarkit is "
            f"{ours['cifarkit']!r}, this machine's '0.0.1'; install the same versions on the workers",
            "kind": "OutputError",
        }
    ]
    assert list(out.iterdir()) == []
    assert list(WritePieces(ref, str(out), options, ours).process(("test", (shard,))))[0]["images"] == 10
    assert [p.name for p in out.iterdir()] == [shard.file_name]


@needs_beam
@pytest.mark.parametrize(
    ("beam_options", "expected"),
    [
        ("--direct_num_worker=2", "'--direct_num_worker=2' is not an option of Apache Beam's pipelines"),
        ("--direct_running_mode=fast", "argument --direct_running_mode: invalid choice: 'fast'"),
        ("--runner=NoSuchRunner", "--runner=NoSuchRunner: Unexpected pipeline runner: NoSuchRunner"),
        ('"--runner=DirectRunner', "--beam-options cannot be read as flags (No closing quotation)"),
    ],
)
def test_a_bad_beam_flag_is_one_line_before_anything_is_read(cifar10_tar, tmp_path, beam_options, expected):
    out = tmp_path / "out"
    args = ["export", "-s", str(cifar10_tar.path), "-o", str(out), "--runner", "beam", "--beam-options", beam_options]
    line = _error_line(runner.invoke(app, args), code=2)
    assert expected in line and not out.exists()


def test_beam_options_without_the_beam_runner_are_refused(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    args = ["export", "-s", str(cifar10_tar.path), "-o", str(out), "--beam-options", MULTI]
    line = _error_line(runner.invoke(app, args), code=2)
    assert "--beam-options is for --runner beam" in line and not out.exists()


def test_the_beam_runner_without_beam_installed_is_one_line_naming_the_extra(cifar10_tar, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "apache_beam" or m.startswith("apache_beam.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # `import apache_beam` raises ImportError
    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "-s", str(cifar10_tar.path), "-o", str(out), "--runner", "beam"])
    line = _error_line(result, code=2)
    assert line == (
        "cifarkit: error: --runner beam needs Apache Beam (apache_beam), which is not installed: "
        "pip install 'cifarkit[beam]'"
    )
    assert not out.exists()
    with pytest.raises(UsageError, match=r"pip install 'cifarkit\[beam\]'"):
        _beam()
