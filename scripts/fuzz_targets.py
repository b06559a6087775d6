"""Targets of scripts/fuzz_sources.py: for each reader, its seeds, the mutator of its files and
the ways cifarkit reads it (fuzz_ops.py); the sandbox a folder case is written into.

A folder case is a copy of a seed from the store (fuzz_seeds.py) with one file changed, written
into a sandbox::

    case/victim/keep.txt  case/a/victim/keep.txt  case/a/b/victim/keep.txt   sentinels
    case/a/b/data/ (or run/, model.tflite, images/)                          the seed
    case/a/b/out/                                                            where commands write

Names that lead out (``../victim``, ``../../victim``, the sandbox's absolute path) reach the
sentinels; after every case the sandbox outside ``out/`` must be as it was, and a file of the
user's own inside ``out/`` must still be there.
"""

from __future__ import annotations

import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import fuzz_arrayrecord
import fuzz_mutators as mut
import fuzz_parquet
import fuzz_records as rec
import fuzz_seeds
import fuzz_tar
from fuzz_seeds import Seed

VICTIMS = ("victim", "a/victim", "a/b/victim")
USER_FILE = "out/train/mine.txt"  # in the seeds that hold an earlier export in out/


class Link(str):
    """A change that makes the file a symbolic link to this target (with @CASE@ in it)."""


@dataclass
class Case:
    seed: Seed
    data: bytes = b""  # file, archive and IDX seeds: the mutated bytes
    op: str = ""
    options: dict = field(default_factory=dict)
    changes: dict = field(default_factory=dict)  # path under case/a/b -> bytes, None (removed) or Link
    note: str = ""

    @property
    def trusts_counts(self) -> bool:
        """Whether the images each split holds are still the seed's (only records were mutated)."""
        return self.seed.target in (
            "tfrecord-framing",
            "tfrecord-example",
            "arrayrecord",
            "webdataset",
            "parquet",
            "images",
            "tflite",
            "tree-listing",  # its counts are the tree's, made by fuzz_listing
        )


# ---------------------------------------------------------------------------
# Targets
# ---------------------------------------------------------------------------

