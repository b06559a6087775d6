"""Reading datasets: every CIFAR layout, image trees, hostile and broken inputs, checksums, discovery."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

try:
    import synth
except ImportError:  # tests/ imported as a package
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import synth

from cifarkit.errors import ChecksumError, SourceError, UnsafeInputError
from cifarkit.sources import discover, open_source
from cifarkit.sources.labelled import LazyImages
from cifarkit.sources.safe_pickle import safe_loads

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _all_images(dataset, split: str) -> np.ndarray:
    batch = dataset.take(split, 0, dataset.count(split))
    return np.asarray(batch.images)


def _bincount(labels: np.ndarray, names) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(names))
    return {name: int(n) for name, n in zip(names, counts)}


def assert_matches(dataset, truth: synth.SynthDataset, *, coarse: bool = False) -> None:
    """Splits, counts, exact pixels, labels, names and class counts all equal the truth."""
    assert dataset.splits == ("train", "test")
    assert list(dataset.class_names) == truth.class_names
    for split, t in truth.splits.items():
        assert dataset.count(split) == len(t)
        batch = dataset.take(split, 0, dataset.count(split))
        images = np.asarray(batch.images)
        assert images.dtype == np.uint8
        assert images.shape == (len(t), 32, 32, 3)
        np.testing.assert_array_equal(images, t.images)
        np.testing.assert_array_equal(batch.labels, t.labels)
        assert dataset.class_counts(split) == _bincount(t.labels, truth.class_names)
        if coarse:
            np.testing.assert_array_equal(batch.coarse_labels, t.coarse_labels)
        else:
            assert batch.coarse_labels is None
    if coarse:
        assert list(dataset.coarse_class_names) == truth.coarse_class_names
    else:
        assert dataset.coarse_class_names is None


def _cifar10_members(tmp_path: Path, **kwargs) -> dict[str, bytes]:
    """The files of a valid synthetic CIFAR-10 python folder, base name -> bytes."""
    folder = synth.make_cifar10_python(tmp_path / "members", archive=False, **kwargs).path
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _tar_with(tmp_path: Path, replace: dict[str, bytes], name: str = "bad.tar.gz") -> Path:
    members = _cifar10_members(tmp_path)
    members.update(replace)
    return synth.write_tar_gz(
        tmp_path / name,
        [(f"cifar-10-batches-py/{n}", data) for n, data in members.items()],
        dirs=["cifar-10-batches-py"],
    )


class _Call:
    """Pickles as a call of ``func(*args)``; building it calls nothing."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return (self.func, self.args)


# ---------------------------------------------------------------------------
# CIFAR-10, python version
# ---------------------------------------------------------------------------

PICKLE_FLAVOURS = [
    ("py2", 2, False),
    ("py2", 1, False),
    *[("py3", p, False) for p in (2, 3, 4, 5)],
    *[("py3", p, True) for p in (2, 3, 4, 5)],
]


@pytest.mark.parametrize("flavour,protocol,str_keys", PICKLE_FLAVOURS)
def test_cifar10_python_archive(tmp_path, flavour, protocol, str_keys):
    truth = synth.make_cifar10_python(tmp_path, flavour=flavour, protocol=protocol, str_keys=str_keys)
    dataset = open_source(truth.path)
    assert dataset.name == "cifar10"
    assert dataset.location == truth.path
    assert dataset.count("train") == 30 and dataset.count("test") == 10
    assert len(dataset.batches["train"]) == 5 and len(dataset.batches["test"]) == 1
    assert_matches(dataset, truth)
    assert dataset.verification.startswith("not verified")
    # Each image remembers its batch file and its name inside it, in dataset order.
    train = dataset.take("train", 0, 30)
    expected = [f"data_batch_{i // 6 + 1}:{name}" for i, name in enumerate(truth.splits["train"].filenames)]
    assert list(train.source_files) == expected


