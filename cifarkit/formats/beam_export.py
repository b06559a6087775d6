"""``cifarkit export --runner beam``: the export's file checks and writes as Apache Beam pipelines,
for conversions past one machine (TFDS builds its large datasets on Beam too).

Everything else is the local exporter's (:mod:`.export`): the source listing, the plan (the format
adapter's pieces), the export state, resuming, the lock on OUT and every metadata file, written by
this process once the pipeline is done. A pipeline's work items are small, ``(split, start,
stop)`` runs of image files to check, or ``(split, pieces)`` to write; a worker opens the source
again and writes with the adapter's own ``write_split`` (:mod:`.beam_work`), so the shards are the
bytes the local exporter writes, whatever the runner. A format whose pieces are files of their own
(TFRecord, WebDataset, Parquet, ArrayRecord) is written a piece per item; one that finishes a
split as a whole (the image trees' staged folder: :attr:`.base.FormatAdapter.pieces_apart`) a
split per item.

The results (images written and skipped, files that fail their check, a user's error in one line)
come back through one small JSON file, at the pipeline's ``--temp_location`` when it has one (a
folder every worker and this machine reach, as runners on other machines need) and otherwise in a
local temporary folder. Beam itself is an optional extra: ``pip install 'cifarkit[beam]'``.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

from .. import errors
from ..errors import CifarkitError, UsageError
from ..runtime.progress import Meter, progress_mode
from ..sources.labelled import LabelledImages, LazyImages
from .base import Piece
from .photos import FileCheck

RUNNERS = ("local", "beam")  # --runner: this machine's worker processes, or an Apache Beam pipeline
EXTRA = "pip install 'cifarkit[beam]'"
FILES_PER_ITEM = 1000  # image files one check item reads: ~1 s of a worker's time
# Beam's own workers log at INFO (connections, bundles): only their warnings reach the terminal.
WORKER_LOG_LEVEL = "WARNING"


def require_beam():
    """apache_beam, or one line naming the extra. Beam's import logs a warning on the root logger
    where Google Cloud's client is absent, which would also give the root logger a handler that
    prints every later warning of every library: a handler that drops it stands in meanwhile."""
    root = logging.getLogger()
    stand_in = logging.NullHandler() if not root.handlers else None
    if stand_in is not None:
        root.addHandler(stand_in)
    try:
        import apache_beam
        from apache_beam.options import pipeline_options  # noqa: F401  (its import logs the warning)
    except ImportError:
        raise UsageError(f"--runner beam needs Apache Beam (apache_beam), which is not installed: {EXTRA}") from None
    finally:
        if stand_in is not None:
            root.removeHandler(stand_in)
    return apache_beam


def make_runner(name: str, beam_options: str | None = None) -> BeamRunner | None:
    """The runner ``--runner NAME`` names: None for this machine's worker processes (the default)."""
    if name not in RUNNERS:
        raise UsageError(f"unknown runner '{name}'; choose one of {', '.join(RUNNERS)}")
    if name == "beam":
        return BeamRunner(beam_options)
    if beam_options is not None:
        raise UsageError(f"--beam-options is for --runner beam. Received: beam_options={beam_options!r}")
    return None


