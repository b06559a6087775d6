"""Parquet exports in Hugging Face's layout: read by ``datasets`` itself, by pandas and pyarrow, and
by cifarkit (every command's way in), byte-identical on a re-run; crafted files refused in one line."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import synth
from typer.testing import CliRunner

from cifarkit import data
from cifarkit.cli import app
from cifarkit.errors import SourceError, UnsafeInputError, UsageError
from cifarkit.formats import parquet_layout as layout
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import open_source

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
# datasets looks nothing up on the Hub for a local folder; offline, it cannot try.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def _export(source: Path, out: Path, **options) -> Path:
    export_dataset(open_source(source), out, ExportOptions(format="parquet", workers=1, quiet=True, **options))
    return out


@pytest.fixture(scope="module")
def c10(cifar10_tar, tmp_path_factory) -> Path:
    return _export(cifar10_tar.path, tmp_path_factory.mktemp("pq") / "c10", shards=2)


@pytest.fixture(scope="module")
def c100(cifar100_tar, tmp_path_factory) -> Path:
    return _export(cifar100_tar.path, tmp_path_factory.mktemp("pq") / "c100")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    truth = synth.make_image_folder(tmp_path_factory.mktemp("photos") / "tree", sizes=((40, 30), (17, 23)))
    return truth, _export(truth.path, tmp_path_factory.mktemp("pq") / "photos")


def _hf(tmp_path: Path):
    return pytest.importorskip("datasets"), str(tmp_path / "hf-cache")


# --- Hugging Face, pandas, pyarrow -------------------------------------------------------------


def test_the_files_are_in_hugging_face_s_sharded_layout(c10):
    files = sorted(str(p.relative_to(c10)) for p in (c10 / "data").iterdir())
    assert files == [
        "data/test-00000-of-00002.parquet",
        "data/test-00001-of-00002.parquet",
        "data/train-00000-of-00002.parquet",
        "data/train-00001-of-00002.parquet",
    ]
    info = json.loads((c10 / "cifarkit_info.json").read_text())
    assert info["format"] == "parquet" and info["splits"]["train"]["files"] == files[2:]


@pytest.mark.parametrize("how", ["parquet builder", "folder"])
def test_datasets_load_dataset_returns_image_and_class_label_features_with_exact_pixels(
    c10, cifar10_tar, tmp_path, how
):
    datasets, cache = _hf(tmp_path)
    if how == "folder":
        loaded = datasets.load_dataset(str(c10), cache_dir=cache)
    else:
        loaded = datasets.load_dataset("parquet", data_dir=str(c10), cache_dir=cache)
    assert set(loaded) == {"train", "test"}
    for split, truth in cifar10_tar.splits.items():
        rows = loaded[split]
        assert isinstance(rows.features["image"], datasets.Image)
        assert isinstance(rows.features["label"], datasets.ClassLabel)
        assert rows.features["label"].names == list(cifar10_tar.class_names)
        assert len(rows) == len(truth.labels)
        for i, row in enumerate(rows):
            np.testing.assert_array_equal(np.asarray(row["image"]), truth.images[i])
            assert row["label"] == truth.labels[i] and row["id"] == f"{split}_{i:05d}"


def test_cifar100_coarse_labels_are_a_class_label_too(c100, cifar100_tar, tmp_path):
    datasets, cache = _hf(tmp_path)
    rows = datasets.load_dataset(str(c100), cache_dir=cache)["train"]
    truth = cifar100_tar.splits["train"]
    assert rows.features["coarse_label"].names == list(cifar100_tar.coarse_class_names)
    assert rows["coarse_label"] == truth.coarse_labels.tolist() and rows["label"] == truth.labels.tolist()
    np.testing.assert_array_equal(np.stack([np.asarray(im) for im in rows["image"]]), truth.images)


def test_a_photo_tree_keeps_each_file_s_own_bytes_and_sizes(photos, tmp_path):
    truth, out = photos
    datasets, cache = _hf(tmp_path)
    loaded = datasets.load_dataset(str(out), cache_dir=cache)
    for split, expected in truth.splits.items():
        assert loaded[split].features["label"].names == ["cat", "dog"]
        for row, image in zip(loaded[split], expected.images):
            np.testing.assert_array_equal(np.asarray(row["image"]), image)
        # --encoding auto: a PNG file's bytes are stored unchanged; the path is not stored at all
        stored = pq.read_table(out / f"data/{split}-00000-of-00001.parquet").column("image").to_pylist()
        assert [r["bytes"] for r in stored] == [(truth.path / split / n).read_bytes() for n in expected.filenames]
        assert {r["path"] for r in stored} == {None}


def test_pandas_and_pyarrow_see_named_columns(c100, cifar100_tar):
    pd = pytest.importorskip("pandas")
    frame = pd.read_parquet(c100 / "data" / "test-00000-of-00001.parquet")
    assert list(frame.columns) == ["image", "label", "coarse_label", "id"]
    assert frame["label"].tolist() == cifar100_tar.splits["test"].labels.tolist()
    table = pq.read_table(c100 / "data")
    assert table.schema.field("image").type == pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["label"] == {"names": list(cifar100_tar.class_names), "_type": "ClassLabel"}
    assert features["image"] == {"_type": "Image"} and table.num_rows == 34


README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_s_hugging_face_lines_run(cifar10_tar, tmp_path, monkeypatch):
    """README's "Use it with" block for Hugging Face, run as written (in tmp_path, with --source)."""
    datasets, cache = _hf(tmp_path)
    pd = pytest.importorskip("pandas")
    text = README.read_text().split("    # Hugging Face datasets, pandas and pyarrow, on a Parquet export\n", 1)[1]
    block = [line.strip().split("   #")[0] for line in text.split("\n\n", 1)[0].splitlines()]
    command, *calls = block
    monkeypatch.chdir(tmp_path)
    argv = command.split()[1:] + ["--source", str(cifar10_tar.path), "--workers", "1", "-q"]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0
    assert "Hugging Face: datasets.load_dataset('cifar10-parquet')" in result.output  # what the export says
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", Path(cache))
    loaded, frame = (eval(call, {"datasets": datasets, "pandas": pd}) for call in calls)  # noqa: S307
    assert loaded["test"].features["label"].names == list(cifar10_tar.class_names)
    assert list(frame.columns) == ["image", "label", "id"] and len(frame) == 40


