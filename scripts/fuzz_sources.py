#!/usr/bin/env python3
"""Fuzz cifarkit's dataset readers: mutated pickles, .bin batches, tar and compressed tar bytes.

Every case starts from a small file in the real on-disk layout (tests/synth.py builds them: Python 2
and Python 3 pickles of protocols 2-5, CIFAR-10/100 python and binary batches and their tar, tar.gz,
tar.bz2 and tar.xz archives), applies one to four mutations (bit flips, interesting integers,
inserted or replaced pickle opcodes, calls of numpy globals with odd arguments, repeated opcode
runs, splices, truncation; archives are also mutated as tar and recompressed, or have one member
mutated), and reads it the way cifarkit does. An outcome is one of:

  ok                 read, and every batch has uint8 (N, 32, 32, 3) images and labels in range
  SourceError, ...   one of cifarkit's own errors (the name of its class)
  crash:TYPE         any other exception escaped: a finding
  bad-result:WHY     read, but what came back breaks the promise above: a finding
  memory             one case raised the peak resident memory by more than --memory-mb: a finding
  hang               one case ran longer than --case-seconds: a finding
  signal:N           the process died (a segfault): a finding

Cases run in a worker process; if it dies, the case it was on is saved and a new worker carries
on with the next one. Findings are saved under --out as <outcome>-<case>.<ext> with a .txt
beside each (traceback or reason). Case i always gets the same input for the same --seed.

    python scripts/fuzz_sources.py --minutes 3 --seed 1
    python scripts/fuzz_sources.py --cases 500 --seed 0 --json   # what tests/test_fuzz.py runs
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import io
import json
import lzma
import pickle
import pickletools
import random
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import synth  # noqa: E402  (tests/synth.py: the real-layout builders)

from cifarkit.errors import CifarkitError  # noqa: E402
from cifarkit.sources import idx, layouts  # noqa: E402

# ---------------------------------------------------------------------------
# Seeds: small files in the real layouts
# ---------------------------------------------------------------------------


@dataclass
class Seed:
    kind: str  # "file" (one file of a layout) or "archive"
    name: str  # the file's base name (file) or the archive's suffix (archive)
    data: bytes
    layout: str = ""  # file seeds: the layout and its other files, read alongside
    companions: dict[str, bytes] = field(default_factory=dict)
    structure: list[int] = field(default_factory=list)  # pickle opcode offsets outside big payloads


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _opcode_offsets(data: bytes) -> list[int]:
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # noqa: BLE001 - not a pickle (a .bin or a names file)
        return []
    # Offsets of opcodes whose argument is short: mutating pixel payloads teaches nothing.
    return [pos for op, arg, pos in ops if not (isinstance(arg, (bytes, str)) and len(arg) > 64)]


def _tar_bytes(files: list[tuple[str, bytes]]) -> bytes:
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
        ("cifar10-python", synth.make_cifar10_python(tmp / "p5", flavour="py3", protocol=5, str_keys=True, **small).path),
        ("cifar100-python", synth.make_cifar100_python(tmp / "c100", train=1, test=1, archive=False).path),
        ("cifar100-python", synth.make_cifar100_python(tmp / "c100p4", train=1, test=1, flavour="py3", protocol=4, archive=False).path),
        ("cifar10-binary", synth.make_cifar10_binary(tmp / "bin", **small).path),
        ("cifar100-binary", synth.make_cifar100_binary(tmp / "bin100", train=1, test=1, archive=False).path),
    ]


def _numpy_batches() -> list[bytes]:
    # Labels as an int64 array and as numpy integers, pixels in Fortran order: more numpy opcodes.
    rows = np.arange(3072, dtype=np.uint8).reshape(1, 3072)
    fields = [{"data": rows, "labels": np.array([3])}, {"data": np.asfortranarray(rows), "labels": [np.int64(7)]}]
    return [pickle.dumps(f, protocol=p) for f in fields for p in (2, 5)]


def _idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file: two zero bytes, type 0x08 (uint8), the number of dimensions, each size."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _idx_seeds() -> list[Seed]:
    """MNIST-layout pairs (images and labels), plain and gzipped: each file a seed, read with its
    partner; the header bytes (where the sizes a reader trusts live) are mutated most."""
    images = np.arange(3 * 28 * 28, dtype=np.uint16).reshape(3, 28, 28) % 251
    labels = np.array([3, 1, 4])
    plain = {"t10k-images-idx3-ubyte": _idx_bytes(images), "t10k-labels-idx1-ubyte": _idx_bytes(labels)}
    seeds = []
    for gz in (False, True):
        files = {name + (".gz" if gz else ""): gzip.compress(d, 6, mtime=0) if gz else d for name, d in plain.items()}
        for name, data in files.items():
            header = [] if gz else list(range(16 if "images" in name else 8))
            others = {k: v for k, v in files.items() if k != name}
            seeds.append(Seed("idx", name, data, "mnist", others, header))
    return seeds


def build_seeds() -> list[Seed]:
    seeds: list[Seed] = _idx_seeds()
    with tempfile.TemporaryDirectory() as tmp:
        for layout, folder in _layout_folders(Path(tmp)):
            files = _folder_files(folder)
            for name, data in files.items():
                if layouts.is_dataset_file(name):
                    others = {k: v for k, v in files.items() if k != name}
                    seeds.append(Seed("file", name, data, layout, others, _opcode_offsets(data)))
            tar = _tar_bytes([(f"{folder.name}/{n}", d) for n, d in files.items()])
            seeds.append(Seed("archive", ".tar", tar))
            seeds.append(Seed("archive", ".tar.gz", gzip.compress(tar, 6, mtime=0)))
        seeds.append(Seed("archive", ".tar.bz2", bz2.compress(tar)))
        seeds.append(Seed("archive", ".tar.xz", lzma.compress(tar)))
    base = next(s for s in seeds if s.name == "data_batch_1" and s.kind == "file")
    for data in _numpy_batches():
        seeds.append(Seed("file", "data_batch_1", data, base.layout, base.companions, _opcode_offsets(data)))
    return seeds


# ---------------------------------------------------------------------------
# Mutators
# ---------------------------------------------------------------------------

INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63 - 1, 2**64 - 1, 3072, 10000]
OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]
GLOBALS = [
    ("numpy", "dtype"), ("numpy", "ndarray"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode"),
    ("builtins", "bytearray"), ("__builtin__", "bytes"), ("builtins", "getattr"), ("os", "system"),
]  # fmt: skip
ARGS = [b"K\x00", b"K\x01", b"J\xff\xff\xff\xff", b"N", b"\x88", b"X\x02\x00\x00\x00u1", b"X\x02\x00\x00\x00V8",
        b"X\x02\x00\x00\x00O8", b"X\x01\x00\x00\x00C", b"C\x08AAAAAAAA", b"(K\x00t", b"(K\x02M\x00\x0ct", b"}", b"]",
        b"\x8a\x09" + b"\xff" * 8 + b"\x00"]  # fmt: skip


def _position(rng: random.Random, data: bytes, structure: list[int]) -> int:
    if structure and rng.random() < 0.8:
        return rng.choice(structure)
    return rng.randrange(len(data) + 1)


def _global_call(rng: random.Random) -> bytes:
    module, name = rng.choice(GLOBALS)
    args = b"".join(rng.choice(ARGS) for _ in range(rng.randrange(5)))
    return f"c{module}\n{name}\n".encode() + b"(" + args + b"t" + rng.choice([b"R", b"R", b"b", b""])


def _integer(rng: random.Random) -> bytes:
    value = rng.choice(INTERESTING)
    width = rng.choice([1, 2, 4, 8])
    return (value % 256**width).to_bytes(width, "little")


def mutate_bytes(rng: random.Random, data: bytes, structure: list[int], pool: list[bytes]) -> bytes:
    """One mutation of ``data``; ``structure`` are offsets worth hitting, ``pool`` splice donors."""
    buf = bytearray(data)
    pos = _position(rng, data, structure)
    choice = rng.randrange(10)
    if choice == 0 and buf:
        buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
    elif choice == 1:
        buf[pos : pos + 1] = rng.choice(OPCODES)
    elif choice == 2:
        buf[pos:pos] = rng.choice(OPCODES) + bytes(rng.randrange(256) for _ in range(rng.randrange(9)))
    elif choice == 3:
        value = _integer(rng)
        buf[pos + 1 : pos + 1 + len(value)] = value
    elif choice == 4:
        del buf[pos : pos + rng.randrange(1, 64)]
    elif choice == 5:
        buf[pos:pos] = _global_call(rng)
    elif choice == 6:  # a run of one opcode span, repeated: allocation bombs in miniature
        span = bytes(buf[pos : pos + rng.randrange(1, 8)])
        buf[pos:pos] = span * rng.choice([10, 1000, 20000])
    elif choice == 7 and pool:
        donor = rng.choice(pool)
        start = rng.randrange(len(donor))
        buf[pos:pos] = donor[start : start + rng.randrange(1, 256)]
    elif choice == 8:
        del buf[pos:]
    else:
        buf[pos : pos + 1] = bytes([rng.randrange(256)])
    return bytes(buf)


def _decompress(seed: Seed) -> tuple[bytes, callable]:
    if seed.name == ".tar.gz":
        return gzip.decompress(seed.data), lambda b: gzip.compress(b, 1, mtime=0)
    if seed.name == ".tar.bz2":
        return bz2.decompress(seed.data), lambda b: bz2.compress(b, 1)
    if seed.name == ".tar.xz":
        return lzma.decompress(seed.data), lambda b: lzma.compress(b, preset=0)
    return seed.data, lambda b: b


def _mutate_member(rng: random.Random, tar: bytes, pool: list[bytes]) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(tar)) as src:
        members = [(m.name, src.extractfile(m).read()) for m in src if m.isfile()]
    i = rng.randrange(len(members))
    name, data = members[i]
    members[i] = (name, mutate_bytes(rng, data, _opcode_offsets(data), pool))
    if rng.random() < 0.1:
        members.append(members[i])  # the same name twice
    return _tar_bytes(members)


def mutate(rng: random.Random, seed: Seed, pool: list[bytes]) -> bytes:
    rounds = rng.choice([1, 1, 2, 3, 4])
    if seed.kind == "idx" and seed.name.endswith(".gz") and rng.random() < 0.5:
        data = gzip.decompress(seed.data)  # the IDX bytes inside an intact gzip stream
        for _ in range(rounds):
            data = mutate_bytes(rng, data, list(range(16)), pool)
        return gzip.compress(data, 1, mtime=0)
    if seed.kind in ("file", "idx"):
        data = seed.data
        for _ in range(rounds):
            data = mutate_bytes(rng, data, seed.structure, pool)
        return data
    mode = rng.randrange(3)
    if mode == 0:  # the compressed bytes themselves
        data = seed.data
        for _ in range(rounds):
            data = mutate_bytes(rng, data, [], pool)
        return data
    tar, recompress = _decompress(seed)
    if mode == 1:  # tar headers (the first 257 bytes of a header block hold its fields)
        with tarfile.open(fileobj=io.BytesIO(tar)) as src:
            headers = [m.offset + k for m in src.getmembers() for k in range(257)]
        for _ in range(rounds):
            tar = mutate_bytes(rng, tar, headers, pool)
        return recompress(tar)
    return recompress(_mutate_member(rng, tar, pool))


# ---------------------------------------------------------------------------
# Running one case
# ---------------------------------------------------------------------------


def check_dataset(dataset) -> str | None:
    """Why a successfully read dataset breaks cifarkit's promise, or None."""
    for split, batches in dataset.batches.items():
        for b in batches:
            images = np.asarray(b.images)
            n = len(b.labels)
            expected = (n, 28, 28, 1) if dataset.name in ("mnist", "fashion_mnist", "kmnist") or images.shape[-1:] == (1,) else (n, 32, 32, 3)
            if images.dtype != np.uint8 or images.shape != expected:
                return f"{split} images {images.dtype} {images.shape} for {n} labels"
            if b.labels.dtype != np.int64 or (n and not 0 <= b.labels.min() <= b.labels.max() < len(dataset.class_names)):
                return f"{split} labels out of range or not int64"
            if len(b.source_files) != n:
                return f"{split}: {len(b.source_files)} source files for {n} images"
            int(images.sum(dtype=np.int64))  # touch every pixel
    return None


