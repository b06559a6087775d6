#!/usr/bin/env python3
"""Fuzz every reader of cifarkit: mutated inputs, read the way cifarkit's commands read them.

Targets (``--target NAME``, repeatable; ``--list`` describes them; default all):

  cifar-batches     CIFAR python pickles (protocols 2-5), .bin batches, label-name files
  cifar-archives    tar, tar.gz, tar.bz2, tar.xz archives of them
  idx               MNIST-family IDX files, plain and gzipped; a 249 KB gzip of 256 MB
  tfrecord-framing  TFRecord shards: lengths claiming 2^40 bytes under a correct CRC, shards cut
                    at and between records, records dropped, repeated or from another shard
  tfrecord-example  the tf.train.Example inside: labels 2^62, -1, 99; bombs, 0x0 and lying PNGs;
                    declared shapes of 30000 x 30000; keys missing or of another kind; non-Examples
  arrayrecord       ArrayRecord shards: Examples changed and written anew (hashes right), records
                    dropped or repeated, a 70 MB record of zeros in a few KB, bytes cut or damaged
  webdataset        WebDataset tar shards: names with ../ or two dots, links and devices, sizes
                    of 10 GB, labels that are no number, JSON and images mutated, members
                    dropped or repeated, shards cut
  parquet           Parquet files of an export: image bytes (bombs, none beside a path leading
                    out), labels of 2^62 or null, rows dropped, columns dropped or retyped, the
                    features JSON, codecs, row groups of one row; footers and page headers damaged
  dataset-info, features-json, label-names, cifarkit-info, manifest-csv, export-state,
  run-config, report-json, backup-state
                    each metadata file cifarkit reads: values of another type, huge numbers,
                    5,000-digit numbers and strings, deep nesting, names with ../ or absolute
                    paths, non-UTF-8; CSV: long fields, wrong columns, labels out of range;
                    the file as a link out of its folder
  images            PNG and JPEG files in trees: header sizes and fields (CRCs made right),
                    chunks and markers, truncation; a real 98-megapixel bomb
  tflite            .tflite flatbuffers (tables and offsets, not weights), run by predict
  tree-listing      a photo tree's listing kept on disk (its threshold made nothing in the worker):
                    trees of odd names (NFC and NFD, case, NAME_MAX, not printable, not UTF-8),
                    files that are no image, empty and thirty one-file classes, links out, read
                    by info, export (PNG, TFRecord, two workers), stats and cifarkit.load against
                    the same tree listed in memory; the listing's temporary files damaged (bytes,
                    cuts, lengths of 2 GB, folders out of range, records swapped), then read

Cases run in a worker process, each target in turn; a case of a folder target is a seed copied
into a sandbox with one file changed, then read through the entry points the CLI uses (info,
export, stats, cifarkit.load, evaluate's and train's run-folder reads, predict). An outcome is:

  ok                 read, and what came back keeps the promises (labels in range, uint8
                     images, the counts written, nothing written outside the output folder)
  undetected         tree-listing: a damaged temporary file read without error as other names
                     (its records lie within it and its names decode): a limit, not a finding
  SourceError, ...   one of cifarkit's own errors (the name of its class)
  tf:DataLossError   a corrupt record, which the CLI reports in one line naming its shard
  tf:InvalidArgumentError  an image in a record that does not decode: the CLI names its shard and record
  crash:TYPE         any other exception escaped: a finding
  tf:TYPE            another TensorFlow error: one line at the CLI, but the input reached
                     TensorFlow unchecked and the line names no file: a finding
  bad-result:WHY     read, but a promise broke (written or deleted outside --out, a user's file
                     removed, a file linking out of an export read, labels out of range, fewer
                     images than written, an export that does not read back): a finding
  memory             the case raised the worker's peak resident memory by more than its budget
                     (64 MB for the byte readers; 300 MB for the rest, the 1 GB promised less
                     TensorFlow's start), measured per case: a finding
  hang               the case ran longer than --case-seconds: a finding
  signal:N           the process died (a segfault): a finding
  harness:...        the fuzzer's own call or mutator failed (an entry point changed): fix it

Findings are saved under OUT/findings/: a folder per folder case (the sandbox, with README.txt
holding the reason, the cifarkit command that reproduces it and ``--replay`` for this script),
or the mutated file and a .txt beside it; the summary groups them by signature (a crash's
innermost cifarkit frame, or the reason without its numbers and paths). Case k of a target always
gets the same input for the same --seed, whatever other targets run. The on-disk seeds are built
once by cifarkit's own exporter and trainer (about 10 s) and kept in the temporary folder.

Beside this driver: fuzz_seeds.py (the seeds), fuzz_targets.py (the targets, the sandbox, how
each case is read and checked), fuzz_mutators.py (bytes, pickles, JSON, CSV, lines of names) and
fuzz_records.py (TFRecord framing and Examples, PNG and JPEG, TFLite), fuzz_tar.py (tar shards),
fuzz_parquet.py (Parquet files), fuzz_arrayrecord.py (ArrayRecord shards) and fuzz_listing.py
(the tree-listing target, which makes its own trees in its sandbox: a saved finding is its spec).

    python scripts/fuzz_sources.py --minutes 10 --seed 7 --out /tmp/fuzz10   # every target
    python scripts/fuzz_sources.py --minutes 2 --target tfrecord-example --out /tmp/fuzz-findings
    python scripts/fuzz_sources.py --replay /tmp/fuzz-findings/findings/crash-ValueError-tfrecord-example-41
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the fuzz_* modules beside this one
# pyarrow's default allocator (mimalloc) reserves a GB of address space when it first reads, which
# the worker's RLIMIT_AS would count as memory taken; the system's allocator reserves as it needs.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
import fuzz_listing
import fuzz_ops as ops
import fuzz_seeds
import fuzz_targets as targets
from fuzz_ops import HarnessError, Slot
from fuzz_targets import Case

FINDINGS = ("crash", "bad-result", "memory", "hang", "signal", "exit", "tf:", "harness")
# The CLI names the corrupt record's shard (docs/RELIABILITY.md): framing damage TensorFlow finds
# (DataLossError), or an image whose data its decoder refuses under a correct CRC (InvalidArgumentError).
ACCEPTED = ("tf:DataLossError", "tf:InvalidArgumentError")


def is_finding(outcome: str) -> bool:
    return outcome.startswith(FINDINGS) and outcome not in ACCEPTED


def signature(outcome: str, detail: str) -> str:
    """What tells one finding from another: a crash's innermost frame in cifarkit (else the
    last frame), or a reason with its numbers and paths taken out."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', detail)
    if outcome.startswith("crash") and frames:
        ours = [f for f in frames if "/cifarkit/" in f[0]] or frames
        path, _, function = ours[-1]
        return f"{outcome} in {path.split('/cifarkit/')[-1]}:{function}"
    text = detail.splitlines()[0] if detail else ""
    text = re.sub(r"Error in user-defined function passed to .*? with iterator: \S+: ", "", text)  # tf.data's frame
    text = re.sub(r"(/[^\s:,'\"()]+)+", "PATH", text)
    text = re.sub(r"\d+", "N", text)
    return f"{outcome}: {text[:100]}"