TF_OPS = ("info", "export", "pipeline", "stats")
META_OPS = ("info", "export", "pipeline")
AR_SEEDS = ("ar-png", "ar-raw", "ar-100", "ar-photos", "ar-layout", "tfds-ar")
TFRECORD_SEEDS = ("tfr-png", "tfr-raw", "tfr-100", "tfr-photos", "tfr-photos-raw", "tfds-10", "tfds-100", "tfds-layout")
# target -> (what it covers, [(store seed, files mutated, ops, what the ops read, weight)])
FOLDER_TARGETS: dict[str, tuple[str, list[tuple]]] = {
    "tfrecord-framing": (
        "TFRecord shards: length fields, cuts, records dropped or foreign",
        [(s, "data/**/*.tfrecord-*", TF_OPS, "data", 1) for s in TFRECORD_SEEDS],
    ),
    "tfrecord-example": (
        "tf.train.Example records: labels, image bytes and shapes, keys",
        [(s, "data/**/*.tfrecord-*", TF_OPS, "data", 1) for s in TFRECORD_SEEDS],
    ),
    "arrayrecord": (
        "ArrayRecord shards: Examples rewritten (labels, images, shapes, keys), records dropped or repeated, "
        "zstd bombs, bytes cut or damaged under the Riegeli hashes",
        [(s, "data/**/*.array_record-*", TF_OPS, "data", 1) for s in AR_SEEDS],
    ),
    "webdataset": (
        "WebDataset tar shards: member names, types and sizes, labels, JSON, images, structure",
        [(s, "data/**/*.tar", TF_OPS, "data", 1) for s in ("wds-png", "wds-100", "wds-photos")],
    ),
    "parquet": (
        "Parquet files of an export: footers, schemas, row groups, codecs, image bytes and paths, labels",
        [(s, "data/data/*.parquet", TF_OPS, "data", 1) for s in ("pq-10", "pq-100", "pq-photos")],
    ),
    "dataset-info": (
        "TFDS's dataset_info.json (in TFDS folders and cifarkit's TFRecord exports)",
        [
            (s, "data/**/dataset_info.json", META_OPS, "data", 1)
            for s in ("tfds-10", "tfds-100", "tfds-layout", "tfr-png", "tfr-photos", "tfds-ar", "ar-png")
        ],
    ),
    "features-json": (
        "TFDS's features.json (image shape and encoding, numClasses)",
        [
            (s, "data/**/features.json", META_OPS, "data", 1)
            for s in ("tfds-10", "tfds-100", "tfds-layout", "tfr-raw", "tfr-photos-raw")
        ],
    ),
    "label-names": (
        "labels.txt of an export, TFDS's label.labels.txt and coarse_label.labels.txt",
        [
            (s, f, META_OPS, "data", 1)
            for s, f in (
                ("tfds-10", "data/label.labels.txt"),
                ("tfds-100", "data/*.labels.txt"),
                ("tfr-png", "data/label.labels.txt"),
                ("png-tree", "data/labels.txt"),
                ("png-tree-100", "data/labels.txt"),
            )
        ],
    ),
    "cifarkit-info": (
        "cifarkit_info.json of PNG-tree and TFRecord exports",
        [
            (s, "data/**/cifarkit_info.json", META_OPS, "data", 1)
            for s in ("png-tree", "png-tree-100", "tfr-png", "tfr-raw", "tfr-100", "tfr-photos", "tfds-layout")
        ],
    ),
    "manifest-csv": (
        "manifest.csv of a PNG-tree export",
        [(s, "data/manifest.csv", META_OPS, "data", 1) for s in ("png-tree", "png-tree-100")],
    ),
    "export-state": (
        ".cifarkit-export.json: resuming or overwriting an export; reading what it left",
        [
            (s, "out/.cifarkit-export.json", ("export-again", "info", "pipeline"), "out", 1)
            for s in ("export-finished", "export-finished-tfr", "export-unfinished", "export-users-file")
        ],
    ),
    "run-config": (
        "a run's config.json, read by evaluate and by train resuming",
        [("run", "run/config.json", ("evaluate", "resume"), "run", 1)],
    ),
    "report-json": ("a finished run's report.json, read by train", [("run", "run/report.json", ("resume",), "run", 1)]),
    "backup-state": (
        "backup/state.json of a run cut off, read to resume",
        [("run-backup", "run/backup/state.json", ("resume-backup",), "run", 1)],
    ),
    "images": (
        "PNG and JPEG files in image trees: headers, chunks, markers; a 98-megapixel bomb",
        [
            ("photos-png", "data/**/*.png", ("info", "export", "pipeline", "predict"), "data", 1),
            ("photos-jpg", "data/**/*.jpg", ("info", "export", "pipeline", "predict"), "data", 1),
            ("png-tree", "data/**/*.png", ("info", "pipeline"), "data", 1),
            ("photos-bomb", "data/**/big.png", ("pipeline", "predict"), "data", 0.02),
        ],
    ),
    "tflite": (
        ".tflite flatbuffers (tables, vectors, offsets) run by predict",
        [("tflite", "model.tflite", ("predict",), "images", 1)],
    ),
}
LEGACY_TARGETS = {
    "cifar-batches": "CIFAR python pickles (protocols 2-5), .bin batches and label-name files",
    "cifar-archives": "CIFAR archives: tar, tar.gz, tar.bz2, tar.xz (bytes, tar headers, members)",
    "idx": "MNIST-family IDX files, plain and gzipped, headers mutated most; a gzip bomb",
}
# Targets that make their own inputs (fuzz_listing.py), from no seed in the store.
OWN_TARGETS = {
    "tree-listing": "a photo tree's listing on disk: odd file and folder names, links, empty and tiny "
    "classes, read through the CLI; its temporary files damaged",
}
TARGETS = {**LEGACY_TARGETS, **{name: spec[0] for name, spec in FOLDER_TARGETS.items()}, **OWN_TARGETS}
TENSORFLOW_FREE = ("cifar-batches", "cifar-archives", "idx")
STORE_FREE = (*TENSORFLOW_FREE, *OWN_TARGETS)
# Of the promised 1 GB a command may peak at on a few MB of input, TensorFlow's start takes about
# 700 MB: a case of the other targets may add at most this much. The byte readers keep their
# tighter bound (they never import TensorFlow).
MEMORY_MB = {name: 64 if name in TENSORFLOW_FREE else 300 for name in TARGETS}


