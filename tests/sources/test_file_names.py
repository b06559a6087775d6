"""A photo tree's listing on disk reads as the same names, in the same order, as one in memory,
through every way the export and readers take it (items, slices, index views, pickled views,
relative folders), and its process's memory stays flat in the number of files."""

from __future__ import annotations

import gc
import io
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cifarkit.errors import SourceError
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.sources import listing, open_source
from cifarkit.sources.file_names import RECORD, FileNames, stratified_permutation
from cifarkit.sources.folder import read_folder

# Names a camera, a phone or a person might give: accents, spaces, CJK, an emoji.
CLASSES = {"café": 13, "dir with space": 7, "日本": 1, "zebra": 30}
NAMES = ("IMG {:04d}.jpg", "ünï cødé {:03d}.png", "写真_{}.jpeg", "x😀{}.JPG")


def _odd_tree(root: Path) -> Path:
    for c, (folder, count) in enumerate(CLASSES.items()):
        for split in ("train", "test"):
            (root / split / folder).mkdir(parents=True)
            for i in range(count if split == "train" else 1 + count // 5):
                (root / split / folder / NAMES[(c + i) % len(NAMES)].format(i)).write_bytes(b"")
    return root


def _on_disk(monkeypatch, chunk: int = 5, span: int = 64, selection: int = 0) -> None:
    """Every listing to disk, its order made a few files at a time, and the reading paths that a
    large listing takes (names read one by one, a selection's records copied) taken on a small one."""
    monkeypatch.setattr(listing, "IN_MEMORY_BYTES", 0)
    monkeypatch.setattr(listing, "CHUNK_FILES", chunk)
    monkeypatch.setattr("cifarkit.sources.file_names.SPAN_BYTES", span)
    monkeypatch.setattr("cifarkit.sources.file_names.SELECTION_BYTES", selection)


SLICES = (
    slice(None),
    slice(3, 17),
    slice(None, None, 3),
    slice(-5, None),
    slice(None, None, -2),
    slice(90, 99),
    slice(4, 4),
)


def _views(names: FileNames) -> dict[str, list[str]]:
    """What every kind of view of ``names`` reads, as plain lists."""
    n = len(names)
    seen = {"all": list(names), "items": [names[i] for i in range(-n, n)]}
    for s in SLICES:
        seen[f"slice {s}"] = list(names[s])
        seen[f"slice {s} then 1::2"] = list(names[s][1::2])
    indices = [5, 0, n - 1, -1, 3, 3, 11]
    seen["indices"] = list(names[indices])
    seen["index array, then sliced"] = list(names[np.array(indices)][2:5])
    seen["mask"] = list(names[np.arange(n) % 3 == 0])
    seen["mask of a slice"] = list(names[::2][np.arange(len(names[::2])) % 2 == 1])
    seen["empty selection"] = list(names[[]])
    seen["pickled slice"] = list(pickle.loads(pickle.dumps(names[3:9])))
    seen["pickled selection"] = list(pickle.loads(pickle.dumps(names[np.array([7, 1, 2])])))
    seen["pickled whole"] = list(pickle.loads(pickle.dumps(names)))
    return seen


def test_a_listing_on_disk_reads_exactly_as_one_in_memory(tmp_path, monkeypatch):
    tree = _odd_tree(tmp_path / "photos")
    memory = read_folder(tree)
    _on_disk(monkeypatch)
    disk = read_folder(tree)
    assert memory.class_names == disk.class_names == tuple(sorted(CLASSES))
    for split in ("train", "test"):
        (held,), (spilled,) = memory.batches[split], disk.batches[split]
        assert not held.images.paths.on_disk and spilled.images.paths.on_disk
        assert spilled.labels.dtype == np.int64 and spilled.labels.tolist() == held.labels.tolist()
        assert _views(spilled.images.paths) == _views(held.images.paths)
        assert _views(spilled.source_files) == _views(held.source_files)  # with_folders: relative names
        assert spilled.images.paths.nbytes() == 0 < held.images.paths.nbytes()
    # The order is the stratified one, and each file sits in its own folder under its own name.
    (train,) = disk.batches["train"]
    folders = sorted(CLASSES)
    expected = [
        f"train/{folders[label]}/{name}"
        for label, name in _stratified([sorted(os.listdir(tree / "train" / f)) for f in folders])
    ]
    assert list(train.source_files) == expected
    assert list(train.images.paths) == [str(tree / name) for name in expected]
    assert [folders[label] for label in train.labels.tolist()] == [name.split("/")[1] for name in expected]


def _stratified(per_folder: list[list[str]]) -> list[tuple[int, str]]:
    files = [(label, name) for label, names in enumerate(per_folder) for name in names]
    order = stratified_permutation([len(names) for names in per_folder], list(range(len(per_folder))))
    return [files[i] for i in order.tolist()]


@pytest.mark.parametrize("seed", range(6))
def test_the_order_made_a_chunk_at_a_time_is_the_whole_order(seed, monkeypatch):
    # Folders of awkward sizes (1, primes, one far larger) and labels out of folder order.
    rng = np.random.default_rng(seed)
    counts = [int(c) for c in rng.choice([1, 2, 3, 7, 13, 64, 301], size=int(rng.integers(1, 12)))]
    labels = rng.permutation(len(counts)).tolist()
    _on_disk(monkeypatch, chunk=int(rng.integers(1, 40)), span=1 << 20, selection=1 << 20)
    disk = listing.SplitListing()
    monkeypatch.setattr(listing, "IN_MEMORY_BYTES", 1 << 30)
    memory = listing.SplitListing()
    for f, count in enumerate(counts):
        names = [f"{f}-{i:04d}.png" for i in range(count)]
        memory.add(f"folder{f}", names)
        disk.add(f"folder{f}", names)
    (held, held_labels), (spilled, spilled_labels) = memory.stratified(labels), disk.stratified(labels)
    assert spilled.on_disk and not held.on_disk
    assert list(spilled) == list(held) and spilled_labels.tolist() == held_labels.tolist()
    assert len(spilled) == sum(counts)


def test_a_listing_on_disk_is_exported_as_one_in_memory_skipping_the_same_bad_file(tmp_path, monkeypatch):
    # Forked workers read the listing's temporary files; --skip-bad's selection copies its records.
    tree = tmp_path / "photos"
    for c, folder in enumerate(("bird", "cat", "dog")):
        (tree / folder).mkdir(parents=True)
        for i in range(5 + 3 * c):
            Image.fromarray(np.full((6, 5, 3), 20 * c + i, np.uint8)).save(tree / folder / f"{folder} {i}.png")
    (tree / "cat" / "cat 3.png").write_bytes(b"not a png")
    options = ExportOptions(format="tfrecord", workers=2, quiet=True, skip_bad=True)
    held = export_dataset(open_source(tree), tmp_path / "memory", options)
    _on_disk(monkeypatch)
    spilled = export_dataset(open_source(tree), tmp_path / "disk", options)
    assert held.counts == spilled.counts == {"train": 5 + 8 + 11 - 1}
    assert [c.path for c in spilled.bad] == [str(tree / "cat" / "cat 3.png")]
    for name in ("manifest.csv", "photos-train.tfrecord-00000-of-00001"):
        assert (tmp_path / "disk" / name).read_bytes() == (tmp_path / "memory" / name).read_bytes(), name


@pytest.mark.parametrize("record", [(10**9, 5, 0), (0, -1, 0), (0, 3, 99)], ids=["past the names", "length", "folder"])
def test_a_record_changed_in_its_temporary_file_is_refused_in_one_line(tmp_path, monkeypatch, record):
    _on_disk(monkeypatch, span=1 << 20)
    names = read_folder(_odd_tree(tmp_path / "photos")).batches["train"][0].images.paths
    assert names[0] and names.on_disk
    os.pwrite(names._store.table._handle.fileno(), np.array([record], RECORD).tobytes(), 0)
    for read in (lambda: names[0], lambda: list(names), lambda: pickle.dumps(names[:3])):
        with pytest.raises(SourceError, match="temporary file of the tree's listing was changed") as refused:
            read()
        assert "\n" not in str(refused.value)


@pytest.mark.parametrize("changed", [b"\xff", b"\xc3", b"../", b"\x00"], ids=["not UTF-8", "cut", "leads out", "NUL"])
def test_a_name_changed_in_its_temporary_file_is_refused_in_one_line(tmp_path, monkeypatch, changed):
    # The records still lie within the names file: the name itself is what gives the change away,
    # as bytes no UTF-8 decoder takes, or a path leading out of its folder.
    _on_disk(monkeypatch, span=1 << 20)
    names = read_folder(_odd_tree(tmp_path / "photos")).batches["train"][0].images.paths
    first = names[0]
    start, length, _ = names._store.records(0, 1)
    os.pwrite(names._store.names._handle.fileno(), changed, int(start[0]) + int(length[0]) - len(changed))
    for read in (lambda: names[0], lambda: list(names), lambda: pickle.dumps(names[:3])):
        with pytest.raises(SourceError, match="temporary file of the tree's listing was changed") as refused:
            read()
        assert "\n" not in str(refused.value)
    assert first.startswith(str(tmp_path / "photos" / "train"))


@pytest.mark.parametrize("where", ["memory", "disk"])
def test_a_split_whose_class_folders_hold_no_image_loads_as_an_empty_split(tmp_path, monkeypatch, where):
    # test/ has a class folder, so it is a split, but nothing in it is an image: no files to decode.
    import cifarkit

    tree = tmp_path / "photos"
    (tree / "train" / "cat").mkdir(parents=True)
    (tree / "test" / "dog").mkdir(parents=True)
    Image.fromarray(np.full((3, 3, 3), 77, np.uint8)).save(tree / "train" / "cat" / "a.png")
    (tree / "test" / "dog" / "notes.txt").write_text("not an image\n")
    if where == "disk":
        _on_disk(monkeypatch)
    splits, info = cifarkit.load(tree, split=None, batch_size=4, image_size=32, with_info=True)
    assert info.splits["test"].num_examples == 0 and info.splits["train"].num_examples == 1
    assert list(splits["test"].as_numpy_iterator()) == []
    ((images, labels),) = list(splits["train"].as_numpy_iterator())
    assert images.shape == (1, 32, 32, 3) and images.dtype == np.uint8 and labels.tolist() == [0]
    assert (images == 77).all()


@pytest.mark.parametrize("fmt", ["png", "tfrecord"])
def test_an_empty_split_exported_reads_back_as_an_empty_split(tmp_path, monkeypatch, fmt):
    # The export records train with no image; its PNG manifest then has no row of it.
    tree = tmp_path / "photos"
    (tree / "train" / "cat").mkdir(parents=True)
    (tree / "test" / "cat").mkdir(parents=True)
    (tree / "train" / "cat" / "notes.txt").write_text("not an image\n")
    Image.fromarray(np.full((3, 3, 3), 9, np.uint8)).save(tree / "test" / "cat" / "a.png")
    _on_disk(monkeypatch)
    summary = export_dataset(open_source(tree), tmp_path / "out", ExportOptions(format=fmt, workers=1, quiet=True))
    assert summary.counts == {"train": 0, "test": 1}
    back = open_source(tmp_path / "out")
    assert {split: back.count(split) for split in back.splits} == {"train": 0, "test": 1}
    (test,) = back.batches["test"]
    assert test.labels.tolist() == [0] and (np.asarray(next(iter(test.images))) == 9).all()


def _deleted_temporary_files() -> set[str]:
    """The unlinked files of the temporary folder this process holds open (by their unique names:
    other objects' files, closed by a garbage collection meanwhile, do not count)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(tempfile.gettempdir()) and target.endswith("(deleted)"):
            found.add(target)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="reads /proc/self/fd")
def test_the_temporary_files_go_with_the_listing(tmp_path, monkeypatch):
    tree = _odd_tree(tmp_path / "photos")
    _on_disk(monkeypatch)
    before = _deleted_temporary_files()
    dataset = read_folder(tree)
    assert dataset.batches["train"][0].images.paths.on_disk
    view = dataset.batches["train"][0].source_files[np.arange(5)]  # a selection copied to a file of its own
    ours = _deleted_temporary_files() - before
    assert ours
    del dataset
    gc.collect()
    assert ours & _deleted_temporary_files()  # the view still reads the names
    assert len(list(view)) == 5
    del view
    gc.collect()
    assert not ours & _deleted_temporary_files()


# The listing in a child, its growth (VmHWM past the RSS before it) measured after a warm-up
# read of a small tree has imported everything. On disk, the listing's constants are made small
# (256 KB held before it spills, its order made 1,024 files at a time), so that they do not hide
# the cost a file at this size; in memory, nothing spills.
_LIST_IN_A_CHILD = """
import json, sys
from pathlib import Path
from cifarkit.sources import listing, open_source
listing.IN_MEMORY_BYTES, listing.CHUNK_FILES = (1 << 18, 1024) if sys.argv[2] == "disk" else (1 << 40, 1 << 14)
open_source(Path(sys.argv[1]) / "warm-up")
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key))
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS:")
dataset = open_source(Path(sys.argv[1]) / "photos")
(batch,) = dataset.batches["train"]
seen = sum(1 for _ in batch.images.paths) + sum(1 for _ in batch.source_files)  # as export's passes
print(json.dumps({"grew_kib": status("VmHWM:") - before, "seen": seen, "disk": batch.images.paths.on_disk}))
"""

FILES, FOLDERS = 200_000, 100
# Bytes a file the listing may add on disk: its label (8), and a chunk's and a folder's costs
# spread over the files; in memory the listing costs far more (a 40-byte name twice while it is
# joined, 16 bytes of numbers, the label and the order's arrays).
MAX_BYTES_PER_FILE_ON_DISK = 24


def _grew(root: Path, how: str) -> dict:
    run = subprocess.run(
        [sys.executable, "-c", _LIST_IN_A_CHILD, str(root), how], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's peak-RSS reset")
def test_listing_two_hundred_thousand_files_on_disk_keeps_the_process_flat(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(buffer, "JPEG")
    jpegs = [tmp_path / f"one-{k}.jpg" for k in range(FILES // 50_000 + 1)]  # ext4 allows 65,000 links a file
    for jpeg in jpegs:
        jpeg.write_bytes(buffer.getvalue())
    (tmp_path / "warm-up" / "a").mkdir(parents=True)
    os.link(jpegs[0], tmp_path / "warm-up" / "a" / "x.jpg")
    for f in range(FOLDERS):
        (tmp_path / "photos" / f"n{f:08d}").mkdir(parents=True)
    for i in range(FILES):  # camera-style names of 40 bytes, hard links of a tiny JPEG
        target = tmp_path / "photos" / f"n{i % FOLDERS:08d}" / f"IMG_{i:08d}_from_the_camera_roll.jpg"
        os.link(jpegs[i % len(jpegs)], target)
    disk, memory = _grew(tmp_path, "disk"), _grew(tmp_path, "memory")
    assert disk["seen"] == memory["seen"] == 2 * FILES and disk["disk"] and not memory["disk"]
    per_file = {k: v["grew_kib"] * 1024 / FILES for k, v in (("disk", disk), ("memory", memory))}
    assert per_file["disk"] < MAX_BYTES_PER_FILE_ON_DISK < per_file["memory"], per_file