# --- cifarkit reads it back --------------------------------------------------------------------


def test_cifarkit_reads_every_split_back_exactly(c100, cifar100_tar):
    reader = data.open_data(c100)
    assert reader.kind == "parquet" and reader.counts == {"train": 24, "test": 10}
    assert reader.coarse_class_names == tuple(cifar100_tar.coarse_class_names)
    for split, truth in cifar100_tar.splits.items():
        images, labels = data.to_numpy(reader.dataset(split))
        np.testing.assert_array_equal(images, truth.images)
        np.testing.assert_array_equal(labels, truth.labels)
        x, y = data.load_numpy(c100, split, label="coarse_label")
        np.testing.assert_array_equal(y, truth.coarse_labels)
    rows = list(data.load(c100, "test[3:7]", as_supervised=False).as_numpy_iterator())
    assert [r["id"] for r in rows] == [f"test_{i:05d}".encode() for i in range(3, 7)]
    assert [r["coarse_label"] for r in rows] == cifar100_tar.splits["test"].coarse_labels[3:7].tolist()


def test_slices_and_holdouts_read_only_the_row_groups_they_take(cifar10_tar, tmp_path, monkeypatch):
    monkeypatch.setattr(layout, "ROWS_PER_GROUP", 4)  # 30 train images in 2 files: 4 row groups each
    out = _export(cifar10_tar.path, tmp_path / "groups", shards=2)
    assert [pq.ParquetFile(p).metadata.num_row_groups for p in sorted((out / "data").glob("train-*"))] == [4, 4]
    reader = data.open_data(out)
    read = []
    monkeypatch.setattr(reader, "read_span", lambda span, real=reader.read_span: read.append(span.group) or real(span))
    truth = cifar10_tar.splits["train"]
    x, y = data.to_numpy(reader.select({"train": "train[5:9]"}).dataset("train"))
    np.testing.assert_array_equal(x, truth.images[5:9])
    assert sorted(read) == [1, 2]  # rows 5-8: the second and third groups of the first file
    picks = np.array([0, 13, 29])
    x, y = data.to_numpy(reader.subset("train", {"held": picks}).dataset("held"))
    np.testing.assert_array_equal(x, truth.images[picks])
    np.testing.assert_array_equal(y, truth.labels[picks])


def test_info_export_and_stats_read_a_parquet_export(photos, tmp_path):
    truth, out = photos
    runner = CliRunner()
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0 and "cifarkit Parquet export" in result.output, result.output
    result = runner.invoke(
        app, ["export", "-f", "png", "-s", str(out), "-o", str(tmp_path / "png"), "--workers", "1", "-q"]
    )
    assert result.exit_code == 0, result.output
    again = open_source(tmp_path / "png")
    for split, expected in truth.splits.items():
        for image, want in zip(again.take(split, 0, again.count(split)).images, expected.images):
            np.testing.assert_array_equal(image, want)
    result = runner.invoke(app, ["stats", "-s", str(out), "--image-size", "16", "-o", str(tmp_path / "s.json"), "-q"])
    assert result.exit_code == 0, result.output