def target_seeds(target: str, store: Path) -> list[Seed]:
    if target == "cifar-batches":
        return fuzz_seeds.cifar_seeds()[0]
    if target == "cifar-archives":
        return fuzz_seeds.cifar_seeds()[1]
    if target == "idx":
        return fuzz_seeds.idx_seeds() + [fuzz_seeds.idx_bomb()]
    if target in OWN_TARGETS:
        import fuzz_listing

        return fuzz_listing.seeds()
    counts = fuzz_seeds.store_counts(store)
    seeds = []
    for name, pattern, ops, reads, weight in FOLDER_TARGETS[target][1]:
        files = sorted(p for p in (store / name).glob(pattern) if p.is_file() and not p.is_symlink())
        for path in files:
            data = path.read_bytes()
            structure = rec.tflite_structure(data) if target == "tflite" else []
            seeds.append(
                Seed(
                    target,
                    name,
                    data,
                    structure=structure,
                    file=str(path.relative_to(store / name)),
                    ops=ops,
                    reads=reads,
                    counts=counts.get(name, {}),
                    weight=weight / len(files),
                )
            )
    return seeds


# ---------------------------------------------------------------------------
# Making a case
# ---------------------------------------------------------------------------


def _legacy_data(rng: random.Random, seed: Seed, pool: list[bytes]) -> bytes:
    import gzip
    import io
    import tarfile

    rounds = rng.choice([1, 1, 2, 3, 4])
    if seed.kind == "idx" and seed.name.endswith(".gz") and rng.random() < 0.5 and len(seed.data) < 100_000:
        data = gzip.decompress(seed.data)  # the IDX bytes inside an intact gzip stream
        for _ in range(rounds):
            data = mut.mutate_bytes(rng, data, list(range(16)), pool)
        return gzip.compress(data, 1, mtime=0)
    if seed.kind in ("file", "idx"):
        data = seed.data
        for _ in range(rounds):
            data = mut.mutate_bytes(rng, data, seed.structure, pool)
        return data
    mode = rng.randrange(3)
    if mode == 0:  # the compressed bytes themselves
        data = seed.data
        for _ in range(rounds):
            data = mut.mutate_bytes(rng, data, [], pool)
        return data
    tar, recompress = _decompress(seed)
    if mode == 1:  # tar headers (the first 257 bytes of a header block hold its fields)
        with tarfile.open(fileobj=io.BytesIO(tar)) as src:
            headers = [m.offset + k for m in src.getmembers() for k in range(257)]
        for _ in range(rounds):
            tar = mut.mutate_bytes(rng, tar, headers, pool)
        return recompress(tar)
    with tarfile.open(fileobj=io.BytesIO(tar)) as src:
        members = [(m.name, src.extractfile(m).read()) for m in src if m.isfile()]
    i = rng.randrange(len(members))
    name, data = members[i]
    members[i] = (name, mut.mutate_bytes(rng, data, mut.opcode_offsets(data), pool))
    if rng.random() < 0.1:
        members.append(members[i])  # the same name twice
    return recompress(fuzz_seeds.tar_bytes(members))


def _decompress(seed: Seed):
    import bz2
    import gzip
    import lzma

    if seed.name == ".tar.gz":
        return gzip.decompress(seed.data), lambda b: gzip.compress(b, 1, mtime=0)
    if seed.name == ".tar.bz2":
        return bz2.decompress(seed.data), lambda b: bz2.compress(b, 1)
    if seed.name == ".tar.xz":
        return lzma.decompress(seed.data), lambda b: lzma.compress(b, preset=0)
    return seed.data, lambda b: b


@dataclass
class Pools:
    """Splice donors: legacy file bytes, TFRecord records, image payloads."""

    files: list[bytes] = field(default_factory=list)
    records: list[bytes] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    @staticmethod
    def of(seeds: list[Seed], store: Path | None) -> Pools:
        pools = Pools(files=[s.data for s in seeds if s.kind == "file"])
        for s in seeds:
            if ".tfrecord-" in s.file:
                pools.records += rec.records_of(s.data)[:2]
        if store is not None and (store / "pool").is_dir():
            pools.images = {
                "bomb": (store / "pool" / "bomb.png").read_bytes(),
                "big": (store / "pool" / "big.png").read_bytes(),
                "jpeg": (store / "pool" / "photo.jpg").read_bytes(),
            }
        return pools