class Slot:
    """A file rewritten in place for every case: opening with O_TRUNC costs ~3 ms on some disks."""

    def __init__(self, path: Path):
        self.path, self.fh = path, open(path, "wb")

    def put(self, data: bytes) -> None:
        self.fh.seek(0)
        self.fh.write(data)
        self.fh.truncate()
        self.fh.flush()  # in the kernel's hands: still there if this process dies next


def run_case(seed: Seed, data: bytes, slots: dict[str, Slot]) -> tuple[str, str]:
    """(outcome, detail) of reading ``data`` as ``seed`` says; archives go through ``slots``."""
    try:
        if seed.kind == "file":
            files = {name: (lambda d=d: d) for name, d in seed.companions.items() if layouts.is_dataset_file(name)}
            files[seed.name] = lambda: data
            dataset = layouts._read_layout(seed.layout, files, Path(seed.name), "")
        elif seed.kind == "idx":
            for name, other in seed.companions.items():
                slots[name].put(other)
            slots[seed.name].put(data)
            dataset = idx.read_idx_folder(slots[seed.name].path.parent, verify=False)
        else:
            slots[seed.name].put(data)
            dataset = layouts.read_cifar_archive(slots[seed.name].path, verify=True)
    except CifarkitError as exc:
        text = str(exc)
        if "\n" in text or not text:
            return "bad-result:message", repr(text)
        if "MemoryError" in text:  # the address-space limit hit, and a reader called it an error
            return "memory", text
        return type(exc).__name__, text
    except _Timeout:
        return "hang", "ran past --case-seconds"
    except Exception as exc:  # noqa: BLE001 - exactly what the fuzzer looks for
        return f"crash:{type(exc).__name__}", traceback.format_exc()
    reason = check_dataset(dataset)
    return ("ok", "") if reason is None else ("bad-result:shape", reason)