def test_a_re_run_writes_the_same_bytes_and_a_removed_file_is_written_again(cifar10_tar, c10, tmp_path):
    again = _export(cifar10_tar.path, tmp_path / "again", shards=2)
    export_dataset(
        open_source(cifar10_tar.path), tmp_path / "two", ExportOptions(format="parquet", shards=2, workers=2)
    )
    for other in (again, tmp_path / "two"):
        for path in sorted((c10 / "data").iterdir()):
            assert (other / "data" / path.name).read_bytes() == path.read_bytes(), path.name
    victim = again / "data" / "train-00001-of-00002.parquet"
    victim.unlink()
    (again / "cifarkit_info.json").unlink()  # as an export cut off before its end
    _export(cifar10_tar.path, again, shards=2)
    assert victim.read_bytes() == (c10 / "data" / victim.name).read_bytes()


def test_raw_encoding_and_a_missing_pyarrow_are_refused_in_one_line(monkeypatch):
    with pytest.raises(UsageError, match="--encoding auto, png, jpeg. Received: encoding=raw"):
        ExportOptions(format="parquet", encoding="raw")
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)
    with pytest.raises(
        UsageError, match=r"Parquet exports need pyarrow, an optional dependency: pip install 'cifarkit\[parquet\]'"
    ):
        ExportOptions(format="parquet")


# --- crafted files -----------------------------------------------------------------------------


def _copy(export: Path, dest: Path) -> Path:
    shutil.copytree(export, dest)
    return dest


def _rewrite(folder: Path, name: str, change, metadata=None) -> Path:
    """The file ``data/<name>`` rewritten with ``change(rows)`` applied to its rows (dicts)."""
    path = folder / "data" / name
    table = pq.read_table(path)
    rows = table.to_pylist()
    change(rows)
    schema = table.schema if metadata is None else table.schema.with_metadata(metadata)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


def _set(index: int, column: str, value):
    def change(rows):
        rows[index][column] = value

    return change


def _error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("cifarkit: error: "), result.output
    return lines[0]


def test_a_truncated_file_is_refused_naming_it(c10, tmp_path):
    folder = _copy(c10, tmp_path / "cut")
    path = folder / "data" / "test-00001-of-00002.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    for args in (["info", str(folder)], ["stats", "-s", str(folder), "-o", str(tmp_path / "s.json"), "-q"]):
        line = _error_line(CliRunner().invoke(app, args))
        assert line.startswith(f"cifarkit: error: {path}: not a readable Parquet file ("), line


def test_an_image_whose_header_declares_a_huge_size_is_refused_before_decoding(c10, tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    bomb = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(bytes(1000))) + chunk(b"IEND", b"")
    folder = _copy(c10, tmp_path / "bomb")
    path = _rewrite(folder, "train-00000-of-00002.parquet", _set(4, "image", {"bytes": bomb, "path": None}))
    with pytest.raises(Exception, match=rf"{path}: row 4: image larger than cifarkit reads \(30000 x 30000"):
        data.to_numpy(data.open_data(folder).dataset("train"))
    line = _error_line(CliRunner().invoke(app, ["info", str(folder)]))
    assert f"{path}: row 4: image larger than cifarkit reads (30000 x 30000 pixels" in line


def test_a_label_out_of_range_is_refused_when_the_export_is_opened(c10, tmp_path):
    folder = _copy(c10, tmp_path / "label")
    path = _rewrite(folder, "test-00001-of-00002.parquet", _set(2, "label", 1 << 62))
    with pytest.raises(
        SourceError, match=rf"{path}: row 2: its 'label' {1 << 62} is out of range for the dataset's 10"
    ):
        data.open_data(folder)


def test_the_path_column_is_never_opened(c10, cifar10_tar, tmp_path):
    """A row's ``path`` names a file outside the export: with the bytes there, the bytes are the
    image; without them the row is refused, and the file it names is not read."""
    folder = _copy(c10, tmp_path / "path")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"not an image, and never read")
    os.utime(outside, ns=(1_000_000_000, 1_000_000_000))
    name = "train-00000-of-00002.parquet"
    _rewrite(folder, name, lambda rows: [r["image"].update(path="../../secret.png") for r in rows])
    images, _ = data.to_numpy(data.open_data(folder).dataset("train"))
    np.testing.assert_array_equal(images, cifar10_tar.splits["train"].images)
    path = _rewrite(folder, name, _set(1, "image", {"bytes": None, "path": str(outside)}))
    line = _error_line(CliRunner().invoke(app, ["info", str(folder)]))
    assert f"{path}: row 1: it has no image bytes (its 'path' is not opened)" in line
    assert outside.stat().st_atime_ns == 1_000_000_000


