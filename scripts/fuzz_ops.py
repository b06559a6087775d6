"""How cifarkit reads a case of scripts/fuzz_sources.py, through the entry points its commands
use (``info``, ``export``, ``stats``, ``cifarkit.load``, ``evaluate``, ``train`` resuming,
``predict``), and the promises checked on what comes back: labels in range, uint8 images, the
images each split was written with, an export that reads back, an unfinished export never read
as a finished one.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from fuzz_targets import Case

# ---------------------------------------------------------------------------
# The byte readers' cases: a CIFAR file, archive or IDX pair, read as open_source reads them
# ---------------------------------------------------------------------------


def check_dataset(dataset) -> str | None:
    """Why a dataset the byte readers read breaks the promise, or None."""
    for split, batches in dataset.batches.items():
        for b in batches:
            images = np.asarray(b.images)
            n = len(b.labels)
            grey = dataset.name in ("mnist", "fashion_mnist", "kmnist") or images.shape[-1:] == (1,)
            expected = (n, 28, 28, 1) if grey else (n, 32, 32, 3)
            if images.dtype != np.uint8 or images.shape != expected:
                return f"{split} images {images.dtype} {images.shape} for {n} labels"
            if b.labels.dtype != np.int64 or (
                n and not 0 <= b.labels.min() <= b.labels.max() < len(dataset.class_names)
            ):
                return f"{split} labels out of range or not int64"
            if len(b.source_files) != n:
                return f"{split}: {len(b.source_files)} source files for {n} images"
            int(images.sum(dtype=np.int64))  # touch every pixel
    return None


class Slot:
    """A file rewritten in place for every case: opening with O_TRUNC costs ~3 ms on some disks."""

    def __init__(self, path: Path):
        self.path, self.fh = path, open(path, "wb")  # noqa: SIM115 - held for the whole run

    def put(self, data: bytes) -> None:
        self.fh.seek(0)
        self.fh.write(data)
        self.fh.truncate()
        self.fh.flush()  # in the kernel's hands: still there if this process dies next


def read_bytes_case(case: Case, slots: dict[str, Slot]):
    """A CIFAR file, archive or IDX case, read as ``open_source`` reads its kind."""
    from cifarkit.sources import idx, layouts

    seed, data = case.seed, case.data
    if seed.kind == "file":
        files = {name: (lambda d=d: d) for name, d in seed.companions.items() if layouts.is_dataset_file(name)}
        files[seed.name] = lambda: data
        return layouts._read_layout(seed.layout, files, Path(seed.name), "")
    if seed.kind == "idx":
        for name, other in seed.companions.items():
            slots[name].put(other)
        slots[seed.name].put(data)
        return idx.read_idx_folder(slots[seed.name].path.parent, verify=False)
    slots[seed.name].put(data)
    if len(data) % 2:  # half the archives as info reads them, half as export does: members spilled to disk
        return layouts.read_cifar_archive(slots[seed.name].path, verify=True)
    from cifarkit.sources.spill import arrays_on_disk

    with arrays_on_disk():
        return layouts.read_cifar_archive(slots[seed.name].path, verify=True)


# ---------------------------------------------------------------------------
# Folder cases: the commands' own entry points
# ---------------------------------------------------------------------------

CAPTURED: dict = {}


def install_capture() -> None:
    """The CLI's ``info`` and ``export`` read their dataset through ``open_records``; keep what it
    returned so its images can be checked (once per process)."""
    from cifarkit.cli import data_commands

    original = data_commands.open_records
    if getattr(original, "captures", False):
        return

    def open_records(*args, **kwargs):
        dataset, sample = original(*args, **kwargs)
        CAPTURED["dataset"] = dataset
        return dataset, sample

    open_records.captures = True
    data_commands.open_records = open_records


class HarnessError(Exception):
    """The fuzzer called cifarkit wrongly (an entry point changed): not a finding about the input."""


def call(fn: Callable, *args, **kwargs):
    """``fn(*args, **kwargs)``; ``trust_model`` only where ``fn`` takes it. A signature that no
    longer fits is the harness's error, not cifarkit's."""
    signature = inspect.signature(fn)
    if "trust_model" not in signature.parameters:
        kwargs.pop("trust_model", None)
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        raise HarnessError(f"{fn.__module__}.{fn.__name__}: {exc}") from None
    return fn(*args, **kwargs)


def _images_of(batch):
    return batch.images  # an array, a list of arrays (mixed sizes) or LazyImages (decoded here)


def check_labelled(dataset, expect: dict | None, touch: bool = True) -> str | None:
    """Why ``dataset`` (a LabelledImages) breaks the promise, or None: uint8 (H, W, 1|3) images,
    int64 labels in range of its class names, one source file per image, and, where the case
    kept them, the seed's images per split."""
    names = len(dataset.class_names)
    coarse = len(dataset.coarse_class_names) if dataset.coarse_class_names is not None else None
    for split, batches in dataset.batches.items():
        count = 0
        for batch in batches:
            labels = np.asarray(batch.labels)
            if labels.dtype != np.int64 or labels.ndim != 1:
                return f"{split}: labels {labels.dtype} {labels.shape}"
            if len(labels) and not 0 <= labels.min() <= labels.max() < names:
                return f"{split}: labels {labels.min()}..{labels.max()} for {names} class names"
            if batch.coarse_labels is not None and len(labels):
                c = np.asarray(batch.coarse_labels)
                if coarse is None or c.dtype != np.int64 or not 0 <= c.min() <= c.max() < coarse:
                    return f"{split}: coarse labels {c.min()}..{c.max()} for {coarse} coarse names"
            if len(batch.source_files) != len(labels) or len(batch.images) != len(labels):
                return (
                    f"{split}: {len(batch.images)} images, {len(batch.source_files)} source files, {len(labels)} labels"
                )
            for image in _images_of(batch) if touch else ():
                image = np.asarray(image)
                if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3) or 0 in image.shape:
                    return f"{split}: an image {image.dtype} {image.shape}"
                int(image.sum(dtype=np.int64))
            count += len(labels)
        if expect is not None and split in expect and count != expect[split]:
            return f"{split}: {count} images where {expect[split]} were written"
    if expect is not None and set(dataset.batches) != set(expect):
        return f"splits {sorted(dataset.batches)} where {sorted(expect)} were written"
    return None