def test_cifar10_python_take_crosses_batches(tmp_path):
    truth = synth.make_cifar10_python(tmp_path, per_batch=4, batches=3)
    dataset = open_source(truth.path)
    part = dataset.take("train", 3, 10)
    np.testing.assert_array_equal(np.asarray(part.images), truth.splits["train"].images[3:10])
    np.testing.assert_array_equal(part.labels, truth.splits["train"].labels[3:10])
    assert len(part.source_files) == 7


def test_cifar10_python_batches_sorted_numerically(tmp_path):
    # data_batch_10 must come after data_batch_9, not after data_batch_1.
    truth = synth.make_cifar10_python(tmp_path, per_batch=2, batches=11)
    dataset = open_source(truth.path)
    assert dataset.count("train") == 22
    np.testing.assert_array_equal(_all_images(dataset, "train"), truth.splits["train"].images)


def test_cifar10_python_extracted_folder(tmp_path):
    truth = synth.make_cifar10_python(tmp_path, archive=False)
    assert truth.path.name == "cifar-10-batches-py"
    # Synthetic files under the official folder name do not have the official md5s.
    # From Python the message names the keyword to pass; the CLI names its flag (tests/cli).
    with pytest.raises(ChecksumError, match="Pass verify=False to read it anyway"):
        open_source(truth.path)
    dataset = open_source(truth.path, verify=False)
    assert dataset.name == "cifar10"
    assert dataset.location == truth.path
    assert dataset.verification.startswith("NOT verified")
    assert_matches(dataset, truth)


def test_cifar10_python_parent_folder(tmp_path):
    truth = synth.make_cifar10_python(tmp_path / "parent", archive=False, flavour="py3", protocol=4)
    dataset = open_source(tmp_path / "parent", verify=False)
    assert dataset.name == "cifar10"
    assert dataset.location == tmp_path / "parent" / "cifar-10-batches-py"
    assert_matches(dataset, truth)


def test_cifar10_python_renamed_folder_not_checksummed(tmp_path):
    truth = synth.make_cifar10_python(tmp_path, archive=False)
    renamed = truth.path.rename(tmp_path / "my-cifar")
    dataset = open_source(renamed)
    assert dataset.verification.startswith("not verified")
    assert_matches(dataset, truth)


def test_cifar10_python_without_meta_uses_standard_names(tmp_path):
    members = _cifar10_members(tmp_path)
    del members["batches.meta"]
    path = synth.write_tar_gz(tmp_path / "nometa.tar.gz", {f"c/{n}": d for n, d in members.items()})
    dataset = open_source(path)
    assert list(dataset.class_names) == synth.CIFAR10_CLASSES
    assert any("batches.meta" in note for note in dataset.notes)


# ---------------------------------------------------------------------------
# CIFAR-10 binary, CIFAR-100 python and binary
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("archive", [True, False])
def test_cifar10_binary(tmp_path, archive):
    truth = synth.make_cifar10_binary(tmp_path, archive=archive)
    dataset = open_source(truth.path)
    assert dataset.name == "cifar10"
    assert "binary" in dataset.format
    assert dataset.count("train") == 30 and dataset.count("test") == 10
    assert_matches(dataset, truth)
    assert dataset.verification.startswith("not verified")


def test_cifar10_binary_parent_folder(tmp_path):
    truth = synth.make_cifar10_binary(tmp_path / "parent", archive=False)
    dataset = open_source(tmp_path / "parent")
    assert dataset.location == truth.path
    assert_matches(dataset, truth)


@pytest.mark.parametrize(
    "flavour,protocol,str_keys",
    [("py2", 2, False), ("py3", 2, False), ("py3", 5, False), ("py3", 4, True)],
)
def test_cifar100_python_archive(tmp_path, flavour, protocol, str_keys):
    truth = synth.make_cifar100_python(tmp_path, flavour=flavour, protocol=protocol, str_keys=str_keys)
    dataset = open_source(truth.path)
    assert dataset.name == "cifar100"
    assert dataset.count("train") == 20 and dataset.count("test") == 10
    assert len(dataset.class_names) == 100 and len(dataset.coarse_class_names) == 20
    assert_matches(dataset, truth, coarse=True)