class _Timeout(BaseException):  # not an Exception: no reader may swallow it
    pass


def _alarm(signum, frame):
    raise _Timeout()


def classify(exc: BaseException, child_memory: bool = False) -> tuple[str, str]:
    """(outcome, detail) of an exception that ended a case. ``child_memory``: the reader runs the
    input in a child process with a memory limit of its own (TFLite), so a MemoryError it reports
    is that limit doing its work, not this process's address-space limit."""
    from cifarkit.errors import CifarkitError

    if isinstance(exc, _Timeout):
        return "hang", "ran past --case-seconds"
    if isinstance(exc, HarnessError):
        return "harness:signature", str(exc)
    if isinstance(exc, CifarkitError):
        text = str(exc)
        if "\n" in text or not text.strip():
            return "bad-result:message", repr(text)
        if "MemoryError" in text and not child_memory:  # this worker's address-space limit hit
            return "memory", text
        return type(exc).__name__, text
    if isinstance(exc, MemoryError):
        return "memory", traceback.format_exc()
    tf = sys.modules.get("tensorflow")
    if tf is not None and isinstance(exc, tf.errors.OpError):
        from cifarkit.cli.app import tensorflow_error
        from cifarkit.data import source_error_in

        named = source_error_in(exc)  # cifarkit's own refusal inside tf.data: the CLI prints it
        if named is not None:
            return type(named).__name__, str(named)
        line = tensorflow_error(exc) or str(exc)
        kind = type(exc).__name__
        return (f"tf:{kind}" if f"tf:{kind}" not in ACCEPTED or ".tfrecord" in line else f"tf:{kind}-unnamed"), line
    return f"crash:{type(exc).__name__}", traceback.format_exc()


