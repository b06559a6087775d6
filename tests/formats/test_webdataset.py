"""WebDataset exports: tar shards the webdataset library and Hugging Face's loader read exactly,
DALI's index of each shard, cifarkit reading them back, the same bytes on every run, and crafted
shards refused in one line before anything is decoded or written."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cifarkit
from cifarkit.cli import app
from cifarkit.errors import SourceError, UsageError
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.formats.webdataset_read import describe, samples
from cifarkit.metadata.export_info import read_export_info
from cifarkit.sources import open_source

runner = CliRunner()


def _export(source: Path, out: Path, **options) -> Path:
    export_dataset(open_source(source), out, ExportOptions(format="webdataset", workers=1, quiet=True, **options))
    return out


@pytest.fixture(scope="module")
def cifar10(cifar10_tar, tmp_path_factory) -> Path:
    return _export(cifar10_tar.path, tmp_path_factory.mktemp("wds") / "c10", shards=3)


@pytest.fixture(scope="module")
def cifar100(cifar100_tar, tmp_path_factory) -> Path:
    return _export(cifar100_tar.path, tmp_path_factory.mktemp("wds") / "c100", shards=2)


def _info(out: Path) -> dict:
    return json.loads((out / "cifarkit_info.json").read_text())


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: "), result.output
    return lines[0]


# --- what is written, read by the clients -------------------------------------------------------


def test_shards_are_named_by_the_brace_pattern_the_cli_prints(cifar10_tar, tmp_path):
    out = tmp_path / "wds"
    args = ["export", "-f", "webdataset", "-s", str(cifar10_tar.path), "-o", str(out), "--shards", "3", "-q"]
    result = runner.invoke(app, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    info = _info(out)
    train = info["splits"]["train"]
    assert train["files"] == [f"train/cifar10-train-{i:06d}.tar" for i in range(3)]
    assert train["indexes"] == [f"train/cifar10-train-{i:06d}.idx" for i in range(3)]
    assert train["pattern"] == "train/cifar10-train-{000000..000002}.tar" and train["shard_lengths"] == [10, 10, 10]
    assert info["webdataset"] == {"members": ["png", "cls", "json"], "image_shape": [32, 32, 3]}
    assert f"train: {out}/train/cifar10-train-{{000000..000002}}.tar" in result.output
    assert f"test:  {out}/test/cifar10-test-{{000000..000002}}.tar" in result.output
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(
        Path(f).name for f in train["files"] + train["indexes"]
    )


def test_the_webdataset_library_reads_every_pixel_label_and_id(cifar10, cifar10_tar):
    import webdataset as wds

    for split, truth in cifar10_tar.splits.items():
        url = str(cifar10 / _info(cifar10)["splits"][split]["pattern"])
        pipeline = wds.WebDataset(url, shardshuffle=False).decode("rgb8").to_tuple("__key__", "png", "cls", "json")
        got = list(pipeline)
        assert [key for key, *_ in got] == [f"{split}_{i:05d}" for i in range(len(truth))]
        np.testing.assert_array_equal(np.stack([image for _, image, _, _ in got]), truth.images)
        assert [label for *_, label, _ in got] == truth.labels.tolist()
        names = json.loads((cifar10 / "cifarkit_info.json").read_text())["class_names"]
        for key, _, label, meta in got:
            assert meta == {"id": key, "label": label, "class_name": names[label]}


def test_hugging_face_loads_the_shards_with_exact_pixels_and_labels(cifar100, cifar100_tar, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets

    files = {split: str(cifar100 / split / "*.tar") for split in ("train", "test")}
    loaded = datasets.load_dataset("webdataset", data_files=files, cache_dir=str(tmp_path / "hf"))
    for split, truth in cifar100_tar.splits.items():
        rows = loaded[split]
        assert isinstance(rows.features["png"], datasets.Image)
        np.testing.assert_array_equal(np.stack([np.asarray(image) for image in rows["png"]]), truth.images)
        assert rows["cls"] == truth.labels.tolist()
        assert [meta["coarse_label"] for meta in rows["json"]] == truth.coarse_labels.tolist()
        assert rows["__key__"] == [f"{split}_{i:05d}" for i in range(len(truth))]


def test_each_dali_index_gives_the_tar_members_offsets_and_sizes(cifar10):
    for shard in sorted((cifar10 / "train").glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = [(m.name.split(".", 1)[1], m.offset_data, m.size, m.name) for m in tar.getmembers()]
        lines = shard.with_suffix(".idx").read_text().splitlines()
        assert lines[0] == f"v1.2 {len(members) // 3}"
        parsed = []
        for line in lines[1:]:
            fields = line.split(" ")
            assert len(fields) == 12  # three components of <ext> <offset> <size> <name>
            parsed += [(ext, int(at), int(size), name) for ext, at, size, name in zip(*[iter(fields)] * 4)]
        assert parsed == members
        assert all(offset % 512 == 0 for _, offset, _, _ in parsed)  # DALI requires block offsets
        data = shard.read_bytes()
        assert all(data[at : at + size] for _, at, size, _ in parsed)


def test_the_readme_block_reads_an_export_as_it_says(cifar10_tar, tmp_path, monkeypatch):
    """README's "WebDataset / PyTorch" lines, run as written (the export given a source, and ten
    shards so that the synthetic train split has the pattern real CIFAR-10's has)."""
    import importlib.util

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("    # WebDataset / PyTorch", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in block.splitlines()[1:]]
    monkeypatch.chdir(tmp_path)
    command = next(line for line in lines if line.startswith("cifarkit export")).split()[1:]
    result = runner.invoke(app, [*command, "--source", str(cifar10_tar.path), "--shards", "10", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "train: cifar10-wds/train/cifar10-train-{000000..000009}.tar" in result.output
    torch = importlib.util.find_spec("torch") is not None  # the DataLoader line, where PyTorch is installed
    code = [line for line in lines if not line.startswith(("cifarkit", "#")) and (torch or "torch." not in line)]
    namespace: dict = {}
    exec("\n".join(code), namespace)
    got = list(namespace["train"])
    truth = cifar10_tar.splits["train"]
    np.testing.assert_array_equal(np.stack([image for image, _ in got]), truth.images)
    assert [label for _, label in got] == truth.labels.tolist()


# --- cifarkit reading them back -----------------------------------------------------------------


def test_cifarkit_reads_the_export_back_exactly(cifar100, cifar100_tar):
    result = runner.invoke(app, ["info", str(cifar100)])
    assert result.exit_code == 0 and "cifarkit WebDataset export" in result.output
    for split, truth in cifar100_tar.splits.items():
        x, y = cifarkit.load_numpy(cifar100, split)
        np.testing.assert_array_equal(x, truth.images)
        np.testing.assert_array_equal(y, truth.labels)
        _, coarse = cifarkit.load_numpy(cifar100, split, label="coarse_label")
        np.testing.assert_array_equal(coarse, truth.coarse_labels)
    x, y = cifarkit.load_numpy(cifar100, "train[5:17]")  # from the second shard on: the first is skipped
    np.testing.assert_array_equal(x, cifar100_tar.splits["train"].images[5:17])
    rows = list(cifarkit.load(cifar100, "test[3:5]", as_supervised=False).as_numpy_iterator())
    assert [r["id"] for r in rows] == [b"test_00003", b"test_00004"]
    assert [r["coarse_label"] for r in rows] == cifar100_tar.splits["test"].coarse_labels[3:5].tolist()


def test_an_export_from_a_webdataset_export_is_pixel_exact(cifar10, cifar10_tar, tmp_path):
    again = tmp_path / "again"
    export_dataset(open_source(cifar10), again, ExportOptions(format="tfrecord", workers=1, quiet=True))
    x, y = cifarkit.load_numpy(again, "train")
    np.testing.assert_array_equal(x, cifar10_tar.splits["train"].images)
    np.testing.assert_array_equal(y, cifar10_tar.splits["train"].labels)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_a_photo_tree_keeps_its_files_bytes_and_reads_back(tmp_path, ext):
    import synth
    import webdataset as wds

    tree = synth.make_image_folder(tmp_path / "photos", ext=ext, sizes=((40, 30), (17, 23)))
    out = _export(tree.path, tmp_path / "wds")
    assert _info(out)["webdataset"] == {"members": [ext, "cls", "json"], "image_shape": None}
    train = tree.splits["train"]
    with tarfile.open(next((out / "train").glob("*.tar"))) as tar:
        first = tar.extractfile(f"train_00000.{ext}").read()
    assert first == (tree.path / "train" / train.filenames[0]).read_bytes()  # the file itself
    got = list(wds.WebDataset(str(out / "train" / "photos-train-000000.tar"), shardshuffle=False).decode("rgb8"))
    for sample, image, label in zip(got, train.images, train.labels):
        np.testing.assert_array_equal(sample[ext], image)
        assert sample["cls"] == label
    read = open_source(out).batches["train"][0]
    assert all(np.array_equal(a, b) for a, b in zip(read.images, train.images))
    x, y = cifarkit.load_numpy(out, "train", image_size=16)
    assert x.shape == (len(train), 16, 16, 3) and y.tolist() == train.labels.tolist()


def test_a_mixed_photo_tree_is_one_extension(tmp_path):
    import synth

    tree = synth.make_image_folder(tmp_path / "photos", ext="jpg").path
    shutil.copy(next((tree / "train" / "cat").glob("*.jpg")), tree / "train" / "cat" / "zz.png")  # a JPEG named .png
    synth.make_image_folder(tmp_path / "pngs", ext="png")
    shutil.copy(next((tmp_path / "pngs" / "test" / "dog").glob("*.png")), tree / "test" / "dog" / "zz.png")
    out = _export(tree, tmp_path / "wds")
    assert _info(out)["webdataset"]["members"][0] == "png"
    for split in ("train", "test"):
        with tarfile.open(next((out / split).glob("*.tar"))) as tar:
            assert {m.name.split(".", 1)[1] for m in tar.getmembers()} == {"png", "cls", "json"}
    truth = open_source(tree)
    back = open_source(out)
    for split in ("train", "test"):
        pairs = zip(truth.take(split, 0, truth.count(split)).images, back.batches[split][0].images)
        assert all(np.array_equal(a, b) for a, b in pairs)


# --- the same bytes, and the options --------------------------------------------------------------


def test_member_headers_are_tarfiles_own_byte_for_byte():
    import random

    from cifarkit.formats.codecs.tar import member_header, tarfile_header

    rng = random.Random(0)
    for _ in range(2000):
        name = "".join(rng.choice("az09_-.") for _ in range(rng.randrange(1, 101)))
        size = rng.choice([0, 1, 511, 512, 513, rng.randrange(8**11)])
        assert member_header(name, size) == tarfile_header(name, size), (name, size)
    header = member_header("train_00042.png", 2500)
    info = tarfile.TarInfo.frombuf(header, "ascii", "strict")
    assert (info.name, info.size, info.mtime, info.uid, info.gid, info.uname, info.mode) == (
        "train_00042.png",
        2500,
        946_684_800,
        0,
        0,
        "",
        0o644,
    )


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_rerun_and_a_resumed_run_write_the_same_bytes(cifar10_tar, cifar10, tmp_path):
    again = _export(cifar10_tar.path, tmp_path / "again", shards=3)
    first, second = _files(cifar10), _files(again)
    first.pop(".cifarkit.lock"), second.pop(".cifarkit.lock")
    assert first == second
    shard = again / "train" / "cifar10-train-000001.tar"
    shard.unlink()  # as a kill would have left it: the shard never renamed into place
    (again / "cifarkit_info.json").unlink()
    _export(cifar10_tar.path, again, shards=3)
    assert _files(again).items() >= first.items()


def test_encoding_jpeg_writes_jpg_members_and_other_encodings_are_refused(cifar10_tar, tmp_path):
    out = _export(cifar10_tar.path, tmp_path / "jpeg", encoding="jpeg", quality=90)
    assert _info(out)["webdataset"]["members"][0] == "jpg"
    x, _ = cifarkit.load_numpy(out, "test")
    assert x.shape == (10, 32, 32, 3)
    with pytest.raises(UsageError, match="--format webdataset writes image files"):
        ExportOptions(format="webdataset", encoding="raw")
    with pytest.raises(UsageError, match=r"--quality is for JPEG images \(--encoding jpeg\)"):
        ExportOptions(format="webdataset", quality=80)


def _arrays(tmp_path: Path, splits: dict[str, int]):
    from cifarkit.sources.labelled import Batch, LabelledImages

    rng = np.random.default_rng(0)
    batches = {}
    for split, n in splits.items():
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        batches[split] = [Batch(split, images, np.arange(n, dtype=np.int64) % 10, ["x"] * n)]
    return LabelledImages("cifar10", "synthetic", tmp_path, tuple("abcdefghij"), batches)


@pytest.mark.parametrize("split", ["test.v2", "my test", "a" * 65])
def test_a_split_name_that_cannot_start_a_key_is_refused_before_writing(tmp_path, split):
    out = tmp_path / "wds"
    with pytest.raises(SourceError, match=f"the split name '{split}' cannot start a WebDataset key"):
        export_dataset(_arrays(tmp_path, {"train": 4, split: 2}), out, ExportOptions(format="webdataset", workers=1))
    assert not out.exists()


# --- crafted shards ------------------------------------------------------------------------------


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    raw = io.BytesIO()
    for info, data in members:
        raw.write(info.tobuf(tarfile.GNU_FORMAT))
        raw.write(data + bytes(-len(data) % 512))
    return raw.getvalue() + bytes(1024)


def _member(name: str, data: bytes, **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def _sample(png: bytes, label: bytes = b"3", key: str = "train_00000", json_: bytes | None = None):
    meta = json_ or json.dumps({"id": key, "label": 3, "class_name": "cat"}).encode()
    return [_member(f"{key}.png", png), _member(f"{key}.cls", label), _member(f"{key}.json", meta)]


def _crafted(kind: str, png: bytes) -> tuple[bytes, str]:
    """A train shard with one hostile member, and what the refusal says of it."""
    if kind == "dotdot":
        return _tar([_member("../x.png", png)]), "member name '../x.png' is not a plain file name"
    if kind == "symlink":
        link = _member("train_00000.png", b"", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        return _tar([link]), "member 'train_00000.png' is a symbolic link, not a regular file"
    if kind == "huge":
        info, _ = _member("train_00000.png", b"")
        info.size = 10 << 30
        return info.tobuf(tarfile.GNU_FORMAT) + png, "member 'train_00000.png' declares 10,737,418,240 bytes"
    if kind == "two-dots":
        members = _sample(png)
        members[0] = _member("train_00000.x.png", png)
        return _tar(members), "member 'train_00000.x.png' has a key with a dot"
    if kind == "cls-not-a-number":
        return _tar(_sample(png, label=b"cat")), "member 'train_00000.cls' holds b'cat', not a label"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["dotdot", "symlink", "huge", "two-dots", "cls-not-a-number"])
def test_a_crafted_shard_is_refused_in_one_line_and_nothing_is_written(cifar10, tmp_path, kind):
    folder = tmp_path / "case" / "data"
    shutil.copytree(cifar10, folder, ignore=shutil.ignore_patterns(".cifarkit.lock"))
    shard = folder / "train" / "cifar10-train-000000.tar"
    with tarfile.open(shard) as tar:
        png = tar.extractfile("train_00000.png").read()
    crafted, why = _crafted(kind, png)
    shard.write_bytes(crafted)
    outside = tmp_path / "case" / "keep.txt"
    outside.write_text("the user's file\n")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert why in _error_line(runner.invoke(app, ["info", str(folder)]))
    out = tmp_path / "case" / "out"
    line = _error_line(runner.invoke(app, ["export", "-f", "png", "-s", str(folder), "-o", str(out), "-q"]))
    assert line.startswith(f"cifarkit: error: {shard}: ") and why in line
    with pytest.raises(SourceError, match=why.replace("(", r"\(")):
        cifarkit.load_numpy(folder, "train")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written, out included
    assert outside.read_text() == "the user's file\n" and not (folder / "x.png").exists()


def test_a_sample_whose_json_disagrees_with_its_label_is_refused(cifar10, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(cifar10, folder, ignore=shutil.ignore_patterns(".cifarkit.lock"))
    shard = folder / "train" / "cifar10-train-000000.tar"
    with tarfile.open(shard) as tar:
        png = tar.extractfile("train_00000.png").read()
        label = tar.extractfile("train_00000.cls").read()
    wrong = json.dumps({"id": "train_00000", "label": (int(label) + 1) % 10, "class_name": "cat"}).encode()
    shard.write_bytes(_tar(_sample(png, label, json_=wrong)))
    assert "member 'train_00000.json' does not agree with its key" in _error_line(
        runner.invoke(app, ["info", str(folder)])
    )


def test_reading_holds_one_sample_at_a_time_not_the_split(tmp_path):
    source = _arrays(tmp_path, {"train": 400})  # 1.2 MB of pixels, 1.3 MB of PNG
    out = tmp_path / "wds"
    export_dataset(source, out, ExportOptions(format="webdataset", shards=1, workers=1, quiet=True))
    shards = describe(out, read_export_info(out))
    tracemalloc.start()
    count = sum(1 for _ in samples(shards, "train"))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 400
    assert peak < 200_000, peak  # a sample is ~3 KB of PNG and 3 KB of pixels; the shard is 2.6 MB