def test_cifar100_python_folder(tmp_path):
    truth = synth.make_cifar100_python(tmp_path, archive=False)
    with pytest.raises(ChecksumError):
        open_source(truth.path)
    dataset = open_source(truth.path, verify=False)
    assert dataset.name == "cifar100"
    assert_matches(dataset, truth, coarse=True)


@pytest.mark.parametrize("archive", [True, False])
def test_cifar100_binary(tmp_path, archive):
    truth = synth.make_cifar100_binary(tmp_path, archive=archive)
    dataset = open_source(truth.path)
    assert dataset.name == "cifar100"
    assert "binary" in dataset.format
    assert dataset.count("train") == 20 and dataset.count("test") == 10
    assert_matches(dataset, truth, coarse=True)


# ---------------------------------------------------------------------------
# Image folder trees
# ---------------------------------------------------------------------------


def _assert_tree(dataset, truth: synth.SynthDataset, root: Path, with_splits: bool) -> None:
    assert dataset.format == "image folder tree"
    assert dataset.name == root.name
    assert list(dataset.class_names) == truth.class_names
    assert dataset.splits == tuple(truth.splits)
    for split, t in truth.splits.items():
        assert dataset.count(split) == len(t)
        batch = dataset.take(split, 0, dataset.count(split))
        assert isinstance(batch.images, LazyImages)
        decoded = list(batch.images)
        assert len(decoded) == len(t.images)
        for got, want in zip(decoded, t.images):
            assert got.dtype == np.uint8 and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        # Indexing decodes too.
        np.testing.assert_array_equal(batch.images[len(t) - 1], t.images[-1])
        np.testing.assert_array_equal(batch.labels, t.labels)
        prefix = f"{split}/" if with_splits else ""
        assert list(batch.source_files) == [prefix + name for name in t.filenames]
        assert dataset.class_counts(split) == _bincount(t.labels, truth.class_names)


def test_image_folder_with_splits(tmp_path):
    root = tmp_path / "pets"
    truth = synth.make_image_folder(root, classes=("dog", "cat", "bird"), sizes=((40, 30), (17, 23), (32, 32)))
    dataset = open_source(root)
    assert dataset.class_names == ("bird", "cat", "dog")
    assert dataset.count("train") == 9 and dataset.count("test") == 6
    _assert_tree(dataset, truth, root, with_splits=True)
    shapes = {img.shape for img in dataset.take("train", 0, 9).images}
    assert shapes == {(40, 30, 3), (17, 23, 3), (32, 32, 3)}


def test_image_folder_without_splits(tmp_path):
    root = tmp_path / "flowers"
    truth = synth.make_image_folder(root, classes=("rose", "tulip"), per_class={"train": 4}, with_splits=False)
    dataset = open_source(root)
    assert dataset.splits == ("train",)
    assert dataset.count("train") == 8
    _assert_tree(dataset, truth, root, with_splits=False)


def test_image_folder_grey_and_alpha_become_rgb(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    (tmp_path / "tree" / "a").mkdir(parents=True)
    (tmp_path / "tree" / "b").mkdir(parents=True)
    grey = rng.integers(0, 256, size=(9, 13), dtype=np.uint8)
    rgba = rng.integers(0, 256, size=(5, 7, 4), dtype=np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "tree" / "a" / "grey.png")
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "tree" / "b" / "alpha.png")
    dataset = open_source(tmp_path / "tree")
    assert dataset.class_names == ("a", "b")
    got_grey, got_rgba = list(dataset.take("train", 0, 2).images)
    assert got_grey.shape == (9, 13, 3)
    for c in range(3):
        np.testing.assert_array_equal(got_grey[..., c], grey)
    assert got_rgba.shape == (5, 7, 3)
    np.testing.assert_array_equal(got_rgba, rgba[..., :3])


