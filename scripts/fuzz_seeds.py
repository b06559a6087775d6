"""Seeds of scripts/fuzz_sources.py: small files in the real layouts, written by cifarkit itself.

Two kinds:

- in memory, built in each worker in well under a second (tests/synth.py): Python 2 and 3
  pickles of protocols 2-5, CIFAR-10/100 python and binary batches, their tar, tar.gz, tar.bz2
  and tar.xz archives, and MNIST-layout IDX pairs, plain and gzipped;
- a seed store on disk, built once by :func:`build_store` (about 10 s after TensorFlow's start)
  and kept in a temporary folder named after a hash of cifarkit's code and these scripts: a dataset
  of ten 32x32 images (and a CIFAR-100-like one with coarse labels) exported by cifarkit's own
  exporter as a PNG tree and as TFRecords (PNG and raw encodings, two shards, photos of mixed
  sizes, TFDS's ``--tfds-layout``); TFDS-prepared folders (a TFRecord export without cifarkit's
  own files); finished and interrupted exports in their output folders, one holding a file of
  the user's own; the run folder of a
  one-epoch ``lenet5`` training, the same folder cut off with a backup, and its model exported to
  ``.tflite``; image trees of PNG and JPEG photos; and two 1-bit PNG bombs (9900 x 9900, under the
  100-megapixel header limit, and 20000 x 20000, over it).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import lzma
import pickle
import re
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import synth  # tests/synth.py: the real-layout builders
from fuzz_mutators import opcode_offsets

STORE_VERSION = "1"  # bump when the store's layout changes
COMPLETE = "complete.json"  # written last: a store without it is rebuilt


@dataclass
class Seed:
    target: str
    name: str  # file seeds: the file's base name; folder seeds: the store folder copied per case
    data: bytes  # the bytes mutated
    kind: str = "folder"  # "file" (a CIFAR layout's file), "archive", "idx" or "folder"
    layout: str = ""  # file seeds: the layout, read with the other files in ``companions``
    companions: dict[str, bytes] = field(default_factory=dict)
    structure: list[int] = field(default_factory=list)  # offsets worth mutating most
    file: str = ""  # folder seeds: the mutated file, relative to the case's folder
    ops: tuple[str, ...] = ()  # folder seeds: how cifarkit reads the case (fuzz_targets.OPS)
    reads: str = "data"  # what the ops read, relative to the case's folder
    counts: dict[str, int] = field(default_factory=dict)  # split -> images written: the truth
    weight: float = 1.0


# ---------------------------------------------------------------------------
# In memory: CIFAR batches, archives, IDX
# ---------------------------------------------------------------------------


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def tar_bytes(files: list[tuple[str, bytes]]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _layout_folders(tmp: Path) -> list[tuple[str, Path]]:
    small = {"per_batch": 1, "test": 1, "batches": 2, "archive": False}
    return [
        ("cifar10-python", synth.make_cifar10_python(tmp / "py2", **small).path),
        ("cifar10-python", synth.make_cifar10_python(tmp / "p2", flavour="py3", protocol=2, **small).path),
        ("cifar10-python", synth.make_cifar10_python(tmp / "p3", flavour="py3", protocol=3, **small).path),
        (
            "cifar10-python",
            synth.make_cifar10_python(tmp / "p5", flavour="py3", protocol=5, str_keys=True, **small).path,
        ),
        ("cifar100-python", synth.make_cifar100_python(tmp / "c100", train=1, test=1, archive=False).path),
        (
            "cifar100-python",
            synth.make_cifar100_python(tmp / "c100p4", train=1, test=1, flavour="py3", protocol=4, archive=False).path,
        ),
        ("cifar10-binary", synth.make_cifar10_binary(tmp / "bin", **small).path),
        ("cifar100-binary", synth.make_cifar100_binary(tmp / "bin100", train=1, test=1, archive=False).path),
    ]


def _numpy_batches() -> list[bytes]:
    # Labels as an int64 array and as numpy integers, pixels in Fortran order: more numpy opcodes.
    rows = np.arange(3072, dtype=np.uint8).reshape(1, 3072)
    fields = [{"data": rows, "labels": np.array([3])}, {"data": np.asfortranarray(rows), "labels": [np.int64(7)]}]
    return [pickle.dumps(f, protocol=p) for f in fields for p in (2, 5)]


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: two zero bytes, type 0x08 (uint8), the number of dimensions, each size."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def idx_seeds() -> list[Seed]:
    """MNIST-layout pairs (images and labels), plain and gzipped: each file a seed, read with its
    partner; the header bytes (where the sizes a reader trusts live) are mutated most."""
    images = np.arange(3 * 28 * 28, dtype=np.uint16).reshape(3, 28, 28) % 251
    labels = np.array([3, 1, 4])
    plain = {"t10k-images-idx3-ubyte": idx_bytes(images), "t10k-labels-idx1-ubyte": idx_bytes(labels)}
    seeds = []
    for gz in (False, True):
        files = {name + (".gz" if gz else ""): gzip.compress(d, 6, mtime=0) if gz else d for name, d in plain.items()}
        for name, data in files.items():
            header = [] if gz else list(range(16 if "images" in name else 8))
            others = {k: v for k, v in files.items() if k != name}
            seeds.append(Seed("idx", name, data, "idx", "mnist", others, header))
    return seeds


def idx_bomb() -> Seed:
    """One 16000 x 16000 image of zeros in MNIST's IDX layout: 256 MB in a 250 KB gzip file (of
    17 members, which every gzip reader joins; compressing 16 MB once keeps the seed cheap)."""
    header = bytes([0, 0, 0x08, 3]) + b"".join(n.to_bytes(4, "big") for n in (1, 16000, 16000))
    data = gzip.compress(header, 9, mtime=0) + gzip.compress(bytes(16_000_000), 9, mtime=0) * 16
    labels = gzip.compress(idx_bytes(np.array([1])), 6, mtime=0)
    return Seed(
        "idx", "t10k-images-idx3-ubyte.gz", data, "idx", "mnist", {"t10k-labels-idx1-ubyte.gz": labels}, weight=0.05
    )


def cifar_seeds() -> tuple[list[Seed], list[Seed]]:
    """(file seeds of the four CIFAR layouts, archive seeds)."""
    files_, archives = [], []
    with tempfile.TemporaryDirectory() as tmp:
        from cifarkit.sources import layouts

        for layout, folder in _layout_folders(Path(tmp)):
            files = _folder_files(folder)
            for name, data in files.items():
                if layouts.is_dataset_file(name):
                    others = {k: v for k, v in files.items() if k != name}
                    files_.append(Seed("cifar-batches", name, data, "file", layout, others, opcode_offsets(data)))
            tar = tar_bytes([(f"{folder.name}/{n}", d) for n, d in files.items()])
            archives.append(Seed("cifar-archives", ".tar", tar, "archive"))
            archives.append(Seed("cifar-archives", ".tar.gz", gzip.compress(tar, 6, mtime=0), "archive"))
        archives.append(Seed("cifar-archives", ".tar.bz2", bz2.compress(tar), "archive"))
        archives.append(Seed("cifar-archives", ".tar.xz", lzma.compress(tar), "archive"))
    base = next(s for s in files_ if s.name == "data_batch_1")
    for data in _numpy_batches():
        files_.append(
            Seed("cifar-batches", "data_batch_1", data, "file", base.layout, base.companions, opcode_offsets(data))
        )
    return files_, archives


# ---------------------------------------------------------------------------
# On disk: exports, run folders, models, image trees, bombs
# ---------------------------------------------------------------------------


STORE_NAME = re.compile(r"[0-9a-f]{16}")  # store_key's names


def store_key() -> str:
    """A hash of cifarkit's code and these scripts: the store is rebuilt when either changes."""
    digest = hashlib.sha256(STORE_VERSION.encode())
    for path in sorted((ROOT / "cifarkit").rglob("*.py")) + sorted(Path(__file__).parent.glob("fuzz_*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def default_store() -> Path:
    return Path(tempfile.gettempdir()) / "cifarkit-fuzz-seeds" / store_key()


def _arrays(name: str, class_names, coarse_names, counts: dict[str, int], seed: int):
    from cifarkit.sources.labelled import Batch, LabelledImages

    rng = np.random.default_rng(seed)
    batches, start = {}, 0
    for split, n in counts.items():
        labels = (np.arange(start, start + n) * 7) % len(class_names)
        coarse = labels % len(coarse_names) if coarse_names else None
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        batches[split] = [Batch(split, images, labels.astype(np.int64), [f"{split}_batch"] * n, coarse)]
        start += n
    return LabelledImages(
        name=name,
        format="synthetic",
        location=Path(name),
        class_names=tuple(class_names),
        batches=batches,
        coarse_class_names=tuple(coarse_names) if coarse_names else None,
    )


def _export(dataset, out: Path, fmt: str, **options) -> dict[str, int]:
    from cifarkit.formats.export import ExportOptions, export_dataset

    summary = export_dataset(dataset, out, ExportOptions(format=fmt, workers=1, quiet=True, **options))
    return dict(summary.counts)


def _without_cifarkit_files(src: Path, dst: Path) -> None:
    """A TFRecord export as TFDS prepares a folder: shards, dataset_info.json, features.json and
    label files only."""
    shutil.copytree(src, dst)
    for name in ("cifarkit_info.json", "manifest.csv", "labels.txt", ".cifarkit-export.json", ".cifarkit.lock"):
        (dst / name).unlink(missing_ok=True)


def _exports(store: Path, counts: dict) -> None:
    from cifarkit.sources import open_source

    ten = _arrays("cifar10", synth.CIFAR10_CLASSES, None, {"train": 6, "test": 4}, 0)
    hundred = _arrays("cifar100", synth.CIFAR100_FINE, synth.CIFAR100_COARSE, {"train": 4, "test": 2}, 1)
    counts["png-tree"] = _export(ten, store / "png-tree" / "data", "png")
    counts["png-tree-100"] = _export(hundred, store / "png-tree-100" / "data", "png")
    counts["tfr-png"] = _export(ten, store / "tfr-png" / "data", "tfrecord", encoding="png")
    counts["tfr-raw"] = _export(ten, store / "tfr-raw" / "data", "tfrecord", encoding="raw")
    counts["tfr-100"] = _export(hundred, store / "tfr-100" / "data", "tfrecord", encoding="png", shards=2)
    counts["tfds-layout"] = _export(ten, store / "tfds-layout" / "data", "tfrecord", tfds_layout=True)
    for name, ext in (("photos-png", "png"), ("photos-jpg", "jpg")):
        synth.make_image_folder(store / name / "data", ext=ext, sizes=((40, 30), (17, 23)))
        counts[name] = {"train": 6, "test": 4}
    photos = open_source(store / "photos-png" / "data")
    counts["tfr-photos"] = _export(photos, store / "tfr-photos" / "data", "tfrecord", encoding="auto")
    counts["tfr-photos-raw"] = _export(photos, store / "tfr-photos-raw" / "data", "tfrecord", encoding="raw")
    counts["ar-png"] = _export(ten, store / "ar-png" / "data", "arrayrecord", encoding="png", shards=2)
    counts["ar-raw"] = _export(ten, store / "ar-raw" / "data", "arrayrecord", encoding="raw")
    counts["ar-100"] = _export(hundred, store / "ar-100" / "data", "arrayrecord", shards=2)
    counts["ar-photos"] = _export(photos, store / "ar-photos" / "data", "arrayrecord", encoding="auto")
    counts["ar-layout"] = _export(ten, store / "ar-layout" / "data", "arrayrecord", tfds_layout=True)
    _without_cifarkit_files(store / "ar-png" / "data", store / "tfds-ar" / "data")  # as tfds.data_source finds it
    counts["tfds-ar"] = counts["ar-png"]
    counts["wds-png"] = _export(ten, store / "wds-png" / "data", "webdataset", shards=2)
    counts["wds-100"] = _export(hundred, store / "wds-100" / "data", "webdataset")
    jpegs = open_source(store / "photos-jpg" / "data")  # kept as their own bytes: .jpg members
    counts["wds-photos"] = _export(jpegs, store / "wds-photos" / "data", "webdataset")
    counts["pq-10"] = _export(ten, store / "pq-10" / "data", "parquet", shards=2)
    counts["pq-100"] = _export(hundred, store / "pq-100" / "data", "parquet")
    counts["pq-photos"] = _export(photos, store / "pq-photos" / "data", "parquet")
    for src, dst in (("tfr-png", "tfds-10"), ("tfr-100", "tfds-100")):
        _without_cifarkit_files(store / src / "data", store / dst / "data")
        counts[dst] = counts[src]


def _output_folders(store: Path, counts: dict) -> None:
    """An export in its output folder: finished (PNG and TFRecord), cut off while writing its
    second split, and finished with a file of the user's own put inside ``train/`` since."""
    from cifarkit.sources import open_source

    for name, fmt in (
        ("export-finished", "png"),
        ("export-finished-tfr", "tfrecord"),
        ("export-unfinished", "png"),
        ("export-users-file", "png"),
    ):
        shutil.copytree(store / "png-tree" / "data", store / name / "data")
        counts[name] = _export(open_source(store / name / "data"), store / name / "out", fmt)
    mine = store / "export-users-file" / "out" / "train" / "mine.txt"
    mine.write_text("the user's own notes\n")
    out = store / "export-unfinished" / "out"
    (out / "test").rename(out / ".partial-test")
    (out / ".partial-test" / ".chunks-done").write_text("")
    for name in ("labels.txt", "manifest.csv", "cifarkit_info.json"):
        (out / name).unlink()


def _run_folders(store: Path, counts: dict) -> None:
    """A one-epoch lenet5 run on the PNG tree; the same run cut off at its epoch's end, with the backup
    its RunBackup callback writes (weights file, state.json naming it and each callback's state)."""
    from cifarkit.training import TrainConfig, train
    from cifarkit.training.callbacks import Checkpoints, History, LearningRate
    from cifarkit.training.rundir import read_history, weights_name

    run = store / "run" / "run"
    train(
        TrainConfig(model="lenet5", workdir=str(run), data=str(store / "png-tree" / "data"), epochs=1, batch_size=4),
        quiet=True,
    )
    counts["run"] = counts["png-tree"]
    cut = store / "run-backup" / "run"
    shutil.copytree(run, cut)
    (cut / "report.json").unlink()
    history = History(None, 4)
    history.rows = read_history(run / "history.csv")
    schedule, checkpoints = LearningRate("cosine", 0.05, 1), Checkpoints(None, cut)
    checkpoints.best, checkpoints.best_epoch = 0.25, 1
    (cut / "backup").mkdir()
    weights = weights_name(1)
    shutil.copy(run / "last.keras", cut / "backup" / weights)  # a file of the right name; never loaded
    state = {
        "serial": 1,
        "epoch": 1,
        "step": 0,
        "weights": weights,
        "saved_at": "2025-01-01T00:00:00",
        "callbacks": {cb.key: cb.state() for cb in (history, schedule, checkpoints)},
    }
    (cut / "backup" / "state.json").write_text(json.dumps(state, indent=1) + "\n")
    counts["run-backup"] = counts["png-tree"]


def _models(store: Path) -> None:
    from cifarkit.modelio.export import export_tflite
    from cifarkit.modelio.keras_file import load_model

    export_tflite(load_model(store / "run" / "run" / "last.keras"), store / "tflite", "model")
    (store / "tflite" / "images").mkdir()
    first = min((store / "png-tree" / "data" / "train").rglob("*.png"))
    shutil.copy(first, store / "tflite" / "images" / "one.png")


def _bombs(store: Path, counts: dict) -> None:
    from PIL import Image

    pool = store / "pool"
    pool.mkdir()
    for name, side in (("big.png", 9900), ("bomb.png", 20000)):
        Image.new("1", (side, side)).save(pool / name, optimize=True)
    shutil.copy(next((store / "photos-jpg" / "data").rglob("*.jpg")), pool / "photo.jpg")
    tree = store / "photos-bomb" / "data" / "train"
    for label in ("cat", "dog"):
        (tree / label).mkdir(parents=True)
        shutil.copy(next((store / "photos-png" / "data" / "train" / label).glob("*.png")), tree / label / "a.png")
    shutil.copy(pool / "big.png", tree / "cat" / "big.png")
    counts["photos-bomb"] = {"train": 3}


def build_store(store: Path) -> None:
    """Every on-disk seed, written in place (a run's config.json names its data by absolute path);
    ``complete.json`` last, with the images each seed holds per split."""
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True)
    counts: dict[str, dict[str, int]] = {}
    _exports(store, counts)
    _output_folders(store, counts)
    _bombs(store, counts)
    _run_folders(store, counts)
    _models(store)
    (store / COMPLETE).write_text(json.dumps(counts, indent=1))


def ensure_store(store: Path) -> None:
    """Build the store unless it is complete; a second process waits for the first's build."""
    import fcntl

    store.parent.mkdir(parents=True, exist_ok=True)
    with open(store.parent / f"{store.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (store / COMPLETE).is_file():
            return
        # The stores of earlier code (their locks are free to go): folders named as store_key names
        # them, and nothing else, since --store may sit in a folder of other files (/tmp itself).
        for old in store.parent.iterdir():
            if not STORE_NAME.fullmatch(old.name.removesuffix(".lock")) or old.stem == store.name:
                continue
            if old.is_dir() and old != store:
                shutil.rmtree(old, ignore_errors=True)
            elif old.suffix == ".lock":
                old.unlink(missing_ok=True)
        build_store(store)


def store_counts(store: Path) -> dict[str, dict[str, int]]:
    return json.loads((store / COMPLETE).read_text())
