"""The ``tree-listing`` target of scripts/fuzz_sources.py: a photo tree's listing kept ON DISK
(cifarkit/sources/listing.py past its threshold, read back by file_names.FileNames).

Each case sets the listing's threshold to nothing inside the worker (and its order made a few
files at a time, names read one by one, selections copied), then restores it. Two kinds:

- a tree of odd names, written in the sandbox (unicode, NFC beside NFD, names differing by case,
  names near NAME_MAX, names that are not printable, files that are not images, hidden files,
  empty class folders, thirty classes of a file, links out of the tree and dangling ones), read
  through the listing and an entry point of the CLI (info, export to PNG or TFRecord with two
  workers, stats, ``cifarkit.load``). The promises: the same classes, paths, names and labels
  as the listing in memory gives for the same tree (or the same one-line error), each class's
  count the tree's, and nothing written outside ``out/``;
- a listing's temporary files damaged through their :class:`SpilledBytes` (bytes flipped or
  zeroed, the file cut short, a length, start or folder made huge or negative, records swapped),
  before the order is made or after, then read every way (items, slices, selections, pickles).
  The read is the listing as made, or a one-line SourceError. A damaged file can still hold
  records that lie within it and names that decode (a name's bytes changed for another name, two
  records swapped): that read is counted as ``undetected`` (the records are checked for their
  range, not their content), not as a finding.

The case's bytes (``Case.data``) are its spec as JSON: a saved finding is that spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pickle
import random
import shutil
from pathlib import Path

import fuzz_ops as ops
import fuzz_targets as targets
import numpy as np
from fuzz_seeds import Seed
from fuzz_targets import Case

TARGET = "tree-listing"
OPS = ("listing", "info", "export-png", "export-tfrecord", "stats", "pipeline", "records", "records")
CLASS_NAMES = ("cat", "Cat", "café", "cafe\u0301", "日本", "dir with space", "-dash", "a.png", "x😀", "z" * 40)
FILE_STEMS = ("IMG 0001", "img 0001", "ünï cødé", "ünï cöde\u0301", "写真_1", "x😀", "a", "-", "..png", "Ω")
EXTENSIONS = (".png", ".png", ".png", ".PNG", ".jpg", ".Jpeg", ".txt", "")


def seeds() -> list[Seed]:
    return [Seed(TARGET, "tree", b"", kind="listing", ops=OPS)]


def _name(rng: random.Random, stems: tuple[str, ...], ext: str = "", odd: bool = False) -> str:
    roll = rng.random()
    if roll < 0.06:  # near NAME_MAX (255 bytes): two-byte characters to 250, then the extension
        return "é" * ((250 - len(ext)) // 2) + ext
    if odd and roll < 0.2:  # not printable, or a byte that is not UTF-8 (as os.fsdecode gives it)
        return rng.choice(("new\nline", "tab\there", "del\x7f", "nb\xa0sp", "bad-\udcff-utf8")) + ext
    if roll < 0.1:
        return "." + rng.choice(stems) + ext  # hidden
    return f"{rng.choice(stems)}{rng.randrange(100) if rng.random() < 0.7 else ''}{ext}"


def make_tree_spec(rng: random.Random) -> dict:
    """Splits -> class folders -> files: (name, kind), kind png, junk (not an image), link-out,
    dangling (a link to nothing)."""
    many, odd = rng.random() < 0.15, rng.random() < 0.1  # odd: names the tree's reading refuses
    junk = 3 if rng.random() < 0.3 else 0  # files named as images that are none (--skip-bad)
    splits = {}
    for split in ("train", "test") if rng.random() < 0.5 else ("",):
        classes = {}
        for c in range(30 if many else rng.choice((1, 2, 3, 5))):
            name = f"c{c:02d}" if many else _name(rng, CLASS_NAMES, odd=odd)
            files = {}
            for _ in range(1 if many else rng.choice((0, 1, 2, 4, 9))):
                kind = rng.choices(("png", "junk", "link-out", "dangling"), (20, junk, 1, 0.5))[0]
                files[_name(rng, FILE_STEMS, rng.choice(EXTENSIONS), odd)] = kind
            classes[name] = files
        splits[split] = classes
    return {"splits": splits, "chunk": rng.choice((1, 2, 5, 40)), "span": rng.choice((1, 64, 1 << 20))}


def make_case(rng: random.Random, seed: Seed) -> Case:
    op = rng.choice(seed.ops)
    spec = make_tree_spec(rng)
    case = Case(seed, op=op)
    if op == "records":
        spec["damage"] = _damage_spec(rng)
        case.note = json.dumps(spec["damage"])
    else:
        spec["skip_bad"] = rng.random() < 0.5
        case.note = f"{sum(len(f) for c in spec['splits'].values() for f in c.values())} files, read by {op}"
    case.options = spec
    case.data = json.dumps({"op": op, **spec}, ensure_ascii=True).encode()
    return case


def _damage_spec(rng: random.Random) -> dict:
    return {
        "stage": rng.choice(("folder files", "ordered", "ordered", "selection")),
        "file": rng.choice(("names", "records")),
        "how": rng.choice(("flip", "flip", "zero", "truncate", "huge", "negative", "folder", "swap")),
        "at": rng.random(),
        "bytes": rng.choice((1, 1, 2, 4, 16)),
        "xor": rng.randrange(1, 256),
    }


@contextlib.contextmanager
def on_disk(chunk: int, span: int):
    """The listing's constants made tiny (every listing on disk), and restored after."""
    from cifarkit.sources import file_names, listing

    old = listing.IN_MEMORY_BYTES, listing.CHUNK_FILES, file_names.SPAN_BYTES, file_names.SELECTION_BYTES
    listing.IN_MEMORY_BYTES, listing.CHUNK_FILES, file_names.SPAN_BYTES, file_names.SELECTION_BYTES = 0, chunk, span, 0
    try:
        yield
    finally:
        listing.IN_MEMORY_BYTES, listing.CHUNK_FILES, file_names.SPAN_BYTES, file_names.SELECTION_BYTES = old