def test_image_folder_undecodable_image(tmp_path):
    (tmp_path / "tree" / "cls").mkdir(parents=True)
    (tmp_path / "tree" / "cls" / "broken.png").write_bytes(b"not a png at all")
    dataset = open_source(tmp_path / "tree")
    with pytest.raises(SourceError, match="broken.png"):
        list(dataset.take("train", 0, 1).images)


# ---------------------------------------------------------------------------
# Hostile pickles
# ---------------------------------------------------------------------------


def _system_module() -> str:
    return os.system.__module__  # "posix" on Linux, "nt" on Windows


def test_malicious_pickle_in_archive(tmp_path):
    marker = tmp_path / "pwned"
    path = _tar_with(tmp_path, {"data_batch_1": synth.malicious_pickle(marker)})
    with pytest.raises(UnsafeInputError) as info:
        open_source(path)
    message = str(info.value)
    assert f"{_system_module()}.system" in message or "os.system" in message
    assert "data_batch_1" in message
    assert not marker.exists()


def test_malicious_pickle_in_folder(tmp_path):
    marker = tmp_path / "pwned"
    folder = synth.make_cifar10_python(tmp_path, archive=False).path
    (folder / "test_batch").write_bytes(synth.malicious_pickle(marker))
    with pytest.raises(UnsafeInputError, match="test_batch"):
        open_source(folder, verify=False)
    assert not marker.exists()


def test_safe_loads_refuses_system(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(UnsafeInputError) as info:
        safe_loads(synth.malicious_pickle(marker), "evil.pkl")
    assert "evil.pkl" in str(info.value)
    assert f"{_system_module()}.system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "data,refused",
    [
        (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
        (b"c__builtin__\neval\n(S'1+1'\ntR.", "eval"),
        (b"cbuiltins\ngetattr\n(cbuiltins\nobject\nS'x'\ntR.", "builtins.getattr"),
    ],
    ids=["builtins.eval", "__builtin__.eval", "getattr"],
)
def test_safe_loads_refuses_builtins(data, refused):
    with pytest.raises(UnsafeInputError, match=refused.replace(".", r"\.")):
        safe_loads(data, "batch")


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_safe_loads_refuses_popen(tmp_path, protocol):
    marker = tmp_path / "pwned"
    data = pickle.dumps(_Call(subprocess.Popen, ["touch", str(marker)]), protocol=protocol)
    # Protocols below 3 record the Python 2 module name ("commands") instead of "subprocess".
    with pytest.raises(UnsafeInputError, match=r"refused to unpickle global '(subprocess|commands)\.Popen'"):
        safe_loads(data, "data_batch_2")
    assert not marker.exists()


def test_safe_loads_eval_inside_archive_dict(tmp_path):
    # A global nested deep inside an otherwise valid batch dict is refused just the same.
    payload = {"data": np.zeros((1, 3072), np.uint8), "labels": [_Call(eval, "1+1")]}
    path = _tar_with(tmp_path, {"test_batch": pickle.dumps(payload, protocol=2)})
    with pytest.raises(
        UnsafeInputError, match=r"^test_batch: refused to unpickle global '(__builtin__|builtins)\.eval'"
    ):
        open_source(path)


def test_safe_loads_codecs_encode_only_latin1():
    ok = pickle.dumps(b"\x00\xff\x10", protocol=2)  # Python 3 writes _codecs.encode(..., 'latin1')
    assert safe_loads(ok, "f") == b"\x00\xff\x10"
    bad = b"c_codecs\nencode\n(Vx\nVzlib_codec\ntR."
    with pytest.raises(SourceError, match="zlib_codec"):
        safe_loads(bad, "f")


@pytest.mark.parametrize("protocol", [0, 2, 3, 4, 5])
def test_safe_loads_plain_containers_and_bytearray(protocol):
    value = {"a": [1, 2.5, "x", b"\x00\xff"], "b": bytearray(b"\x01\x02"), "c": (None, True)}
    assert safe_loads(pickle.dumps(value, protocol=protocol), "f") == value


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("kind", ["array", "numpy-ints", "fortran"])
def test_numpy_labels_and_layouts_load(tmp_path, protocol, kind):
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, size=(6, 3072), dtype=np.uint8)
    labels = np.arange(6, dtype=np.int64) % 10
    if kind == "array":
        fields = {"data": data, "labels": labels}
    elif kind == "numpy-ints":
        fields = {"data": data, "labels": [np.int64(x) for x in labels]}
    else:
        fields = {"data": np.asfortranarray(data), "labels": labels.tolist()}
    path = _tar_with(tmp_path, {"test_batch": pickle.dumps(fields, protocol=protocol)})
    batch = open_source(path).take("test", 0, 6)
    np.testing.assert_array_equal(np.asarray(batch.images), synth.rows_to_hwc(data))
    np.testing.assert_array_equal(batch.labels, labels)