class BeamRunner:
    """Runs an export's file checks and writes as Beam pipelines; ``beam_options`` are Beam's own
    pipeline flags in one string (``--runner=DataflowRunner --project=...``). Without a
    ``--runner`` among them it is Beam's DirectRunner on this machine, in as many processes as the
    export's ``workers``."""

    name = "beam"

    def __init__(self, beam_options: str | None = None):
        require_beam()
        try:
            self.given = shlex.split(beam_options or "")
        except ValueError as exc:
            raise UsageError(f"--beam-options cannot be read as flags ({exc}). Received: {beam_options!r}") from None
        _check_flags(self.flags(1))

    def flags(self, workers: int) -> list[str]:
        """The pipeline's flags: the DirectRunner's defaults, then the user's (the last of a flag wins)."""
        mode = "multi_processing" if workers > 1 else "in_memory"
        return [
            "--runner=DirectRunner",
            f"--direct_running_mode={mode}",
            f"--direct_num_workers={workers}",
            f"--default_sdk_harness_log_level={WORKER_LOG_LEVEL}",
            *self.given,
        ]

    def check_files(self, dataset: LabelledImages, splits: tuple[str, ...], options) -> list[FileCheck]:
        """The image files of ``splits`` that cannot be read, checked on the pipeline's workers."""
        from .beam_work import CheckFiles, SourceRef, digest

        items = [(split, lo, hi) for split in splits for lo, hi in _file_runs(dataset, split)]
        ref = SourceRef(str(dataset.location), digest(dataset))
        results = self._run("Check files", items, CheckFiles(ref), options)
        checked = sum(r.get("checked", 0) for r in results)
        if checked != sum(hi - lo for _, lo, hi in items):
            raise CifarkitError(
                f"the Beam pipeline checked {checked:,} image files of {sum(hi - lo for _, lo, hi in items):,}"
            )
        # The command's own path of each file (the worker's is the same string: SourceRef).
        return [
            FileCheck(str(dataset.take(r["split"], r["index"], r["index"] + 1).images.paths[0]), None, error=r["error"])
            for r in results
            if "index" in r
        ]

    def write(self, dataset: LabelledImages, out: Path, plans: dict[str, list[Piece]], options, bad) -> int:
        """Write every planned piece of every split in one pipeline; returns the images skipped
        (finished by an earlier run of the same export)."""
        from .beam_work import SourceRef, WritePieces, digest, writer_fingerprint

        adapter = options.adapter
        items = (
            [(split, (piece,)) for split, pieces in plans.items() for piece in pieces]
            if adapter.pieces_apart
            else [(split, tuple(pieces)) for split, pieces in plans.items()]
        )
        ref = SourceRef(str(dataset.location), digest(dataset), frozenset(check.path for check in bad))
        started = time.monotonic()
        fingerprint = {**writer_fingerprint(dataset, tuple(plans), options), "splits": list(plans)}
        fn = WritePieces(ref, str(Path(out).resolve()), options, fingerprint)
        results = self._run("Write pieces", items, fn, options)
        written = {split: sum(r["images"] for r in results if r["split"] == split) for split in plans}
        for split, pieces in plans.items():
            if written[split] != sum(p.stop - p.start for p in pieces):
                raise CifarkitError(f"the Beam pipeline wrote {written[split]:,} images of split {split}")
        mode = options.progress or progress_mode(options.quiet)
        for split, count in written.items():  # each split's line (or record), timed from the pipeline's start
            with Meter(count, "export", split, mode, desc=f"{split:>5}", clock=_since(started)) as meter:
                meter.update(count)
        return sum(r["skipped"] for r in results)

    def _run(self, label: str, items: list, fn, options) -> list[dict]:
        """Run ``fn`` over ``items`` as a pipeline; its results, or the first error as one line."""
        beam = require_beam()
        from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions

        from .beam_work import save_results

        flags = PipelineOptions(self.flags(options.workers))
        runner = flags.view_as(StandardOptions).runner
        if (options.progress or progress_mode(options.quiet)) in ("bar", "lines"):
            print(f"{label.lower()}: {len(items):,} work items on Apache Beam's {runner}", file=sys.stderr, flush=True)
        with _results_file(flags.view_as(GoogleCloudOptions).temp_location) as target:
            with _beam_log() as log:
                try:
                    with beam.Pipeline(options=flags) as pipeline:
                        _ = (
                            pipeline
                            | "Items" >> beam.Create(items)
                            | "Spread" >> beam.Reshuffle()  # across the workers, not one bundle
                            | label >> beam.ParDo(fn)
                            | "Gather" >> beam.combiners.ToList()
                            | "Save" >> beam.Map(save_results, target)
                        )
                except Exception as exc:  # Beam's or a worker's failure: its last line, not its traceback
                    reason = _last_line(exc)
                    raise CifarkitError(
                        f"the Apache Beam pipeline ({runner}) failed: {reason} (its log: {log})"
                    ) from None
            results = _load(target, runner)
        _raise_first_error(results)
        return results


