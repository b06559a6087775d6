"""TensorFlow Datasets opens cifarkit's exports, and cifarkit opens what TFDS prepared.

Every check reads with TFDS itself (``tfds.builder_from_directory`` and ``tfds.load`` with
``data_dir``), offline, and compares pixels, labels and ids with the source. TFDS is imported
once for the module (it takes a few seconds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import synth
from typer.testing import CliRunner

from cifarkit import data
from cifarkit.cli import app
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source

tfds = pytest.importorskip("tensorflow_datasets")
runner = CliRunner()


def _by_id(dataset) -> dict[str, dict]:
    return {ex["id"].decode(): ex for ex in tfds.as_numpy(dataset)}


def _truth_ids(split: str, count: int) -> list[str]:
    return [f"{split}_{i:05d}" for i in range(count)]


@pytest.mark.parametrize("encoding", ["auto", "png", "jpeg", "raw"])
def test_tfds_reads_a_cifar10_export_in_every_encoding(cifar10_tar, tmp_path, encoding):
    out = tmp_path / "tfr"
    export_dataset(
        open_source(cifar10_tar.path),
        out,
        ExportOptions(format="tfrecord", encoding=encoding, shards=2, workers=1, quiet=True),
    )
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.name == "cifar10" and str(builder.info.version) == "3.0.2"
    assert builder.info.features["label"].names == list(cifar10_tar.class_names)
    assert builder.info.supervised_keys == ("image", "label")
    ours = data.open_data(out)  # cifarkit's own reader of the same records
    for split, truth in cifar10_tar.splits.items():
        assert builder.info.splits[split].num_examples == len(truth)
        records = _by_id(builder.as_dataset(split))
        assert sorted(records) == _truth_ids(split, len(truth))
        pixels, labels = data.to_numpy(ours.dataset(split))
        np.testing.assert_array_equal(labels, truth.labels)
        for i, key in enumerate(_truth_ids(split, len(truth))):
            assert records[key]["label"] == truth.labels[i]
            np.testing.assert_array_equal(records[key]["image"], pixels[i])  # the same decode as cifarkit's
            if encoding != "jpeg":
                np.testing.assert_array_equal(records[key]["image"], truth.images[i])
        if encoding == "jpeg":  # lossy: exactly what the JPEG of each source image decodes to
            import tensorflow as tf

            from cifarkit.formats.codecs import encode_image

            jpegs = [tf.io.decode_jpeg(encode_image(image, "jpg", 95)).numpy() for image in truth.images]
            np.testing.assert_array_equal(pixels, np.stack(jpegs))
        pairs = list(tfds.as_numpy(builder.as_dataset(split, as_supervised=True, shuffle_files=False)))
        assert sorted(int(label) for _, label in pairs) == sorted(truth.labels.tolist())


def test_tfds_load_finds_a_cifar100_export_in_its_layout_with_fine_and_coarse_labels(cifar100_tar, tmp_path):
    data_dir = tmp_path / "tensorflow_datasets"
    summary = export_dataset(
        open_source(cifar100_tar.path),
        data_dir,
        ExportOptions(format="tfrecord", tfds_layout=True, workers=1, quiet=True),
    )
    assert summary.out == data_dir / "cifar100" / "3.0.2"
    loaded, info = tfds.load(
        "cifar100", data_dir=str(data_dir), split=["train", "test"], download=False, with_info=True
    )
    assert info.features["coarse_label"].names == list(cifar100_tar.coarse_class_names)
    for split, dataset in zip(["train", "test"], loaded):
        truth = cifar100_tar.splits[split]
        records = _by_id(dataset)
        assert sorted(records) == _truth_ids(split, len(truth))
        for i, key in enumerate(_truth_ids(split, len(truth))):
            assert (records[key]["label"], records[key]["coarse_label"]) == (truth.labels[i], truth.coarse_labels[i])
            np.testing.assert_array_equal(records[key]["image"], truth.images[i])
    # the same folder, found by cifarkit from the data_dir
    assert data.open_data(data_dir).counts == {s: len(t) for s, t in cifar100_tar.splits.items()}
    assert open_source(data_dir).coarse_class_names == tuple(cifar100_tar.coarse_class_names)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> synth.SynthDataset:
    """Photo-sized JPEGs of three sizes, one grey, as a camera or a scraped dataset has them."""
    root = tmp_path_factory.mktemp("photos") / "my-photos"
    made = synth.make_image_folder(root, ext="jpg", sizes=((240, 320), (300, 200), (97, 131)))
    from PIL import Image

    grey = root / "train" / "cat" / "cat_009.jpg"
    Image.fromarray(np.full((50, 60), 128, np.uint8), mode="L").save(grey)
    return made


def test_a_photo_tree_keeps_its_jpeg_bytes_and_tfds_reads_them(photos, tmp_path):
    import tensorflow as tf

    data_dir = tmp_path / "tfds"
    summary = export_dataset(
        open_source(photos.path), data_dir, ExportOptions(format="tfrecord", tfds_layout=True, workers=2, quiet=True)
    )
    assert summary.out == data_dir / "my_photos" / "1.0.0"  # TFDS's name for it
    rows = {r["split"] + "_" + r["index"].zfill(5): r for r in _manifest(summary.out)}
    builder = tfds.builder_from_directory(str(summary.out))
    raw = builder.as_dataset("train", decoders={"image": tfds.decode.SkipDecoding()})
    for ex in tfds.as_numpy(raw):  # the stored bytes are the file's, byte for byte
        source = photos.path / rows[ex["id"].decode()]["source_file"]
        assert ex["image"] == source.read_bytes()
        assert (ex["height"], ex["width"]) == tf.io.decode_jpeg(source.read_bytes()).shape[:2]
    loaded = tfds.load("my_photos", data_dir=str(data_dir), split="train", download=False)  # from the files
    for ex in tfds.as_numpy(loaded):
        source = photos.path / rows[ex["id"].decode()]["source_file"]
        np.testing.assert_array_equal(ex["image"], tf.io.decode_jpeg(source.read_bytes(), channels=3).numpy())
        assert photos.class_names[ex["label"]] == Path(rows[ex["id"].decode()]["source_file"]).parent.name
    assert sum(1 for _ in loaded) == 7  # 3 cats, the grey one and 3 dogs


def test_png_encoding_re_encodes_photos_and_is_bigger(photos, tmp_path):
    sizes = {}
    for encoding in ("auto", "png"):
        out = tmp_path / encoding
        export_dataset(
            open_source(photos.path), out, ExportOptions(format="tfrecord", encoding=encoding, workers=1, quiet=True)
        )
        sizes[encoding] = sum(p.stat().st_size for p in out.glob("*.tfrecord-*"))
        records = _by_id(tfds.builder_from_directory(str(out)).as_dataset("test"))
        assert len(records) == 4
    assert sizes["png"] > 2 * sizes["auto"]


def test_a_corrupt_photo_is_named_before_anything_is_written_or_skipped_on_request(photos, tmp_path):
    import shutil

    tree = tmp_path / "tree"
    shutil.copytree(photos.path, tree)
    broken = tree / "test" / "dog" / "dog_000.jpg"
    broken.write_bytes(broken.read_bytes()[:400])  # a download cut short
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["export", "--source", str(tree), "--format", "tfrecord", "--out", str(out), "--workers", "1", "--quiet"]
    )
    assert result.exit_code == 1
    assert "1 of 11 image files cannot be read" in result.stderr and "dog_000.jpg" in result.stderr, result.stderr
    assert "--skip-bad" in result.stderr and not out.exists()
    result = runner.invoke(
        app,
        ["export", "--source", str(tree), "--format", "tfrecord", "--out", str(out), "--workers", "1", "--skip-bad"],
    )
    assert result.exit_code == 0, result.output
    assert "left out 1 image files" in result.stderr
    info = json.loads((out / "cifarkit_info.json").read_text())
    assert [Path(s["file"]).name for s in info["skipped"]] == ["dog_000.jpg"]
    assert tfds.builder_from_directory(str(out)).info.splits["test"].num_examples == 3


def _tfds_written_cifar10(data_dir: Path, truth: dict[str, tuple[np.ndarray, np.ndarray]], names) -> Path:
    """A cifar10 folder as TFDS itself writes it (its own builder, writer and metadata)."""

    class Cifar10(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("3.0.2")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "id": tfds.features.Text(),
                        "image": tfds.features.Image(shape=(32, 32, 3)),
                        "label": tfds.features.ClassLabel(names=names),
                    }
                ),
                supervised_keys=("image", "label"),
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in truth}

        def _generate_examples(self, split):
            images, labels = truth[split]
            for i, (image, label) in enumerate(zip(images, labels)):
                yield i, {"id": f"{split}_{i:05d}", "image": image, "label": int(label)}

    Cifar10(data_dir=str(data_dir)).download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
    return data_dir / "cifar10" / "3.0.2"


def test_cifarkit_reads_a_folder_tfds_prepared_and_re_exports_it_pixel_exact(cifar10_tar, tmp_path):
    truth = {s: (t.images, t.labels) for s, t in cifar10_tar.splits.items()}
    folder = _tfds_written_cifar10(tmp_path / "tensorflow_datasets", truth, list(cifar10_tar.class_names))
    result = runner.invoke(app, ["info", str(folder)])
    assert result.exit_code == 0, result.output
    assert "TFDS-prepared folder (version 3.0.2)" in result.stdout and "cifar10" in result.stdout
    assert result.stdout.splitlines()[-1].split() == ["total", "30", "10"]
    out = tmp_path / "png"
    result = runner.invoke(
        app,
        [
            "export",
            "--source",
            str(tmp_path / "tensorflow_datasets"),
            "--format",
            "png",
            "--out",
            str(out),
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    exported = open_source(out)
    by_id = {}  # TFDS shuffles the records it writes: match them by id through the manifest
    for split, (images, labels) in truth.items():
        part = exported.take(split, 0, exported.count(split))
        assert sorted(part.labels.tolist()) == sorted(labels.tolist())
        by_id[split] = {tuple(img.ravel()[:64]): lab for img, lab in zip(part.images, part.labels)}
        for image, label in zip(images, labels):
            assert by_id[split][tuple(image.ravel()[:64])] == label  # every picture, with its label
    reader = data.open_data(folder)
    assert reader.kind == "tfrecord" and reader.counts == {"train": 30, "test": 10}


def test_a_tfrecord_export_re_exports_as_a_pixel_exact_png_tree(cifar100_tar, tmp_path):
    records = tmp_path / "records"
    assert (
        runner.invoke(
            app,
            ["export", "-s", str(cifar100_tar.path), "-f", "tfrecord", "-o", str(records), "--workers", "1", "--quiet"],
        ).exit_code
        == 0
    )
    result = runner.invoke(app, ["info", str(records)])
    assert result.exit_code == 0 and "cifarkit TFRecord export" in result.stdout, result.output
    tree = tmp_path / "tree"
    result = runner.invoke(
        app,
        [
            "export",
            "-s",
            str(records),
            "-f",
            "png",
            "-o",
            str(tree),
            "--workers",
            "1",
            "--layout",
            "coarse/fine",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    again = open_source(tree)
    for split, truth in cifar100_tar.splits.items():
        part = again.take(split, 0, again.count(split))
        np.testing.assert_array_equal(np.stack(part.images), truth.images)
        np.testing.assert_array_equal(part.labels, truth.labels)
        np.testing.assert_array_equal(part.coarse_labels, truth.coarse_labels)
    first = next(r for r in _manifest(tree) if r["split"] == "test")
    coarse, fine = cifar100_tar.coarse_class_names, cifar100_tar.class_names
    assert first["path"] == (
        f"test/{coarse[cifar100_tar.splits['test'].coarse_labels[0]]}/"
        f"{fine[cifar100_tar.splits['test'].labels[0]]}/00000.png"
    )


def test_keras_reads_a_png_tree_export_as_the_readme_says(cifar10_tar, tmp_path):
    import keras

    out = tmp_path / "cifar10-png"
    export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1, quiet=True))
    # README, "Use it with": the exact call
    train = keras.utils.image_dataset_from_directory(
        str(out / "train"), image_size=(32, 32), batch_size=128, shuffle=False
    )
    assert train.class_names == sorted(cifar10_tar.class_names)
    images, labels = next(iter(train))
    assert images.shape == (30, 32, 32, 3)
    order = np.argsort(
        [f"{cifar10_tar.class_names[label]}/{i:05d}" for i, label in enumerate(cifar10_tar.splits["train"].labels)]
    )
    np.testing.assert_array_equal(images.numpy().astype(np.uint8), cifar10_tar.splits["train"].images[order])
    names = [train.class_names[i] for i in labels.numpy()]
    assert names == [cifar10_tar.class_names[cifar10_tar.splits["train"].labels[i]] for i in order]


def _manifest(out: Path) -> list[dict]:
    import csv

    with open(out / "manifest.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_dataset_search_finds_cifar10_in_tensorflow_datasets(cifar10_tar, tmp_path, monkeypatch):
    from cifarkit.sources.discover import ENV_VAR, find_dataset

    monkeypatch.delenv(ENV_VAR, raising=False)
    home, cwd = tmp_path / "home", tmp_path / "work"
    cwd.mkdir()
    export_dataset(
        open_source(cifar10_tar.path),
        home / "tensorflow_datasets",
        ExportOptions(format="tfrecord", tfds_layout=True, workers=1, quiet=True),
    )
    found = find_dataset(cwd=cwd, home=home)
    assert found.path == home / "tensorflow_datasets" / "cifar10" and not found.is_sample
    assert open_source(found.path).count("train") == 30


@pytest.mark.parametrize("encoding", ["auto", "raw"])
def test_tfds_reads_an_mnist_export_with_its_one_grey_channel(tmp_path, encoding):
    truth = synth.make_mnist_folder(tmp_path / "mnist", train=12, test=8)
    out = tmp_path / "tfr"
    export_dataset(
        open_source(tmp_path / "mnist", verify=False),
        out,
        ExportOptions(format="tfrecord", encoding=encoding, workers=1, quiet=True),
    )
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.features["image"].shape == (28, 28, 1)
    for split, (images, labels) in truth.items():
        assert builder.info.splits[split].num_examples == len(labels)
        records = _by_id(builder.as_dataset(split))
        for i, key in enumerate(_truth_ids(split, len(labels))):
            np.testing.assert_array_equal(records[key]["image"], images[i][..., None])  # lossless, one channel
            assert records[key]["label"] == labels[i]