def test_safe_loads_garbage_is_source_error():
    with pytest.raises(SourceError, match="not a valid CIFAR pickle") as info:
        safe_loads(b"\x80\x02garbage", "data_batch_3")
    assert not isinstance(info.value, UnsafeInputError)
    assert "data_batch_3" in str(info.value)


# ---------------------------------------------------------------------------
# Hostile archives
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(synth.EVIL_MEMBER))
def test_evil_tar_refused(tmp_path, monkeypatch, kind):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    absolute_target = Path(synth.EVIL_MEMBER["absolute"])
    existed_before = absolute_target.exists()
    path = synth.write_evil_tar(tmp_path / "a" / "evil.tar.gz", kind)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(UnsafeInputError) as info:
        open_source(path)
    message = str(info.value)
    assert f"'{synth.EVIL_MEMBER[kind]}'" in message
    assert "evil.tar.gz" in message
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (tmp_path / "evil").exists() and not (tmp_path / "a" / "evil").exists()
    if not existed_before:
        assert not absolute_target.exists()


def test_evil_tar_link_message_names_target(tmp_path):
    path = synth.write_evil_tar(tmp_path / "evil.tar.gz", "symlink")
    with pytest.raises(UnsafeInputError, match="/etc/passwd"):
        open_source(path)


def test_duplicate_member_names_refused(tmp_path):
    members = _cifar10_members(tmp_path)
    items = [(f"a/{n}", d) for n, d in members.items()] + [("b/test_batch", members["test_batch"])]
    path = synth.write_tar_gz(tmp_path / "dup.tar.gz", items)
    with pytest.raises(SourceError, match="test_batch"):
        open_source(path)


# ---------------------------------------------------------------------------
# Validation of contents
# ---------------------------------------------------------------------------

_GOOD_LABELS = [i % 10 for i in range(6)]


def _batch(**fields) -> bytes:
    return pickle.dumps(fields, protocol=2)