def _mutate_file(rng: random.Random, seed: Seed, pools: Pools) -> tuple[bytes, str]:
    if seed.target == "tfrecord-framing":
        return rec.mutate_framing(rng, seed.data, pools.records)
    if seed.target == "tfrecord-example":
        return rec.mutate_example(rng, seed.data, pools.images)
    if seed.target == "parquet":
        return fuzz_parquet.mutate_parquet(rng, seed.data, pools.images)
    if seed.target == "webdataset":
        return fuzz_tar.mutate_shard(rng, seed.data, pools.images)
    if seed.target == "arrayrecord":
        return fuzz_arrayrecord.mutate_array_record(rng, seed.data, pools.images)
    if seed.target in ("label-names",):
        return mut.mutate_lines(rng, seed.data)
    if seed.target == "manifest-csv":
        return mut.mutate_csv(rng, seed.data)
    if seed.target == "images":
        return (rec.mutate_jpeg if seed.file.endswith(".jpg") else rec.mutate_png)(rng, seed.data)
    if seed.target == "tflite":
        data, note = seed.data, []
        for _ in range(rng.choice([1, 1, 2, 4])):
            data, what = mut.mutate_binary(rng, data, seed.structure)
            note.append(what)
        return data, "; ".join(note)
    return mut.mutate_json(rng, seed.data)


# Targets whose files an export or a TFDS folder names: a link out of the folder must be refused.
LINKS_REFUSED = (
    "tfrecord-framing",
    "arrayrecord",
    "webdataset",
    "parquet",
    "dataset-info",
    "features-json",
    "label-names",
    "cifarkit-info",
    "manifest-csv",
)


def make_case(rng: random.Random, seeds: list[Seed], pools: Pools) -> Case:
    seed = rng.choices(seeds, weights=[s.weight for s in seeds])[0]
    if seed.kind == "listing":
        import fuzz_listing

        return fuzz_listing.make_case(rng, seed)
    if seed.kind != "folder":
        return Case(seed, data=_legacy_data(rng, seed, pools.files))
    case = Case(seed, op=rng.choice(seed.ops))
    if case.op == "export":
        prefill = rng.choice(["export-finished", "export-users-file"]) if rng.random() < 0.3 else ""
        case.options = {"format": rng.choice(["png", "png", "tfrecord"]), "prefill": prefill}
    elif case.op == "export-again":
        case.options = {"overwrite": rng.random() < 0.5}
    if seed.target in LINKS_REFUSED and rng.random() < 0.04:
        case.changes[seed.file] = Link(f"{mut.CASE}/victim/{Path(seed.file).name}")
        case.note = "the file is a link to a copy outside the folder"
        return case
    case.changes[seed.file], case.note = _mutate_file(rng, seed, pools)
    if seed.target == "features-json" and rng.random() < 0.2:
        for labels in ("label.labels.txt", "coarse_label.labels.txt"):
            case.changes[str(Path(seed.file).parent / labels)] = None
        case.note += "; label files removed"
    return case


# ---------------------------------------------------------------------------
# Writing a case into its sandbox, and what may change there
# ---------------------------------------------------------------------------


def write_case(case: Case, root: Path, store: Path) -> Path:
    """The case under ``root`` (emptied first); returns the folder the ops work in (root/a/b)."""
    shutil.rmtree(root, ignore_errors=True)
    base = root / "a" / "b"
    shutil.copytree(store / case.seed.name, base, symlinks=True)
    for victim in VICTIMS:
        (root / victim).mkdir(parents=True, exist_ok=True)
        (root / victim / "keep.txt").write_text("a file outside the output folder\n")
    if case.options.get("prefill"):  # an earlier export that --overwrite replaces
        shutil.copytree(store / case.options["prefill"] / "out", base / "out")
    for rel, change in case.changes.items():
        path = base / rel
        if change is None:
            path.unlink(missing_ok=True)
        elif isinstance(change, Link):
            target = Path(str(change).replace(mut.CASE, str(root)))
            shutil.copy(path, target)  # what the link leads to reads as the file did
            path.unlink()
            path.symlink_to(target)
        else:
            path.write_bytes(change.replace(mut.CASE.encode(), str(root).encode()))
    return base


def snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    """Every file and folder under ``root`` but ``skip`` and lock files: (kind, size, mtime)."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip]
        for name in dirs + files:
            if name.endswith(".lock"):
                continue
            path = Path(folder, name)
            info = os.lstat(path)
            is_dir = path.is_dir() and not path.is_symlink()
            seen[str(path.relative_to(root))] = ("dir", 0, 0) if is_dir else ("file", info.st_size, info.st_mtime_ns)
    return seen


def changed_outside(before: dict, after: dict) -> str | None:
    gone = sorted(set(before) - set(after))
    new = sorted(set(after) - set(before))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    if not (gone or new or changed):
        return None
    parts = [
        f"{what}: {', '.join(names[:3])}"
        for what, names in (("removed", gone), ("written", new), ("changed", changed))
        if names
    ]
    return "; ".join(parts)