def unfinished(folder: Path) -> str | None:
    """An export cut off in a split (its staging folder and no finished split) that read as data."""
    for staging in folder.glob(".partial-*"):
        if not (folder / staging.name[len(".partial-") :]).is_dir():
            return f"an export cut off in its {staging.name[len('.partial-') :]!r} split read as a finished one"
    return None


def op_info(base: Path, case: Case, store: Path) -> str | None:
    from cifarkit.cli import data_commands

    install_capture()
    call(data_commands.info, base / case.seed.reads)
    dataset = CAPTURED.pop("dataset")
    return check_labelled(dataset, case.seed.counts if case.trusts_counts else None) or unfinished(
        base / case.seed.reads
    )


def op_export(base: Path, case: Case, store: Path) -> str | None:
    from cifarkit.cli import data_commands

    install_capture()
    fmt = data_commands.ExportFormat(case.options["format"])
    call(
        data_commands.export,
        format=fmt,
        out=base / "out",
        source=base / case.seed.reads,
        workers=1,
        overwrite=bool(case.options.get("prefill")),
        quiet=True,
    )
    dataset = CAPTURED.pop("dataset")
    written = {s: dataset.count(s) for s in dataset.splits}
    return check_labelled(dataset, case.seed.counts if case.trusts_counts else None, touch=False) or read_back(
        base / "out", written
    )