# ---------------------------------------------------------------------------
# Running one case
# ---------------------------------------------------------------------------


def run_case(case: Case, ctx: dict) -> tuple[str, str]:
    if case.seed.kind == "listing":
        return fuzz_listing.run_case(case, ctx["root"], classify)
    if case.seed.kind != "folder":
        try:
            dataset = ops.read_bytes_case(case, ctx["slots"])
        except BaseException as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
            return classify(exc)
        reason = ops.check_dataset(dataset)
        return ("ok", "") if reason is None else ("bad-result:shape", reason)
    return run_folder_case(case, ctx["root"], ctx["store"], written=False)


def run_folder_case(case: Case, root: Path, store: Path, written: bool) -> tuple[str, str]:
    base = root / "a" / "b" if written else targets.write_case(case, root, store)
    before = targets.snapshot(root, base / "out")
    mine = (base / targets.USER_FILE).is_file()
    link = case.changes.get(case.seed.file)
    victim = Path(link.replace(targets.mut.CASE, str(root))) if isinstance(link, targets.Link) else None
    last_read = victim.stat().st_atime_ns if victim else 0  # reading it moves its access time
    try:
        reason = ops.OPS[case.op](base, case, store)
        outcome, detail = ("ok", "") if reason is None else (f"bad-result:{case.op}", reason)
    except ops.WouldTrain:
        outcome, detail = "ok", "accepted for resuming"
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        outcome, detail = classify(exc, child_memory=case.seed.target == "tflite")
    outside = targets.changed_outside(before, targets.snapshot(root, base / "out"))
    if outside:
        return "bad-result:outside-out", f"{outside} ({outcome}: {detail[-300:]})"
    if mine and not (base / targets.USER_FILE).is_file():
        return "bad-result:removed-users-file", f"{targets.USER_FILE} is gone ({outcome})"
    if outcome == "ok" and victim and victim.stat().st_atime_ns != last_read:
        return "bad-result:followed-link-out", f"{case.seed.file} links outside the folder, and was read"
    return outcome, detail


# ---------------------------------------------------------------------------
# Memory of one case: the peak resident size since the case began (Linux resets it on request)
# ---------------------------------------------------------------------------


def _status_kb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field):
                return float(line.split()[1])
    return 0.0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


# ---------------------------------------------------------------------------
# Worker
# ---------------------------------------------------------------------------


def case_meta(case: Case, store: Path) -> dict:
    """What a saved folder case needs to be read again (``--replay``)."""
    link = case.changes.get(case.seed.file)
    return {
        "target": case.seed.target,
        "seed": case.seed.name,
        "file": case.seed.file,
        "op": case.op,
        "options": case.options,
        "reads": case.seed.reads,
        "counts": case.seed.counts,
        "note": case.note,
        "store": str(store),
        "link": str(link) if isinstance(link, targets.Link) else "",
    }


def case_of(meta: dict) -> Case:
    seed = fuzz_seeds.Seed(
        meta["target"],
        meta["seed"],
        b"",
        file=meta["file"],
        ops=(meta["op"],),
        reads=meta["reads"],
        counts=meta["counts"],
    )
    case = Case(seed, op=meta["op"], options=meta["options"], note=meta["note"])
    if meta.get("link"):
        case.changes[seed.file] = targets.Link(meta["link"])
    return case