# ---------------------------------------------------------------------------
# Writing a tree, and what its listing must hold
# ---------------------------------------------------------------------------


def _png(seed: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((3 + seed % 4, 4, 3), seed % 256, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def write_tree(spec: dict, data: Path, outside: Path) -> None:
    """The tree under ``data``, less the names the filesystem refuses (too long once encoded, say)."""
    for k, (split, cls, name, kind) in enumerate(
        (split, cls, name, kind)
        for split, classes in spec["splits"].items()
        for cls, files in classes.items()
        for name, kind in [("", ""), *files.items()]
    ):
        path = (data / split / cls if split else data / cls) / name
        with contextlib.suppress(OSError):
            if not name:
                path.mkdir(parents=True, exist_ok=True)
            elif kind in ("png", "junk"):
                path.write_bytes(_png(k) if kind == "png" else b"not an image, whatever its name says\n")
            else:
                target = outside / (f"photo-{k}.png" if kind == "link-out" else "nothing-here")
                if kind == "link-out":
                    target.write_bytes(_png(k))
                path.symlink_to(target)


def expected_counts(spec: dict, data: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """split -> class -> (files cifarkit lists, of them not images), as the tree stands."""
    from cifarkit.sources.folder import IMAGE_EXTENSIONS

    found: dict[str, dict[str, tuple[int, int]]] = {}
    for split, classes in spec["splits"].items():
        for cls, files in classes.items():
            folder = data / split / cls if split else data / cls
            listed = [
                (name, kind)
                for name, kind in files.items()
                if not name.startswith(".")
                and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
                and (folder / name).is_file()
            ]
            if not cls.startswith(".") and folder.is_dir():  # a split of class folders, if none holds images
                found.setdefault(split or "train", {})
            if listed and not cls.startswith("."):
                found[split or "train"][cls] = (len(listed), sum(k == "junk" for _, k in listed))
    return found


def _read(read):
    """What ``read()`` gave, or the one-line cifarkit error it raised."""
    from cifarkit.errors import SourceError

    try:
        return read()
    except SourceError as exc:
        return exc


def _listing_of(dataset) -> dict:
    if not hasattr(dataset, "batches"):
        return {"error": f"{type(dataset).__name__}: {dataset}"}
    seen = {"classes": list(dataset.class_names)}
    for split, batches in dataset.batches.items():
        seen[split] = [(list(b.images.paths), list(b.source_files), b.labels.tolist()) for b in batches]
    return seen


def check_listing(spec: dict, data: Path, memory, disk) -> str | None:
    """Why the listing on disk breaks a promise, or None."""
    if _listing_of(disk) != _listing_of(memory):
        return f"on disk the listing reads otherwise than in memory ({str(disk)[:200]} / {str(memory)[:200]})"
    if not hasattr(disk, "batches"):
        return None
    expect = expected_counts(spec, data)
    if set(disk.batches) != set(expect):
        return f"splits {sorted(disk.batches)} where the tree holds {sorted(expect)}"
    for split, batches in disk.batches.items():
        counts = {}
        for batch in batches:
            if len(batch.labels) and not batch.images.paths.on_disk:
                return f"{split}: the listing stayed in memory"
            for label in batch.labels.tolist():
                name = disk.class_names[label]
                counts[name] = counts.get(name, 0) + 1
        if counts != {cls: n for cls, (n, _) in expect.get(split, {}).items()}:
            return f"{split}: {counts} files a class where the tree holds {expect.get(split)}"
    return None


# ---------------------------------------------------------------------------
# A tree case: the listing, then an entry point of the CLI, all with the listing on disk
# ---------------------------------------------------------------------------


def run_tree_case(case: Case, base: Path) -> str | None:
    """Why the tree's reading broke a promise, or None; cifarkit's own errors propagate."""
    from cifarkit.sources.folder import read_folder

    spec, data = case.options, base / "data"
    memory = _read(lambda: read_folder(data))
    with on_disk(spec["chunk"], spec["span"]):
        reason = check_listing(spec, data, memory, _read(lambda: read_folder(data)))
        if reason or case.op == "listing":
            return reason
        return _CLI[case.op](case, base)


def _totals(case: Case, base: Path, skipped: bool = False) -> dict[str, int]:
    """Images per split the tree holds (less those that are no image, where they are skipped)."""
    expect = expected_counts(case.options, base / "data")
    return {split: sum(n - bad * skipped for n, bad in classes.values()) for split, classes in expect.items()}


def _info(case: Case, base: Path) -> str | None:
    from cifarkit.cli import data_commands

    ops.install_capture()
    ops.call(data_commands.info, base / "data")
    return ops.check_labelled(ops.CAPTURED.pop("dataset"), _totals(case, base), touch=False)


def _export(case: Case, base: Path) -> str | None:
    from cifarkit.cli import data_commands as commands

    skip, fmt = bool(case.options["skip_bad"]), commands.ExportFormat(case.op.removeprefix("export-"))
    ops.call(commands.export, format=fmt, out=base / "out", source=base / "data", workers=2, skip_bad=skip, quiet=True)
    return ops.read_back(base / "out", _totals(case, base, skipped=skip))


def _pipeline(case: Case, base: Path) -> str | None:
    counted = dataclasses.replace(case, seed=dataclasses.replace(case.seed, counts=_totals(case, base)))
    return ops.op_pipeline(base, counted, base)  # every split read to its end, as many as the tree holds


def _stats(case: Case, base: Path) -> str | None:
    return ops.op_stats(base, case, base)


_CLI = {"info": _info, "export-png": _export, "export-tfrecord": _export, "stats": _stats, "pipeline": _pipeline}


# ---------------------------------------------------------------------------
# A records case: the listing's temporary files damaged, then read every way
# ---------------------------------------------------------------------------


def _folders_of(spec: dict) -> list[tuple[str, list[str]]]:
    """The spec's class folders of its first split as (folder, sorted names), printable names only."""
    classes = next(iter(spec["splits"].values()))
    folders = []
    for cls, files in classes.items():
        names = sorted(n for n in files if n.isprintable() and "\udcff" not in n)
        if names and cls.isprintable():
            folders.append((f"/photos/{cls}", names))
    return folders


def _views(names) -> dict[str, list[str]]:
    n = len(names)
    picks = [0, n - 1, n // 2, n - 1, 0]
    return {
        "all": list(names),
        "items": [names[i] for i in range(-n, n)],
        "slice": list(names[1::2]),
        "reversed": list(names[::-1]),
        "selection": list(names[picks]),
        "mask": list(names[np.arange(n) % 2 == 0]),
        "pickled": list(pickle.loads(pickle.dumps(names[n // 3 :]))),
    }


def _damage(spilled, damage: dict) -> None:
    """Change ``spilled``'s file in place (its ``size``, what reads trust, kept)."""
    from cifarkit.sources.file_names import RECORD

    fd, size, how = spilled._handle.fileno(), spilled.size, damage["how"]
    if not size:
        return
    at = int(damage["at"] * size)
    if how == "truncate":
        os.ftruncate(fd, at)
    elif how in ("flip", "zero"):
        got = bytearray(os.pread(fd, damage["bytes"], at))
        os.pwrite(fd, bytes(b ^ damage["xor"] if how == "flip" else 0 for b in got), at)
    elif damage["file"] == "names":  # a names file has no fields: huge bytes, or a span repeated
        os.pwrite(fd, b"\xff" * damage["bytes"] if how != "swap" else os.pread(fd, 8, 0), at)
    elif damage.get("lengths"):  # the folder-by-folder lengths: int32 each
        value = {"huge": 2**31 - 1, "negative": -5, "folder": 2**20}.get(how, 0)
        i = at // 4 * 4
        os.pwrite(fd, np.array([value], "<i4").tobytes() if how != "swap" else os.pread(fd, 4, 0), i)
    else:
        i = at // RECORD.itemsize * RECORD.itemsize
        record = np.frombuffer(os.pread(fd, RECORD.itemsize, i), RECORD).copy()
        field = {"huge": "length", "negative": "start", "folder": "folder"}.get(how)
        if field:
            record[field] = {"length": 2**31 - 1, "start": -1, "folder": 99}[field]
            os.pwrite(fd, record.tobytes(), i)
        else:  # two records swapped: each still a name that was listed
            first = os.pread(fd, RECORD.itemsize, 0)
            os.pwrite(fd, record.tobytes(), 0)
            os.pwrite(fd, first, i)


def run_records_case(case: Case) -> str:
    """``ok`` (read as made), ``undetected`` (read otherwise, no error); a SourceError propagates,
    anything else is a crash."""
    from cifarkit.sources import listing

    spec, damage = case.options, case.options["damage"]
    folders = _folders_of(spec) or [("/photos/one", ["a.png"])]
    labels = list(range(len(folders)))
    held = listing.SplitListing()
    for folder, names in folders:
        held.add(folder, names)
    expect_names, expect_labels = held.stratified(labels)
    expect = _views(expect_names)
    with on_disk(spec["chunk"], spec["span"]):
        made = listing.SplitListing()
        for folder, names in folders:
            made.add(folder, names)
        if damage["stage"] == "folder files":
            names_file, lengths_file = made._files
            target = names_file if damage["file"] == "names" else lengths_file
            _damage(target, {**damage, "lengths": target is lengths_file})
        names, ordered = made.stratified(labels)
        if damage["stage"] == "selection":  # a selection's own table of records, on disk
            names = names[np.arange(len(names))[::-1].copy()][::-1]
        if damage["stage"] != "folder files":
            store = names._store
            _damage(store.names if damage["file"] == "names" else store.table, damage)
        seen = _views(names)
    if ordered.tolist() != expect_labels.tolist():
        raise AssertionError("the labels of the order differ")  # never made from the files
    return "ok" if seen == expect else "undetected"


def run_case(case: Case, root: Path, classify) -> tuple[str, str]:
    """(outcome, detail) of a case of this target, in a sandbox under ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    base = root / "a" / "b"
    base.mkdir(parents=True)
    for victim in targets.VICTIMS:
        (root / victim).mkdir(parents=True, exist_ok=True)
        (root / victim / "keep.txt").write_text("a file outside the output folder\n")
    outside = root / "elsewhere"  # what links out of the tree lead to
    outside.mkdir()
    if case.op != "records":
        write_tree(case.options, base / "data", outside)
        (base / "data").mkdir(parents=True, exist_ok=True)
    before = targets.snapshot(root, base / "out")  # the tree's reading changes nothing outside out/
    try:
        if case.op == "records":
            outcome, detail = run_records_case(case), ""
        else:
            reason = run_tree_case(case, base)
            outcome, detail = ("ok", "") if reason is None else (f"bad-result:{case.op}", reason)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome, detail = classify(exc)
    outside_out = targets.changed_outside(before, targets.snapshot(root, base / "out"))
    if outside_out:
        return "bad-result:outside-out", f"{outside_out} ({outcome}: {detail[-300:]})"
    return outcome, detail