BAD_BATCHES = {
    "dtype": (
        _batch(data=np.zeros((6, 3072), dtype=np.int16), labels=_GOOD_LABELS),
        "dtype int16",
    ),
    "shape": (_batch(data=np.zeros((6, 100), dtype=np.uint8), labels=_GOOD_LABELS), r"shape \(6, 100\)"),
    "shape-3d": (_batch(data=np.zeros((6, 32, 96), dtype=np.uint8), labels=_GOOD_LABELS), "shape"),
    "not-array": (_batch(data=[[0] * 3072] * 6, labels=_GOOD_LABELS), "expected a numpy array"),
    "label-count": (_batch(data=np.zeros((6, 3072), dtype=np.uint8), labels=[0] * 5), "5 labels for 6 images"),
    "label-range": (
        _batch(data=np.zeros((6, 3072), dtype=np.uint8), labels=[0, 1, 2, 10, 3, 4]),
        r"label 10 .*outside 0\.\.9",
    ),
    "label-negative": (
        _batch(data=np.zeros((6, 3072), dtype=np.uint8), labels=[0, -1, 2, 1, 3, 4]),
        "label -1",
    ),
    "labels-not-ints": (
        _batch(data=np.zeros((6, 3072), dtype=np.uint8), labels=["a"] * 6),
        "not a list of integers",
    ),
    "missing-data": (_batch(labels=_GOOD_LABELS), "missing key.*data"),
    "missing-labels": (_batch(data=np.zeros((6, 3072), dtype=np.uint8)), "missing key.*labels"),
    "list": (pickle.dumps([1, 2, 3], protocol=2), "expected a pickled dict, found list"),
    "garbage": (b"this is not a pickle", "not a valid CIFAR pickle"),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_python_batch(tmp_path, case):
    data, pattern = BAD_BATCHES[case]
    path = _tar_with(tmp_path, {"data_batch_2": data})
    with pytest.raises(SourceError, match=pattern) as info:
        open_source(path)
    assert type(info.value) is SourceError
    assert "data_batch_2" in str(info.value)


def test_bad_meta(tmp_path):
    path = _tar_with(tmp_path, {"batches.meta": pickle.dumps({"num_vis": 3072}, protocol=2)})
    with pytest.raises(SourceError, match="batches.meta.*label_names"):
        open_source(path)


def test_meta_with_fewer_names_rejects_high_labels(tmp_path):
    meta = pickle.dumps({"label_names": ["a", "b", "c"]}, protocol=2)
    path = _tar_with(tmp_path, {"batches.meta": meta})
    with pytest.raises(SourceError, match=r"outside 0\.\.2"):
        open_source(path)


def test_cifar100_fine_label_out_of_range(tmp_path):
    folder = synth.make_cifar100_python(tmp_path, archive=False).path
    bad = {
        "data": np.zeros((2, 3072), np.uint8),
        "fine_labels": [0, 100],
        "coarse_labels": [0, 1],
    }
    (folder / "test").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(SourceError, match=r"test: label 100 in 'fine_labels'"):
        open_source(folder, verify=False)


def test_cifar100_missing_meta(tmp_path):
    folder = synth.make_cifar100_python(tmp_path, archive=False).path
    (folder / "meta").unlink()
    # Without meta (and no data_batch_*) the folder is no longer recognised as CIFAR-100.
    with pytest.raises(SourceError, match="no dataset found"):
        open_source(folder, verify=False)


@pytest.mark.parametrize("extra", [5, -1, 3073 + 100])
def test_binary_size_not_whole_records(tmp_path, extra):
    folder = synth.make_cifar10_binary(tmp_path, archive=False).path
    batch = folder / "data_batch_3.bin"
    data = batch.read_bytes()
    batch.write_bytes(data + b"\x00" * extra if extra > 0 else data[:extra])
    with pytest.raises(SourceError, match=r"data_batch_3\.bin: \d+ bytes is not a whole number of 3073"):
        open_source(folder)


def test_binary_empty_file(tmp_path):
    folder = synth.make_cifar10_binary(tmp_path, archive=False).path
    (folder / "test_batch.bin").write_bytes(b"")
    with pytest.raises(SourceError, match=r"test_batch\.bin: 0 bytes"):
        open_source(folder)


def test_binary_label_out_of_range(tmp_path):
    folder = synth.make_cifar10_binary(tmp_path, archive=False).path
    record = bytearray((folder / "test_batch.bin").read_bytes())
    record[3073] = 10  # the label byte of the second record
    (folder / "test_batch.bin").write_bytes(bytes(record))
    with pytest.raises(SourceError, match=r"test_batch\.bin: label 10"):
        open_source(folder)


def test_cifar100_binary_size_not_whole_records(tmp_path):
    folder = synth.make_cifar100_binary(tmp_path, archive=False).path
    (folder / "train.bin").write_bytes((folder / "train.bin").read_bytes()[:-1])
    with pytest.raises(SourceError, match=r"train\.bin: .*3074"):
        open_source(folder)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.95])