def read_back(out: Path, written: dict[str, int]) -> str | None:
    """What an export wrote must read back, every image, as many as it wrote per split."""
    from cifarkit.sources import open_source

    try:
        return check_labelled(open_source(out), written)
    except Exception as exc:  # noqa: BLE001 - a refusal of its own output is the finding
        from cifarkit.cli.app import tensorflow_error

        first = (tensorflow_error(exc) or str(exc)).strip().splitlines() or [""]
        return f"what the export wrote does not read back ({type(exc).__name__}: {first[0][:300]})"


def op_export_again(base: Path, case: Case, store: Path) -> str | None:
    """The same export run again into its folder (a resume), or with --overwrite."""
    from cifarkit.cli import data_commands

    fmt = "tfrecord" if (base / "out" / "dataset_info.json").is_file() else "png"
    call(
        data_commands.export,
        format=data_commands.ExportFormat(fmt),
        out=base / "out",
        source=base / "data",
        workers=1,
        overwrite=case.options["overwrite"],
        quiet=True,
    )
    return read_back(base / "out", case.seed.counts)


def op_pipeline(base: Path, case: Case, store: Path) -> str | None:
    """``cifarkit.load`` of every split, batched, read to the end (what stats and train read)."""
    import cifarkit

    splits, info = cifarkit.load(base / case.seed.reads, split=None, batch_size=16, image_size=32, with_info=True)
    classes = info.features["label"].num_classes
    for split, ds in splits.items():
        count = 0
        for images, labels in ds.as_numpy_iterator():
            if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
                return f"{split}: a batch {images.dtype} {images.shape}"
            if len(labels) and not 0 <= labels.min() <= labels.max() < classes:
                return f"{split}: labels {labels.min()}..{labels.max()} for {classes} classes"
            count += len(labels)
        listed = info.splits[split].num_examples
        if count != listed or (case.trusts_counts and count != case.seed.counts.get(split)):
            return f"{split}: {count} images read, {listed} listed, {case.seed.counts.get(split)} written"
    return unfinished(base / case.seed.reads)


def op_stats(base: Path, case: Case, store: Path) -> str | None:
    from cifarkit.cli import data_commands

    (base / "out").mkdir(exist_ok=True)
    call(data_commands.stats, source=base / case.seed.reads, out=base / "out" / "stats.json", quiet=True)
    stats = json.loads((base / "out" / "stats.json").read_text())
    numbers = [v for k in ("mean", "std") for v in stats.get(k, [])]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1 for v in numbers):
        return f"statistics {numbers} not within [0, 1]"
    return None


def op_predict(base: Path, case: Case, store: Path) -> str | None:
    from cifarkit.cli import evaluate_commands
    from cifarkit.evaluation.predict import find_images
    from cifarkit.modelio import tflite_process

    # A tiny model answers in milliseconds: a looping interpreter is stopped well within a case's time.
    tflite_process.ANSWER_SECONDS, tflite_process.ANSWER_SECONDS_PER_IMAGE = 3.0, 0.1

    model = base / "model.tflite" if case.seed.target == "tflite" else store / "tflite" / "model.tflite"
    images = base / case.seed.reads
    (base / "out").mkdir(exist_ok=True)
    call(evaluate_commands.predict, run=model, images=[images], top_k=3, csv=base / "out" / "p.csv", trust_model=True)
    rows = (base / "out" / "p.csv").read_text().splitlines()[1:]
    if len(rows) != len(find_images([images])):
        return f"{len(rows)} predictions for {len(find_images([images]))} images"
    return None


def op_evaluate(base: Path, case: Case, store: Path) -> str | None:
    """``cifarkit evaluate RUN``: the run's config.json, the run's own data through it (its splits,
    holdout and subset), its model (last.keras) on the test split."""
    from cifarkit.cli import evaluate_commands

    call(evaluate_commands.evaluate, run=base / "run", out=base / "out" / "eval", quiet=True)
    return None


class WouldTrain(Exception):
    """A resume was accepted and training would start: the reading is done."""