@pytest.mark.parametrize("metadata", ["bad json", "a million class names"])
def test_schema_metadata_is_not_read_by_cifarkit(c10, cifar10_tar, tmp_path, metadata):
    folder = _copy(c10, tmp_path / "meta")
    if metadata == "bad json":
        value = b'{"info": {"features": [[[[['
    else:
        value = json.dumps({"info": {"features": {"label": {"names": [f"c{i}" for i in range(10**6)]}}}}).encode()
    _rewrite(folder, "test-00000-of-00002.parquet", lambda rows: None, {layout.HF_KEY: value})
    reader = data.open_data(folder)
    assert reader.class_names == tuple(cifar10_tar.class_names)  # from cifarkit_info.json
    images, labels = data.to_numpy(reader.dataset("test"))
    np.testing.assert_array_equal(images, cifar10_tar.splits["test"].images)


def test_a_file_listed_outside_the_export_is_refused(c10, tmp_path):
    folder = _copy(c10, tmp_path / "out")
    shutil.copy(folder / "data" / "test-00000-of-00002.parquet", tmp_path / "elsewhere.parquet")
    info = json.loads((folder / "cifarkit_info.json").read_text())
    info["splits"]["test"]["files"][0] = "../elsewhere.parquet"
    (folder / "cifarkit_info.json").write_text(json.dumps(info))
    with pytest.raises(UnsafeInputError, match="leads outside|outside the folder it describes"):
        data.open_data(folder)


def test_a_column_of_another_type_is_refused(c10, tmp_path):
    folder = _copy(c10, tmp_path / "type")
    path = folder / "data" / "test-00000-of-00002.parquet"
    table = pq.read_table(path)
    pq.write_table(table.set_column(0, "image", pa.array([b"x"] * table.num_rows)), path)
    with pytest.raises(SourceError, match=rf"{path}: has no 'image' column of Hugging Face's Image struct"):
        data.open_data(folder)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value >> 7 else 0))
        value >>= 7
        if not value:
            return bytes(out)


def test_a_data_page_that_claims_more_than_it_holds_is_one_line_naming_its_row_group(c10, tmp_path):
    """The first data page's Thrift header (just after PAR1): type, then the uncompressed size,
    rewritten to the largest value of the same width; zstd then finds the page corrupt."""
    folder = _copy(c10, tmp_path / "page")
    path = folder / "data" / "train-00000-of-00002.parquet"
    raw = bytearray(path.read_bytes())
    assert raw[4] == 0x15 and raw[5] == 0x00 and raw[6] == 0x15  # i32 field 1 (DATA_PAGE), i32 field 2
    end = next(i for i in range(7, 12) if not raw[i] & 0x80) + 1
    raw[7:end] = _varint((1 << 7 * (end - 7)) - 2)  # zigzag: an even number is a positive size
    path.write_bytes(bytes(raw))
    line = _error_line(CliRunner().invoke(app, ["stats", "-s", str(folder), "-o", str(tmp_path / "s.json"), "-q"]))
    assert line.startswith(f"cifarkit: error: {path}: row group 0 cannot be read ("), line


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli_export(source: Path, out: Path, fmt: str, *more: str):
    args = ["export", "-f", fmt, "-s", str(source), "-o", str(out), "--workers", "1", "-q", *more]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("first, second", [("parquet", "tfrecord"), ("png", "parquet"), ("parquet", "parquet")])
def test_overwrite_replaces_a_parquet_export_completely(cifar10_tar, tmp_path, first, second):
    out, fresh = tmp_path / "out", tmp_path / "fresh"
    assert _cli_export(cifar10_tar.path, out, first, *(("--shards", "3") if first == "parquet" else ())).exit_code == 0
    result = _cli_export(cifar10_tar.path, out, second, "--overwrite")
    assert result.exit_code == 0, result.output
    assert _cli_export(cifar10_tar.path, fresh, second).exit_code == 0
    assert _tree(out).keys() - {".cifarkit.lock"} == _tree(fresh).keys() - {".cifarkit.lock"}
    assert all(_tree(out)[name] == data for name, data in _tree(fresh).items() if name.startswith("data/"))


def test_overwrite_leaves_a_users_file_in_data_and_removes_nothing(c10, cifar10_tar, tmp_path):
    folder = _copy(c10, tmp_path / "mine")
    (folder / "data" / "notes.txt").write_text("mine")
    before = _tree(folder)
    result = _cli_export(cifar10_tar.path, folder, "png", "--overwrite")
    assert result.exit_code == 1 and "data/notes.txt: not written by the earlier export" in result.output
    assert _tree(folder) == before