def test_truncated_archive(tmp_path, keep):
    truth = synth.make_cifar10_python(tmp_path)
    synth.truncate_file(truth.path, keep)
    with pytest.raises(SourceError, match="corrupt|truncated") as info:
        open_source(truth.path)
    assert truth.path.name in str(info.value)


def test_truncated_archive_official_name_still_reports_truncation(tmp_path):
    truth = synth.make_cifar10_python(tmp_path, archive_name="cifar-10-python.tar.gz")
    synth.truncate_file(truth.path, 0.5)
    with pytest.raises(SourceError, match="corrupt|truncated") as info:
        open_source(truth.path, verify=False)
    assert not isinstance(info.value, ChecksumError)


@pytest.mark.parametrize("content", [b"just some text\n" * 50, b"", b"\x1f\x8b\x08\x00garbage"])
def test_not_an_archive(tmp_path, content):
    path = tmp_path / "notes.tar.gz"
    path.write_bytes(content)
    with pytest.raises(SourceError) as info:
        open_source(path)
    assert "notes.tar.gz" in str(info.value)


def test_archive_without_cifar_members(tmp_path):
    path = synth.write_tar_gz(tmp_path / "other.tar.gz", {"x/readme.txt": b"hello"})
    with pytest.raises(SourceError, match="not a CIFAR archive"):
        open_source(path)


def test_nonexistent_path(tmp_path):
    missing = tmp_path / "nowhere" / "cifar.tar.gz"
    with pytest.raises(SourceError, match="no such file") as info:
        open_source(missing)
    assert str(missing) in str(info.value)


@pytest.mark.parametrize("populate", ["empty", "text", "empty-class-dirs"])
def test_folder_without_dataset(tmp_path, populate):
    folder = tmp_path / "stuff"
    folder.mkdir()
    if populate == "text":
        (folder / "notes.txt").write_text("hello")
    elif populate == "empty-class-dirs":
        (folder / "train" / "cat").mkdir(parents=True)
        (folder / "train" / "cat" / "notes.txt").write_text("not an image")
    with pytest.raises(SourceError, match="no dataset found") as info:
        open_source(folder)
    assert str(folder) in str(info.value)


# ---------------------------------------------------------------------------
# Checksums
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "maker,official",
    [
        (synth.make_cifar10_python, "cifar-10-python.tar.gz"),
        (synth.make_cifar10_binary, "cifar-10-binary.tar.gz"),
        (synth.make_cifar100_python, "cifar-100-python.tar.gz"),
        (synth.make_cifar100_binary, "cifar-100-binary.tar.gz"),
    ],
)
def test_official_name_wrong_checksum(tmp_path, maker, official):
    truth = maker(tmp_path, archive_name=official)
    assert truth.path.name == official
    with pytest.raises(ChecksumError, match="verify=False") as info:
        open_source(truth.path)
    assert official in str(info.value) and "--no-verify" not in str(info.value)
    dataset = open_source(truth.path, verify=False)
    assert dataset.verification.startswith("NOT verified")
    assert_matches(dataset, truth, coarse=dataset.name == "cifar100")


def test_official_name_found_in_parent_folder_is_checked(tmp_path):
    synth.make_cifar10_python(tmp_path / "dl", archive_name="cifar-10-python.tar.gz")
    with pytest.raises(ChecksumError):
        open_source(tmp_path / "dl")
    assert open_source(tmp_path / "dl", verify=False).name == "cifar10"


def test_unknown_name_not_verified(tmp_path):
    truth = synth.make_cifar10_python(tmp_path, archive_name="whatever.tgz")
    dataset = open_source(truth.path)
    assert dataset.verification.startswith("not verified")
    assert "whatever.tgz" in dataset.verification