def op_resume(base: Path, case: Case, store: Path) -> str | None:
    """``cifarkit train`` re-run with the run's own command: the state check, then report.json."""
    from cifarkit.cli import model_commands
    from cifarkit.training import loop

    def refuse_to_train(self, *args, **kwargs):
        raise WouldTrain()

    with contextlib.ExitStack() as stack:
        if hasattr(loop, "_Run"):
            stack.enter_context(_patched(loop._Run, "train", refuse_to_train))
        call(
            model_commands.train,
            model="lenet5",
            workdir=base / "run",
            data=store / "png-tree" / "data",
            epochs=1,
            batch_size=4,
            quiet=True,
        )
    return None


@contextlib.contextmanager
def _patched(owner, name: str, value):
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def _field(obj, name: str):
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


class _Optimizer:
    def build(self, variables) -> None:
        pass


class _Model:
    """Stands in for the train model: a resume's weights are the weights file's business."""

    optimizer = _Optimizer()
    trainable_variables: tuple = ()

    def load_weights(self, path) -> None:
        Path(path).stat()


class _Placement:
    class strategy:
        scope = staticmethod(contextlib.nullcontext)


def op_resume_backup(base: Path, case: Case, store: Path) -> str | None:
    """What a resume reads of a backup: state.json checked, then each callback's state taken back
    (the weights stand-in aside); then the history and schedule the next epoch writes and uses."""
    from cifarkit.training.callbacks import Checkpoints, History, LearningRate
    from cifarkit.training.loop import restore_backup
    from cifarkit.training.rundir import read_backup

    folder = base / "run" / "backup"
    backup = call(read_backup, folder, 1)
    if backup is None:
        return None
    (base / "out").mkdir(exist_ok=True)
    stateful = [History(base / "out", 4), LearningRate("cosine", 0.05, 1), Checkpoints(None, base / "run")]
    call(restore_backup, folder, backup, _Model(), stateful, _Placement())
    epoch, step = _field(backup, "epoch"), _field(backup, "step")
    if type(epoch) is not int or type(step) is not int or not 0 <= epoch <= 1 or step < 0:
        return f"a resume from epoch {epoch!r}, step {step!r} of a 1-epoch run"
    stateful[0].write()
    stateful[1].rate(epoch)
    return None


OPS: dict[str, Callable[[Path, Case, Path], str | None]] = {
    "info": op_info,
    "export": op_export,
    "export-again": op_export_again,
    "pipeline": op_pipeline,
    "stats": op_stats,
    "predict": op_predict,
    "evaluate": op_evaluate,
    "resume": op_resume,
    "resume-backup": op_resume_backup,
}


def command_line(case: Case, base: Path, store: Path) -> str:
    """The cifarkit command that reads the case as its op does, for a saved finding."""
    reads = base / case.seed.reads
    model = base / "model.tflite" if case.seed.target == "tflite" else store / "tflite" / "model.tflite"
    return {
        "info": f"cifarkit info {reads}",
        "export": f"cifarkit export --data {reads} --format {case.options.get('format')} --out {base}/out "
        f"--workers 1{' --overwrite' if case.options.get('prefill') else ''}",
        "export-again": f"cifarkit export --data {base}/data --out {base}/out --workers 1"
        f"{' --overwrite' if case.options.get('overwrite') else ''} (--format as in out/)",
        "pipeline": f"python -c \"import cifarkit; [list(d) for d in cifarkit.load('{reads}', batch_size=16, "
        'image_size=32).values()]"',
        "stats": f"cifarkit stats --data {reads} --out {base}/out/stats.json",
        "predict": f"cifarkit predict {model} {reads} --trust-model --csv {base}/out/p.csv",
        "evaluate": f"cifarkit evaluate {base}/run --out {base}/out/eval",
        "resume": f"cifarkit train lenet5 --workdir {base}/run --data {store}/png-tree/data --epochs 1 --batch-size 4",
        "resume-backup": f"cifarkit train lenet5 --workdir {base}/run --data {store}/png-tree/data --epochs 1 "
        "--batch-size 4",
    }[case.op]