def save_folder(findings: Path, stem: str, root: Path, meta: dict, outcome: str, detail: str) -> Path:
    """The sandbox as ``findings/stem``, its paths moved there, with case.json and README.txt."""
    saved = findings / stem
    shutil.rmtree(saved, ignore_errors=True)
    shutil.copytree(root, saved, symlinks=True)
    _move_paths(saved, str(root), str(saved))
    (saved / "case.json").write_text(json.dumps({**meta, "root": str(saved)}, indent=1))
    case, store = case_of(meta), Path(meta["store"])
    (saved / "README.txt").write_text(
        f"{signature(outcome, detail)}\n({meta['target']})\nseed {meta['seed']}, file a/b/{meta['file']}: "
        f"{meta['note']}\n"
        f"read by: {meta['op']} {meta['options'] or ''}\n\nreproduce:\n"
        f"  {ops.command_line(case, saved / 'a' / 'b', store)}\n"
        f"  python {Path(__file__).resolve()} --replay {saved}\n\n{_clipped(detail)}\n"
    )
    return saved


def _clipped(text: str) -> str:
    """A traceback kept readable: long lines (a 5,000-digit name) and long texts cut."""
    lines = [line if len(line) <= 400 else f"{line[:400]}... ({len(line):,} characters)" for line in text.splitlines()]
    return "\n".join(lines)[-8000:]


def _save(out: Path, outcome: str, index: int, case: Case, detail: str, root: Path, store: Path) -> Path:
    findings = out / "findings"
    findings.mkdir(parents=True, exist_ok=True)
    stem = f"{outcome.replace(':', '-')}-{case.seed.target}-{index}".replace("/", "_")
    if case.seed.kind == "folder":
        return save_folder(findings, stem, root, case_meta(case, store), outcome, detail)
    ext = {"archive": case.seed.name, "listing": ".json"}.get(case.seed.kind, f".{case.seed.name}")
    (findings / f"{stem}{ext}").write_bytes(case.data)
    (findings / f"{stem}.txt").write_text(
        f"target {case.seed.target}, seed file {case.seed.name} "
        f"({case.seed.layout or case.seed.kind})\n{_clipped(detail)}\n"
    )
    return findings / f"{stem}{ext}"


def _move_paths(folder: Path, old: str, new: str) -> None:
    """Absolute paths to the sandbox inside its text files, made to point into ``folder``."""
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 50_000_000:
            data = path.read_bytes()
            if old.encode() in data and path.suffix in (".json", ".csv", ".txt", ""):
                path.write_bytes(data.replace(old.encode(), new.encode()))
        if path.is_symlink() and old in os.readlink(path):
            target = os.readlink(path).replace(old, new)
            path.unlink()
            path.symlink_to(target)


def _setup(args, names: list[str], store: Path, scratch: Path) -> tuple[dict, dict]:
    if set(names) - set(targets.STORE_FREE):
        fuzz_seeds.ensure_store(store)  # here, where TensorFlow is imported anyway
    seeds = {name: targets.target_seeds(name, store) for name in names}
    every = [s for group in seeds.values() for s in group]
    pools = targets.Pools.of(every, store)
    slots = {}
    for s in every:
        if s.kind == "archive":
            slots[s.name] = Slot(scratch / f"fuzz{s.name}")
        elif s.kind == "idx":
            folder = scratch / ("idx-gz" if s.name.endswith(".gz") else "idx")
            folder.mkdir(exist_ok=True)
            for name in [s.name, *s.companions]:
                slots.setdefault(name, Slot(folder / name))
    ctx = {"slots": slots, "root": scratch / "case", "store": store, "pools": pools}
    if any(name not in targets.TENSORFLOW_FREE for name in names):
        _warm_up()
    return seeds, ctx


