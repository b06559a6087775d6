"""The MNIST family: IDX files (gzipped or not) and Keras's mnist.npz, on tiny files in the real layout."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from synth import idx_bytes, make_mnist_folder, tiny, write_split

from cifarkit.constants import FASHION_MNIST_CLASSES, IDX_MD5
from cifarkit.errors import ChecksumError, SourceError, UnsafeInputError
from cifarkit.sources import open_source
from cifarkit.sources.discover import find_dataset, find_named
from cifarkit.sources.idx import is_mnist_family, read_idx_file

REAL_MNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "mnist"


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_reads_exact_pixels_one_channel_and_counts(tmp_path, gz):
    truth = make_mnist_folder(tmp_path / "mnist", gz=gz)
    dataset = open_source(tmp_path / "mnist")
    assert dataset.name == "mnist" and dataset.splits == ("train", "test")
    assert dataset.class_names == tuple("0123456789")
    for split, (images, labels) in truth.items():
        batch = dataset.take(split, 0, dataset.count(split))
        assert batch.images.shape == (len(labels), 28, 28, 1) and batch.images.dtype == np.uint8
        np.testing.assert_array_equal(batch.images[..., 0], images)
        np.testing.assert_array_equal(batch.labels, labels)
        assert batch.labels.dtype == np.int64
    assert dataset.class_counts("train") == {str(d): 3 for d in range(10)}
    assert dataset.class_counts("test") == {str(d): 2 for d in range(10)}
    assert "not verified" in dataset.verification  # synthetic files have no official checksum


def test_t10k_alone_is_a_test_split_only_and_one_file_names_its_folder(tmp_path):
    make_mnist_folder(tmp_path / "digits", train=0, test=12)
    dataset = open_source(tmp_path / "digits" / "t10k-images-idx3-ubyte.gz")
    assert dataset.splits == ("test",) and dataset.count("test") == 12


def test_folder_name_tells_fashion_mnist_apart(tmp_path):
    make_mnist_folder(tmp_path / "fashion-mnist", train=10, test=10)  # Keras's cache folder name
    dataset = open_source(tmp_path / "fashion-mnist")
    assert dataset.name == "fashion_mnist" and dataset.class_names == FASHION_MNIST_CLASSES
    make_mnist_folder(tmp_path / "KMNIST" / "raw", train=0, test=10)  # torchvision's layout
    assert open_source(tmp_path / "KMNIST").name == "kmnist"


def test_official_md5s_are_recorded_for_all_three_datasets():
    for table in IDX_MD5.values():
        assert len(table) == 4 and all(len(md5) == 32 for md5 in table.values())
    assert len({md5 for table in IDX_MD5.values() for md5 in table.values()}) == 12


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason="the real MNIST test set is not here")
def test_real_mnist_test_set_is_verified_by_md5():
    dataset = open_source(REAL_MNIST)
    assert dataset.name == "mnist" and dataset.splits == ("test",) and dataset.count("test") == 10_000
    assert dataset.verification.startswith("verified")
    # The test set's class counts (LeCun's page: 980 zeros ... 1,009 nines).
    assert dataset.class_counts("test")["0"] == 980 and dataset.class_counts("test")["1"] == 1135
    assert list(dataset.batches["test"][0].labels[:5]) == [7, 2, 1, 0, 4]


def test_an_official_file_beside_a_modified_one_is_refused_unless_no_verify(tmp_path):
    if not REAL_MNIST.is_dir():
        pytest.skip("the real MNIST test set is not here")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes((REAL_MNIST / "t10k-images-idx3-ubyte.gz").read_bytes())
    labels = gzip.decompress((REAL_MNIST / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(labels[:-1] + b"\x03", mtime=0))
    with pytest.raises(ChecksumError, match="t10k-labels-idx1-ubyte.gz: md5 .* not the official mnist"):
        open_source(folder)
    assert "NOT verified" in open_source(folder, verify=False).verification


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("gz", [True, False])
def test_truncated_file_is_named(tmp_path, gz):
    data = idx_bytes(tiny(5, 0)[0])[:-100]
    path = _write(tmp_path, "train-images-idx3-ubyte" + (".gz" if gz else ""), gzip.compress(data) if gz else data)
    with pytest.raises(
        SourceError, match=r"truncated: its header says 5 28x28 images \(3,920 bytes\) but the file holds 3,820"
    ):
        read_idx_file(path, 3)


def test_truncated_gzip_stream_and_trailing_bytes(tmp_path):
    data = idx_bytes(tiny(5, 0)[0])
    path = _write(tmp_path, "a-images-idx3-ubyte.gz", gzip.compress(data)[:-12])
    with pytest.raises(SourceError, match="gzip file or truncated|truncated"):
        read_idx_file(path, 3)
    path = _write(tmp_path, "b-images-idx3-ubyte", data + b"\0")
    with pytest.raises(SourceError, match="holds more"):
        read_idx_file(path, 3)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x08\x03\x00\x00" + b"\0" * 96, "not an IDX file \\(magic number 08030000"),
        (b"\x00\x00\x0d\x03" + struct.pack(">3I", 1, 2, 2) + b"\0" * 16, "type code 0x0d"),
        (b"\x00\x00\x08\x02" + struct.pack(">2I", 2, 2) + b"\0" * 4, "2 dimensions; images"),
        (b"\x00\x00\x08\x03" + struct.pack(">3I", 0, 28, 28), "hold no data"),
        (b"\x00\x00", "shorter than an IDX header"),
        (b"\x00\x00\x08\x03\x00\x00", "truncated inside its IDX header"),
    ],
)
def test_bad_headers_are_one_line_errors(tmp_path, data, message):
    with pytest.raises(SourceError, match=message) as info:
        read_idx_file(_write(tmp_path, "x-images-idx3-ubyte", data), 3)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("gz", [True, False])
def test_a_header_claiming_a_billion_images_is_refused_without_allocating(tmp_path, gz):
    head = b"\x00\x00\x08\x03" + struct.pack(">3I", 10**9, 28, 28)
    data = head + b"\0" * (100 - len(head))
    path = _write(tmp_path, "x-images-idx3-ubyte" + (".gz" if gz else ""), gzip.compress(data) if gz else data)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeInputError, match="refused: its header says 1,000,000,000 28x28 images"):
            read_idx_file(path, 3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, peak  # chunk buffers; the header asked for 784 GB
    # A claim under the cap but past the file's end: refused from the file's size, nothing read.
    small = b"\x00\x00\x08\x03" + struct.pack(">3I", 100_000, 28, 28) + b"\0" * 84
    with pytest.raises(SourceError, match="truncated: its header says 100,000 28x28 images"):
        read_idx_file(_write(tmp_path, "y-images-idx3-ubyte", small), 3)


def test_images_and_labels_must_pair_and_labels_must_name_a_class(tmp_path):
    images, labels = tiny(4, 0)
    write_split(tmp_path / "a", "t10k", images, labels[:3])
    with pytest.raises(SourceError, match="4 images but 3 labels"):
        open_source(tmp_path / "a")
    write_split(tmp_path / "fashion", "t10k", images, np.array([1, 2, 3, 12], np.uint8))
    with pytest.raises(SourceError, match="label 12 out of range for fashion_mnist's 10 classes"):
        open_source(tmp_path / "fashion")
    write_split(tmp_path / "b", "train", images, labels)
    (tmp_path / "b" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(SourceError, match="the train split has no labels file"):
        open_source(tmp_path / "b")


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_keras_npz_cache(tmp_path):
    (x_train, y_train), (x_test, y_test) = tiny(20, 3), tiny(10, 4)
    path = _npz(tmp_path / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    dataset = open_source(path)
    assert dataset.name == "mnist" and dataset.splits == ("train", "test")
    np.testing.assert_array_equal(dataset.take("train", 0, 20).images[..., 0], x_train)
    np.testing.assert_array_equal(dataset.take("test", 0, 10).labels, y_test)
    assert "not verified" in dataset.verification  # not Keras's file
    assert is_mnist_family(path) and is_mnist_family(tmp_path) is False


def test_npz_with_a_lying_header_or_wrong_arrays_is_refused(tmp_path):
    x, y = tiny(4, 0)
    with pytest.raises(SourceError, match="no 'x_test' array"):
        open_source(_npz(tmp_path / "a.npz", x_train=x, y_train=y))
    with pytest.raises(SourceError, match="float64 array"):
        open_source(_npz(tmp_path / "b.npz", x_train=x.astype(float), y_train=y, x_test=x, y_test=y))
    # An .npy header claiming 10^9 images over 16 bytes of data: refused before numpy allocates.
    raw = io.BytesIO()
    np.lib.format.write_array_header_1_0(raw, {"descr": "|u1", "fortran_order": False, "shape": (10**9, 28, 28)})
    import zipfile

    with zipfile.ZipFile(tmp_path / "c.npz", "w") as archive:
        archive.writestr("x_train.npy", raw.getvalue() + b"\0" * 16)
    tracemalloc.start()
    try:
        with pytest.raises(UnsafeInputError, match="refused: its header claims"):
            open_source(tmp_path / "c.npz")
        assert tracemalloc.get_traced_memory()[1] < 4 * 2**20
    finally:
        tracemalloc.stop()


def test_search_finds_keras_caches_and_named_datasets(tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "work"
    cwd.mkdir()
    keras3 = home / ".keras" / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    keras3.mkdir(parents=True)
    found = find_dataset(cwd=cwd, home=home)
    assert found.path == keras3.parent.parent / "cifar-10-batches-py-target/cifar-10-batches-py" and not found.is_sample
    make_mnist_folder(home / ".keras" / "datasets" / "fashion-mnist", train=0, test=10)
    assert find_named("fashion_mnist", cwd=cwd, home=home) == home / ".keras" / "datasets" / "fashion-mnist"
    make_mnist_folder(tmp_path / "mine" / "mnist", train=0, test=10)
    assert find_named("mnist", data_dir=tmp_path / "mine", cwd=cwd, home=home) == tmp_path / "mine" / "mnist"
    with pytest.raises(SourceError, match="kmnist: not found in"):
        find_named("kmnist", cwd=cwd, home=home)
    with pytest.raises(SourceError, match="not a dataset name cifarkit looks for"):
        find_named("imagenet", cwd=cwd, home=home)


def test_train_and_evaluate_with_split_options_on_a_t10k_folder(tmp_path):
    """A folder with only the t10k files: the default splits are refused in one line; with
    --train-split/--eval-split lenet5 trains on one channel with the mnist recipe."""
    import json

    from typer.testing import CliRunner

    from cifarkit.cli import app

    make_mnist_folder(tmp_path / "mnist", train=0, test=60)
    runner = CliRunner()
    base = ["train", "lenet5", "--data", str(tmp_path / "mnist"), "--epochs", "1", "--batch-size", "16", "--quiet"]
    refused = runner.invoke(app, [*base, "--workdir", str(tmp_path / "no")])
    assert refused.exit_code == 2 and "has no split 'train'" in refused.output and "--train-split" in refused.output
    assert len(refused.output.strip().splitlines()) == 1
    workdir = tmp_path / "run"
    result = runner.invoke(
        app, [*base, "--workdir", str(workdir), "--train-split", "test[:40]", "--eval-split", "test[40:]"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((workdir / "report.json").read_text())
    assert report["dataset"]["counts"] == {"train": 40, "test": 20}
    assert report["config"]["recipe"] == "mnist" and report["config"]["train_split"] == "test[:40]"
    assert report["test"]["images"] == 20
    stats = json.loads((workdir / "stats.json").read_text())
    assert len(stats["mean"]) == 1  # one grey channel, its statistics from the 40 training images
    evaluated = runner.invoke(app, ["evaluate", str(workdir), "--eval-split", "test[:10]"])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((workdir / "eval-test-10" / "metrics.json").read_text())
    assert metrics["images"] == 10 and metrics["split"] == "test[:10]"
    missing = runner.invoke(app, ["evaluate", str(workdir), "--eval-split", "train"])
    assert missing.exit_code == 2 and "has no split 'train'" in missing.output


@pytest.mark.parametrize("fmt", ["png", "jpg", "tfrecord"])
def test_exports_keep_one_grey_channel(tmp_path, fmt):
    import imageio.v3 as iio
    from typer.testing import CliRunner

    import cifarkit
    from cifarkit.cli import app

    truth = make_mnist_folder(tmp_path / "mnist", train=10, test=10)
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--format",
            fmt,
            "--source",
            str(tmp_path / "mnist"),
            "--out",
            str(tmp_path / fmt),
            "--quiet",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    x, y = cifarkit.load_numpy(tmp_path / fmt, "test")
    assert x.shape == (10, 28, 28, 1) and y.tolist() == truth["test"][1].tolist()
    if fmt != "jpg":  # lossless: pixel-exact
        np.testing.assert_array_equal(x[..., 0], truth["test"][0])
    else:
        assert iio.imread(next((tmp_path / fmt).rglob("*.jpg"))).shape == (28, 28)  # a one-component JPEG