class _Timeout(BaseException):  # not an Exception: no reader may swallow it
    pass


def _alarm(signum, frame):
    raise _Timeout()


# ---------------------------------------------------------------------------
# Worker and parent
# ---------------------------------------------------------------------------


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _save(out: Path, outcome: str, index: int, seed: Seed, data: bytes, detail: str) -> None:
    findings = out / "findings"
    findings.mkdir(parents=True, exist_ok=True)
    stem = f"{outcome.replace(':', '-')}-{index}"
    ext = seed.name if seed.kind == "archive" else f".{seed.name}"
    (findings / f"{stem}{ext}").write_bytes(data)
    (findings / f"{stem}.txt").write_text(f"seed file: {seed.name} ({seed.layout or seed.kind})\n{detail}\n")


def worker(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = build_seeds()
    pool = [s.data for s in seeds if s.kind == "file"]
    counts: dict[str, int] = {}
    signal.signal(signal.SIGALRM, _alarm)
    # A safety net for the machine: a runaway allocation fails here instead of taking it all.
    limit = int(args.address_space_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=shm if shm.is_dir() else None) as tmp:
        slots = {s.name: Slot(Path(tmp) / f"fuzz{s.name}") for s in seeds if s.kind == "archive"}
        for variant in ("plain", "gz"):  # an MNIST folder per variant, its two files rewritten per case
            (Path(tmp) / variant).mkdir()
        slots.update({s.name: Slot(Path(tmp) / ("gz" if s.name.endswith(".gz") else "plain") / s.name)
                      for s in seeds if s.kind == "idx"})  # fmt: skip
        current, state_slot = Slot(out / "current.bin"), Slot(out / "current.json")
        for index in range(args.first, args.last):
            if time.time() > args.deadline:
                break
            rng = random.Random(args.seed * 1_000_003 + index)
            seed = rng.choice(seeds)
            data = mutate(rng, seed, pool)
            current.put(data)
            state = {"index": index, "seed": f"{seed.kind}:{seed.name}", "counts": counts, "rss_mb": _rss_mb()}
            state_slot.put(json.dumps(state).encode())
            before = _rss_mb()
            signal.alarm(args.case_seconds)
            outcome, detail = run_case(seed, data, slots)
            signal.alarm(0)
            if _rss_mb() - before > args.memory_mb and outcome != "hang":
                outcome, detail = "memory", f"peak RSS {before:.0f} -> {_rss_mb():.0f} MB ({outcome})"
            counts[outcome] = counts.get(outcome, 0) + 1
            if outcome.startswith(("crash", "bad-result", "memory", "hang")):
                _save(out, outcome, index, seed, data, detail)
    state = {"counts": counts, "rss_mb": _rss_mb(), "done": True}
    state_slot.put(json.dumps(state).encode())


def _merge(total: dict[str, int], part: dict[str, int]) -> None:
    for key, n in part.items():
        total[key] = total.get(key, 0) + n


def parent(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + (args.minutes * 60 if args.minutes else 10**9)
    last = args.cases if args.cases else 10**12
    counts: dict[str, int] = {}
    first, peak, started = 0, 0.0, time.time()
    while first < last and time.time() < deadline:
        (out / "current.json").unlink(missing_ok=True)
        cmd = [sys.executable, __file__, "--worker", "--seed", str(args.seed), "--first", str(first),
               "--last", str(last), "--deadline", str(deadline), "--out", str(out),
               "--case-seconds", str(args.case_seconds), "--memory-mb", str(args.memory_mb),
               "--address-space-gb", str(args.address_space_gb)]  # fmt: skip
        proc = subprocess.run(cmd)
        state = json.loads((out / "current.json").read_text()) if (out / "current.json").exists() else {}
        _merge(counts, state.get("counts", {}))
        peak = max(peak, state.get("rss_mb", 0.0))
        if state.get("done"):
            break
        if not state:
            raise SystemExit(f"the fuzz worker failed before its first case (exit {proc.returncode})")
        outcome = f"signal:{-proc.returncode}" if proc.returncode < 0 else f"exit:{proc.returncode}"
        counts[outcome] = counts.get(outcome, 0) + 1
        index = state["index"]
        (out / "findings").mkdir(exist_ok=True)
        shutil.copy(out / "current.bin", out / "findings" / f"{outcome.replace(':', '-')}-{index}.bin")
        first = index + 1
    cases = sum(counts.values())
    findings = {k: n for k, n in counts.items() if k.startswith(("crash", "bad-result", "memory", "hang", "signal", "exit"))}
    return {"seed": args.seed, "cases": cases, "seconds": round(time.time() - started, 1), "outcomes": counts,
            "findings": findings, "worker_peak_rss_mb": round(peak, 1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=0, help="stop after this long (default: --cases decides)")
    ap.add_argument("--cases", type=int, default=0, help="stop after this many cases")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz-out", help="findings are saved in OUT/findings/")
    ap.add_argument("--case-seconds", type=int, default=10, help="a case running longer is a finding")
    ap.add_argument("--memory-mb", type=float, default=64, help="a case raising peak RSS more is a finding")
    ap.add_argument("--address-space-gb", type=float, default=4, help="the worker's RLIMIT_AS")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--last", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if not args.minutes and not args.cases:
        ap.error("give --minutes or --cases")
    summary = parent(args)
    if args.json:
        print(json.dumps(summary))
        return
    print(f"{summary['cases']} cases in {summary['seconds']} s (seed {args.seed}), worker peak RSS "
          f"{summary['worker_peak_rss_mb']} MB")  # fmt: skip
    for outcome, n in sorted(summary["outcomes"].items(), key=lambda kv: -kv[1]):
        print(f"  {n:7d}  {outcome}")
    print(f"findings: {summary['findings'] or 'none'}" + (f" (saved in {args.out}/findings/)" if summary["findings"] else ""))


if __name__ == "__main__":
    main()
