"""Checks of the synthetic dataset builders in ``synth.py``."""

from __future__ import annotations

import gzip
import pickle
import pickletools
import tarfile

import numpy as np
import pytest

try:
    import synth
except ImportError:  # tests/ imported as a package
    from tests import synth


def _tar_files(path) -> dict[str, bytes]:
    out = {}
    with tarfile.open(path, "r:gz") as tar:
        for m in tar.getmembers():
            if m.isfile():
                out[m.name] = tar.extractfile(m).read()
    return out


def _opcodes(data: bytes) -> set[str]:
    return {op.name for op, _, _ in pickletools.genops(data)}


def test_py2_pickle_roundtrip_and_globals():
    arr = np.random.default_rng(1).integers(0, 256, size=(4, 3072), dtype=np.uint8)
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [1, 2, 3, 4],
        b"data": arr,
        b"filenames": [b"a.png", b"b.png", b"c.png", b"d.png"],
    }
    raw = synth.pickle_py2(batch)
    assert raw[:2] == b"\x80\x02"
    assert b"numpy.core.multiarray\n_reconstruct" in raw
    assert b"cnumpy\nndarray\n" in raw and b"cnumpy\ndtype\n" in raw
    ops = _opcodes(raw)
    assert "SHORT_BINSTRING" in ops and "BINSTRING" in ops  # 12288-byte pixel buffer
    assert not ops & {"BINBYTES", "SHORT_BINBYTES", "BINUNICODE", "SHORT_BINUNICODE"}

    back = pickle.loads(raw, encoding="bytes")
    assert back[b"batch_label"] == b"training batch 1 of 5"
    assert back[b"labels"] == [1, 2, 3, 4]
    assert back[b"filenames"][0] == b"a.png"
    assert back[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(back[b"data"], arr)
    # Python 2 strings cannot be decoded as ASCII text without an encoding.
    with pytest.raises(UnicodeDecodeError):
        pickle.loads(raw)


def test_cifar10_python_tar_layout_and_pixels(tmp_path):
    ds = synth.make_cifar10_python(tmp_path, per_batch=3, test=4)
    assert ds.path == tmp_path / "cifar10-synth-python.tar.gz"
    with tarfile.open(ds.path, "r:gz") as tar:
        names = [m.name for m in tar.getmembers() if m.isfile()]
    assert names == [f"cifar-10-batches-py/{n}" for n in synth.CIFAR10_PY_TAR_ORDER]

    files = _tar_files(ds.path)
    train = ds.splits["train"]
    assert train.images.shape == (15, 32, 32, 3) and train.labels.dtype == np.int64
    assert set(train.labels.tolist()) == set(range(10))
    rows, labels, fnames = [], [], []
    for b in range(1, 6):
        d = pickle.loads(files[f"cifar-10-batches-py/data_batch_{b}"], encoding="bytes")
        assert d[b"batch_label"] == f"training batch {b} of 5".encode()
        rows.append(d[b"data"])
        labels += d[b"labels"]
        fnames += [f.decode() for f in d[b"filenames"]]
    decoded = np.concatenate(rows).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(decoded, train.images)
    assert labels == train.labels.tolist() and fnames == train.filenames

    t = pickle.loads(files["cifar-10-batches-py/test_batch"], encoding="bytes")
    test_img = t[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(test_img, ds.splits["test"].images)

    meta = pickle.loads(files["cifar-10-batches-py/batches.meta"], encoding="bytes")
    assert [n.decode() for n in meta[b"label_names"]] == ds.class_names
    assert meta[b"num_cases_per_batch"] == 3 and meta[b"num_vis"] == 3072


def test_builders_are_deterministic(tmp_path):
    a = synth.make_cifar10_python(tmp_path / "a")
    b = synth.make_cifar10_python(tmp_path / "b")
    c = synth.make_cifar10_python(tmp_path / "c", seed=1)
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.path.read_bytes() != c.path.read_bytes()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("str_keys", [False, True])
def test_cifar10_python_py3_flavour(tmp_path, protocol, str_keys):
    ds = synth.make_cifar10_python(tmp_path, flavour="py3", protocol=protocol, str_keys=str_keys, archive=False)
    assert ds.path == tmp_path / "cifar-10-batches-py" and ds.path.is_dir()
    d = pickle.loads((ds.path / "data_batch_2").read_bytes())
    key = "data" if str_keys else b"data"
    imgs = d[key].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(imgs, ds.splits["train"].images[6:12])


def test_cifar100_python(tmp_path):
    ds = synth.make_cifar100_python(tmp_path, train=120)
    files = _tar_files(ds.path)
    assert set(files) == {f"cifar-100-python/{n}" for n in ("file.txt~", "train", "test", "meta")}
    tr = pickle.loads(files["cifar-100-python/train"], encoding="bytes")
    truth = ds.splits["train"]
    assert set(truth.labels.tolist()) == set(range(100))
    assert tr[b"fine_labels"] == truth.labels.tolist()
    assert tr[b"coarse_labels"] == truth.coarse_labels.tolist()
    np.testing.assert_array_equal(synth.rows_to_hwc(tr[b"data"]), truth.images)
    meta = pickle.loads(files["cifar-100-python/meta"], encoding="bytes")
    assert len(meta[b"fine_label_names"]) == 100 and len(meta[b"coarse_label_names"]) == 20
    # every fine class belongs to exactly one superclass, five per superclass
    assert np.bincount(synth.CIFAR100_FINE_TO_COARSE, minlength=20).tolist() == [5] * 20


def test_cifar10_binary_record_layout(tmp_path):
    ds = synth.make_cifar10_binary(tmp_path)
    files = _tar_files(ds.path)
    data = files["cifar-10-batches-bin/data_batch_1.bin"]
    assert len(data) == 6 * 3073
    truth = ds.splits["train"]
    assert data[0] == truth.labels[0]
    first = np.frombuffer(data[1:3073], dtype=np.uint8).reshape(3, 32, 32).transpose(1, 2, 0)
    np.testing.assert_array_equal(first, truth.images[0])
    last = np.frombuffer(files["cifar-10-batches-bin/data_batch_5.bin"], np.uint8).reshape(-1, 3073)
    assert last[-1, 0] == truth.labels[-1]
    np.testing.assert_array_equal(synth.rows_to_hwc(last[:, 1:]), truth.images[-6:])
    meta = files["cifar-10-batches-bin/batches.meta.txt"].decode()
    assert meta.endswith("\n\n") and meta.split() == ds.class_names


def test_cifar100_binary_coarse_before_fine(tmp_path):
    ds = synth.make_cifar100_binary(tmp_path, archive=False)
    recs = np.frombuffer((ds.path / "test.bin").read_bytes(), np.uint8).reshape(-1, 3074)
    truth = ds.splits["test"]
    np.testing.assert_array_equal(recs[:, 0], truth.coarse_labels)
    np.testing.assert_array_equal(recs[:, 1], truth.labels)
    np.testing.assert_array_equal(synth.rows_to_hwc(recs[:, 2:]), truth.images)
    fine = (ds.path / "fine_label_names.txt").read_text().split()
    assert fine == ds.class_names and len(fine) == 100


def test_image_folder(tmp_path):
    from PIL import Image

    ds = synth.make_image_folder(tmp_path / "imgs", classes=("dog", "cat"))
    assert ds.class_names == ["cat", "dog"]
    train = ds.splits["train"]
    assert train.filenames[:2] == ["cat/cat_000.png", "dog/dog_000.png"] and train.labels.tolist() == [0, 1] * 3
    assert {im.shape for im in train.images} == {(40, 30, 3), (17, 23, 3)}
    for rel, img in zip(train.filenames, train.images):
        with Image.open(ds.path / "train" / rel) as im:
            np.testing.assert_array_equal(np.asarray(im), img)
    assert len(ds.splits["test"].images) == 4


@pytest.mark.parametrize("kind", sorted(synth.EVIL_MEMBER))
def test_evil_tars_hold_offending_member(tmp_path, kind):
    path = synth.write_evil_tar(tmp_path / f"{kind}.tar.gz", kind)
    with tarfile.open(path, "r:gz") as tar:
        members = {m.name: m for m in tar.getmembers()}
    m = members[synth.EVIL_MEMBER[kind]]
    checks = {
        "absolute": lambda: m.isfile() and m.name.startswith("/"),
        "dotdot": lambda: m.isfile() and ".." in m.name.split("/"),
        "symlink": lambda: m.issym() and m.linkname == "/etc/passwd",
        "hardlink": lambda: m.islnk() and m.linkname == "/etc/passwd",
        "device": lambda: m.ischr(),
    }
    assert checks[kind]()
    assert "cifar-10-batches-py/test_batch" in members


def test_malicious_pickle_is_inert_when_built(tmp_path):
    marker = tmp_path / "pwned"
    raw = synth.malicious_pickle(marker)
    assert b"system" in raw and str(marker).encode() in raw
    assert not marker.exists()


def test_write_tar_gz_deterministic_and_truncate(tmp_path):
    p1 = synth.write_tar_gz(tmp_path / "a.tar.gz", {"x/a": b"1", "x/b": b"22"})
    p2 = synth.write_tar_gz(tmp_path / "b.tar.gz", [("x/a", b"1"), ("x/b", b"22")])
    assert p1.read_bytes() == p2.read_bytes()
    with tarfile.open(p1, "r:gz") as tar:
        assert [(m.name, m.mtime) for m in tar.getmembers()] == [("x/a", 0), ("x/b", 0)]
    size = p1.stat().st_size
    synth.truncate_file(p1, 0.5)
    assert p1.stat().st_size == size // 2
    with pytest.raises((EOFError, gzip.BadGzipFile, tarfile.TarError, OSError)):
        with tarfile.open(p1, "r:gz") as tar:
            tar.getmembers()