def test_sample_is_verified():
    dataset = open_source(discover.SAMPLE_PATH)
    assert dataset.verification.startswith("verified")


# ---------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------


@pytest.fixture
def places(tmp_path, monkeypatch):
    monkeypatch.delenv(discover.ENV_VAR, raising=False)
    cwd = tmp_path / "somewhere" / "cwd"
    home = tmp_path / "home"
    cwd.mkdir(parents=True)
    home.mkdir()
    return cwd, home


def test_discover_env_var(tmp_path, monkeypatch, places):
    cwd, home = places
    target = synth.make_cifar10_binary(tmp_path / "elsewhere").path
    synth.make_cifar10_python(cwd / "data", archive=False)  # would be found without the variable
    monkeypatch.setenv(discover.ENV_VAR, str(target))
    found = discover.find_dataset(cwd, home)
    assert found.path == target
    assert found.is_sample is False


def test_discover_env_var_missing(tmp_path, monkeypatch, places):
    cwd, home = places
    missing = tmp_path / "not-here"
    monkeypatch.setenv(discover.ENV_VAR, str(missing))
    with pytest.raises(SourceError, match=discover.ENV_VAR) as info:
        discover.find_dataset(cwd, home)
    assert str(missing) in str(info.value)


def test_discover_falls_back_to_sample(places):
    cwd, home = places
    found = discover.find_dataset(cwd, home)
    assert found.is_sample is True
    assert found.path == discover.SAMPLE_PATH
    assert found.path.is_file()
    assert any("unset" in s for s in found.searched)
    assert str(cwd / "data") in found.searched


def test_discover_data_folder(places):
    cwd, home = places
    truth = synth.make_cifar10_python(cwd / "data", archive=False)
    synth.make_cifar10_python(home / ".keras" / "datasets", archive=False)  # lower priority
    found = discover.find_dataset(cwd, home)
    assert found.path == cwd / "data" / "cifar-10-batches-py" == truth.path
    assert found.is_sample is False


def test_discover_data_archive(places):
    cwd, home = places
    truth = synth.make_cifar100_python(cwd / "data", archive_name="cifar-100-python.tar.gz")
    found = discover.find_dataset(cwd, home)
    assert found.path == truth.path


def test_discover_keras_cache(places):
    cwd, home = places
    truth = synth.make_cifar10_python(home / ".keras" / "datasets", archive=False)
    found = discover.find_dataset(cwd, home)
    assert found.path == home / ".keras" / "datasets" / "cifar-10-batches-py" == truth.path
    assert found.is_sample is False
    assert open_source(found.path, verify=False).count("train") == 30


def test_discover_cwd_and_parent(places):
    cwd, home = places
    truth = synth.make_cifar10_binary(cwd.parent, archive=False)
    assert discover.find_dataset(cwd, home).path == truth.path
    here = synth.make_cifar10_python(cwd, archive=False)
    assert discover.find_dataset(cwd, home).path == here.path


# ---------------------------------------------------------------------------
# The bundled sample
# ---------------------------------------------------------------------------


def test_bundled_sample_opens():
    dataset = open_source(discover.SAMPLE_PATH)
    assert dataset.name == "cifar10"
    assert dataset.splits == ("train", "test")
    assert dataset.count("train") == 200 and dataset.count("test") == 100
    assert dataset.class_names == tuple(synth.CIFAR10_CLASSES)
    assert dataset.class_counts("train") == {name: 20 for name in synth.CIFAR10_CLASSES}
    assert dataset.class_counts("test") == {name: 10 for name in synth.CIFAR10_CLASSES}
    images = _all_images(dataset, "train")
    assert images.shape == (200, 32, 32, 3) and images.dtype == np.uint8
    assert images.std() > 10  # real photos, not a blank array