def _file_runs(dataset: LabelledImages, split: str) -> list[tuple[int, int]]:
    """Runs of at most FILES_PER_ITEM images of ``split`` that are files (arrays need no check)."""
    runs, offset = [], 0
    for batch in dataset.batches[split]:
        if isinstance(batch.images, LazyImages):
            runs += [
                (lo, min(lo + FILES_PER_ITEM, offset + len(batch)))
                for lo in range(offset, offset + len(batch), FILES_PER_ITEM)
            ]
        offset += len(batch)
    return runs


def _check_flags(flags: list[str]) -> None:
    """Refuse a flag no Beam pipeline option knows (Beam would drop it with a warning: a typo in
    ``--direct_num_workers`` would run on one process) or a bad value, in one line."""
    from apache_beam.options.pipeline_options import PipelineOptions

    parsers: list = []
    with contextlib.redirect_stderr(io.StringIO()) as printed:  # argparse prints its usage there
        try:
            PipelineOptions(flags).get_all_options(add_extra_args_fn=parsers.append)
            unknown = parsers[0].parse_known_args(flags)[1]
        except SystemExit:
            lines = printed.getvalue().strip().splitlines() or ["cannot be parsed"]
            raise UsageError(f"--beam-options: {lines[-1].partition('error: ')[2] or lines[-1]}") from None
    if unknown:
        raise UsageError(
            f"--beam-options: {unknown[0]!r} is not an option of Apache Beam's pipelines (Beam would drop it); "
            "see Beam's pipeline options for its runner"
        )
    from apache_beam.options.pipeline_options import StandardOptions
    from apache_beam.runners.runner import create_runner

    runner = PipelineOptions(flags).view_as(StandardOptions).runner
    try:  # an unknown runner, or one whose extra is missing (apache-beam[gcp] for Dataflow)
        create_runner(runner)
    except Exception as exc:
        raise UsageError(f"--beam-options: --runner={runner}: {_last_line(exc)}") from None


@contextlib.contextmanager
def _results_file(temp_location: str | None):
    """Where the pipeline leaves its results: under ``--temp_location``, or a local folder."""
    from apache_beam.io.filesystems import FileSystems

    if temp_location:
        target = FileSystems.join(temp_location, f"cifarkit-beam-{uuid.uuid4().hex}.json")
        try:
            yield target
        finally:
            with contextlib.suppress(Exception):  # not there when the pipeline failed
                FileSystems.delete([target])
        return
    with tempfile.TemporaryDirectory(prefix="cifarkit-beam-") as folder:
        yield str(Path(folder) / "results.json")


def _load(target: str, runner: str) -> list[dict]:
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(target) as handle:
            return json.loads(handle.read())
    except Exception:  # not found (workers on other machines), or unreadable
        raise CifarkitError(
            f"the {runner} workers' results did not reach this machine ({target}); with workers on other machines, "
            "pass --temp_location=<a folder they and this machine reach> in --beam-options"
        ) from None


def _raise_first_error(results: list[dict]) -> None:
    """A worker's error as the command's own: the same class and line it had in the worker."""
    failed = [r for r in results if "error" in r and "index" not in r]
    if failed:
        kind = getattr(errors, failed[0]["kind"], CifarkitError)
        cls = kind if isinstance(kind, type) and issubclass(kind, CifarkitError) else CifarkitError
        raise cls(failed[0]["error"])


@contextlib.contextmanager
def _beam_log():
    """Everything Beam says while the pipeline runs, in one file: its logging in this process (the
    job service, its copies of a worker's traceback) and its workers' stderr (their start-up lines),
    which they inherit. A failure is the command's one line, which names the file; after a
    success the file is removed."""
    fd, path = tempfile.mkstemp(prefix="cifarkit-beam-", suffix=".log")
    logger, handler = logging.getLogger("apache_beam"), logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    sys.stderr.flush()
    stderr = os.dup(2)
    os.dup2(fd, 2)
    try:
        yield path
    finally:
        sys.stderr.flush()
        os.dup2(stderr, 2)
        os.close(stderr)
        os.close(fd)
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
    os.remove(path)  # only after a success: an exception leaves it for the error line to name


def _since(start: float):
    """A clock whose first reading is ``start``: a meter made after the work times all of it."""
    readings = [start]
    return lambda: readings.pop() if readings else time.monotonic()


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