def _warm_up() -> None:
    """TensorFlow, Keras and the commands imported before any case is measured: their start is
    not the memory of the first case that needs them (the first use of each op adds < 30 MB)."""
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    import cifarkit.cli.data_commands
    import cifarkit.cli.evaluate_commands  # noqa: F401
    import cifarkit.cli.model_commands
    import cifarkit.data  # noqa: F401


def measured(case: Case, ctx: dict, args: argparse.Namespace, budget: float) -> tuple[str, str]:
    """The case's outcome, a hang past --case-seconds, or memory beyond ``budget`` MB."""
    before = _status_kb("VmRSS:") / 1024
    exact = _reset_peak()
    signal.alarm(args.case_seconds)
    try:
        outcome, detail = run_case(case, ctx)
    finally:
        signal.alarm(0)
    rise = (_status_kb("VmHWM:") / 1024 if exact else _peak_mb()) - before
    if rise > budget and outcome != "hang":
        return "memory", f"resident memory rose by {rise:.0f} MB (budget {budget:.0f}) ({outcome}: {detail[:300]})"
    return outcome, detail


def worker(args: argparse.Namespace) -> None:
    out = Path(args.out)
    log = os.open(out / "worker.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)  # TensorFlow's C++ logs and the commands' output: not the terminal's
    os.dup2(log, 2)
    names, scratch, store = args.target, Path(args.scratch), Path(args.store)
    started = time.time()
    seeds, ctx = _setup(args, names, store, scratch)
    counts: dict[str, dict[str, int]] = {name: {} for name in names}
    signatures: dict[str, dict[str, int]] = {}  # target -> finding signature -> cases
    seconds: dict[str, float] = {"setup": time.time() - started}
    done = {name: json.loads(args.done).get(name, 0) for name in names}  # cases of each target so far
    spent = json.loads(args.spent)  # seconds each target has run, in earlier workers too
    signal.signal(signal.SIGALRM, _alarm)
    # A safety net for the machine: a runaway allocation fails here instead of taking it all.
    limit = int(args.address_space_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    state_slot, current = Slot(out / "current.json"), Slot(out / "current.bin")
    for index in range(args.first, args.last):
        if time.time() > args.deadline:
            break
        # A run of --cases takes the targets in turn; a timed run gives each the same time.
        name = names[index % len(names)] if args.cases else min(names, key=lambda n: (spent.get(n, 0.0), n))
        k, began = done[name], time.time()
        done[name] += 1
        try:  # a bug of the fuzzer's own is counted and shown, and the run goes on
            case = targets.make_case(random.Random(f"{args.seed}:{name}:{k}"), seeds[name], ctx["pools"])
            if case.seed.kind != "folder":
                current.put(case.data)
            state = {
                "index": index,
                "target": name,
                "k": k,
                "started": began,
                "counts": counts,
                "seconds": seconds,
                "signatures": signatures,
                "rss_mb": _peak_mb(),
                "case": case_meta(case, store) if case.seed.kind == "folder" else None,
            }
            state_slot.put(json.dumps(state).encode())
            outcome, detail = measured(case, ctx, args, args.memory_mb or targets.MEMORY_MB[name])
            if is_finding(outcome):
                _save(out, outcome, k, case, detail, ctx["root"], store)
                found = signatures.setdefault(name, {})
                found[signature(outcome, detail)] = found.get(signature(outcome, detail), 0) + 1
        except Exception:  # noqa: BLE001
            outcome = "harness:error"
            report = f"case {k} of {name}: {traceback.format_exc()}"
            print(report, file=sys.stderr)
            with open(out / "harness-errors.txt", "a") as log:  # stderr may be TensorFlow's, filtered
                log.write(report + "\n")
        seconds[name] = seconds.get(name, 0.0) + time.time() - began
        spent[name] = spent.get(name, 0.0) + time.time() - began
        counts[name][outcome] = counts[name].get(outcome, 0) + 1
    state_slot.put(
        json.dumps(
            {"counts": counts, "seconds": seconds, "signatures": signatures, "rss_mb": _peak_mb(), "done": True}
        ).encode()
    )


# ---------------------------------------------------------------------------
# Parent
# ---------------------------------------------------------------------------


def _merge(total: dict, part: dict) -> None:
    for target, outcomes in part.items():
        mine = total.setdefault(target, {})
        for key, n in outcomes.items():
            mine[key] = mine.get(key, 0) + n


def _watch(proc: subprocess.Popen, state_path: Path, case_seconds: int) -> str | None:
    """Wait for the worker; kill it if one case runs far past --case-seconds (stuck in C code,
    where the alarm cannot interrupt it). Returns "hang" if it was killed so."""
    while proc.poll() is None:
        time.sleep(0.5)
        try:
            state = json.loads(state_path.read_text())
        except (OSError, ValueError):
            continue
        if "started" in state and time.time() - state["started"] > case_seconds + 30:
            proc.kill()
            proc.wait()
            return "hang"
    return None


def parent(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.target or list(targets.TARGETS)
    store = Path(args.store) if args.store else fuzz_seeds.default_store()
    started = time.time()
    deadline = time.time() + (args.minutes * 60 if args.minutes else 10**9)
    last = args.cases if args.cases else 10**12
    counts: dict[str, dict[str, int]] = {}
    seconds: dict[str, float] = {}  # per target, and the workers' setup
    signatures: dict[str, dict[str, int]] = {}
    first, peak = 0, 0.0
    shm = Path("/dev/shm")
    scratch = Path(tempfile.mkdtemp(prefix="cifarkit-fuzz-", dir=shm if shm.is_dir() else None))
    try:
        while first < last and time.time() < deadline:
            (out / "current.json").unlink(missing_ok=True)
            cmd = [
                sys.executable,
                __file__,
                "--worker",
                "--seed",
                str(args.seed),
                "--first",
                str(first),
                "--last",
                str(last),
                "--deadline",
                str(deadline),
                "--out",
                str(out),
                "--scratch",
                str(scratch),
                "--store",
                str(store),
                "--case-seconds",
                str(args.case_seconds),
                "--memory-mb",
                str(args.memory_mb),
                "--address-space-gb",
                str(args.address_space_gb),
                "--cases",
                str(args.cases),
                "--done",
                json.dumps({t: sum(o.values()) for t, o in counts.items()}),
                "--spent",
                json.dumps(seconds),
            ] + [a for n in names for a in ("--target", n)]
            proc = subprocess.Popen(cmd)
            killed = _watch(proc, out / "current.json", args.case_seconds)
            state = _state(out / "current.json")
            _merge(counts, state.get("counts", {}))
            _merge(signatures, state.get("signatures", {}))
            for key, value in state.get("seconds", {}).items():
                seconds[key] = round(seconds.get(key, 0.0) + value, 1)
            peak = max(peak, state.get("rss_mb", 0.0))
            if state.get("done"):
                break
            if "index" not in state:
                raise SystemExit(
                    f"the fuzz worker failed before its first case (exit {proc.returncode}); see {out / 'worker.log'}"
                )
            code = proc.returncode
            outcome = killed or (f"signal:{-code}" if code < 0 else f"exit:{code}")
            _merge(counts, {state["target"]: {outcome: 1}})
            _merge(signatures, {state["target"]: {f"{outcome}: {(state.get('case') or {}).get('op', '')}": 1}})
            _save_died(out, scratch, state, outcome)
            first = state["index"] + 1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    merged: dict[str, int] = {}
    for outcomes in counts.values():
        for key, n in outcomes.items():
            merged[key] = merged.get(key, 0) + n
    findings = {t: {k: n for k, n in o.items() if is_finding(k)} for t, o in counts.items()}
    findings = {t: f for t, f in findings.items() if f}
    return {
        "seed": args.seed,
        "cases": sum(merged.values()),
        "seconds": round(time.time() - started, 1),
        "outcomes": merged,
        "by_target": counts,
        "findings": findings,
        "worker_peak_rss_mb": round(peak, 1),
        "seconds_by_target": seconds,
        "signatures": signatures,
        "store": str(store),
    }


def _state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # none yet, or the worker died before its first case
        return {}


def _save_died(out: Path, scratch: Path, state: dict, outcome: str) -> None:
    """The case a worker died on: its sandbox (folder targets) or its bytes."""
    findings = out / "findings"
    findings.mkdir(exist_ok=True)
    stem = f"{outcome.replace(':', '-')}-{state['target']}-{state['k']}"
    if state.get("case") and (scratch / "case").is_dir():
        save_folder(findings, stem, scratch / "case", state["case"], outcome, "the worker died on this case")
    elif (out / "current.bin").exists():
        shutil.copy(out / "current.bin", findings / f"{stem}.bin")


def replay(folder: Path) -> None:
    """Read a saved folder case again, in a copy, and print its outcome."""
    meta = json.loads((folder / "case.json").read_text())
    with tempfile.TemporaryDirectory(prefix="cifarkit-replay-") as tmp:
        root = Path(tmp) / "case"
        shutil.copytree(folder, root, symlinks=True)
        _move_paths(root, meta["root"], str(root))
        outcome, detail = run_folder_case(case_of(meta), root, Path(meta["store"]), written=True)
    print(f"{outcome}\n{detail}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=0, help="stop after this long (default: --cases decides)")
    ap.add_argument("--cases", type=int, default=0, help="stop after this many cases (all targets together)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--target", action="append", choices=list(targets.TARGETS), help="a target (repeatable); default all"
    )
    ap.add_argument("--list", action="store_true", help="describe the targets and exit")
    ap.add_argument("--out", default="fuzz-out", help="findings are saved in OUT/findings/")
    ap.add_argument("--store", default="", help="where the on-disk seeds are kept (default: a temporary folder)")
    ap.add_argument("--case-seconds", type=int, default=10, help="a case running longer is a finding")
    ap.add_argument(
        "--memory-mb",
        type=float,
        default=0,
        help="a case raising resident memory more is a finding (default: 64 MB for the byte readers, "
        "300 MB for the rest)",
    )
    ap.add_argument("--address-space-gb", type=float, default=4, help="the worker's RLIMIT_AS")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    ap.add_argument("--replay", type=Path, help="read a saved folder case again and print its outcome")
    for hidden in ("--worker", "--build-seeds"):
        ap.add_argument(hidden, action="store_true", help=argparse.SUPPRESS)
    for hidden, kind, default in (
        ("--first", int, 0),
        ("--last", int, 0),
        ("--deadline", float, 0),
        ("--scratch", str, ""),
        ("--done", str, "{}"),
        ("--spent", str, "{}"),
    ):
        ap.add_argument(hidden, type=kind, default=default, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.list:
        print("\n".join(f"{name:<18}{text}" for name, text in targets.TARGETS.items()))
        return
    if args.build_seeds:
        return fuzz_seeds.build_store(Path(args.store))
    if args.worker:
        return worker(args)
    if args.replay:
        return replay(args.replay)
    if not args.minutes and not args.cases:
        ap.error("give --minutes or --cases")
    summary = parent(args)
    if args.json:
        print(json.dumps(summary))
        return
    print(
        f"{summary['cases']} cases in {summary['seconds']} s (seed {args.seed}; the workers' setup "
        f"{summary['seconds_by_target'].get('setup', 0):.0f} s), worker peak RSS {summary['worker_peak_rss_mb']} MB"
    )
    for target, outcomes in summary["by_target"].items():
        spent = summary["seconds_by_target"].get(target, 0)
        print(
            f"  {target} ({spent:.0f} s): "
            + ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items(), key=lambda kv: -kv[1]))
        )
    found = summary["findings"]
    print(f"findings: {found or 'none'}" + (f" (saved in {args.out}/findings/)" if found else ""))
    for target, kinds in summary["signatures"].items():
        for text, n in sorted(kinds.items(), key=lambda kv: -kv[1]):
            print(f"  {n:6d}  {target}  {text}")


if __name__ == "__main__":
    main()
