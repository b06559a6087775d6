"""ArrayRecord shards read through a child process (:mod:`.arrayrecord_worker`), which holds the
``array_record`` library so that cifarkit's own process never does: a crafted file that crashes
the library, or inflates past the child's address-space limit, ends the child, and this side
says so in one line naming the shard.

One child per dataset (its shards unchanged: path, size, modification time, inode), started when
the dataset is first opened in this process and kept for every later open and read; it checks
every shard first, then serves records by position. A record round trip costs about 0.2 ms a
batch of 64 (CIFAR's 50,000 training records in under a second), against about 40 us a record
for TensorFlow to decode them.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

from ..errors import SourceError
from .arrayrecord_worker import COUNT, LENGTH

MEMORY_FLOOR = 2 << 30  # the child's address space: Python, numpy, the library (0.6 GB), a few records
MEMORY_PER_SHARD_BYTE = 3  # ... plus three times the largest shard: a batch of its records, held twice
SECONDS = 60.0  # how long the check may take: a file crafted to loop is stopped
SECONDS_PER_MB = 1.0  # ... plus this per MB of shards (a full CIFAR-10 export reads in about 2 s)
READ_SECONDS = 120.0  # how long one batch of checked records may take to come back
PACKAGE_PARENT = Path(__file__).resolve().parents[2]  # the folder cifarkit is imported from, for the child
# The child runs the worker module as a program, with the current folder off its import path.
BOOT = (
    "import sys, runpy\nif sys.path and sys.path[0] in ('', '.'): del sys.path[0]\n"
    "runpy.run_module('cifarkit.formats.arrayrecord_worker', run_name='__main__')"
)


def layout(records) -> dict:
    """What :func:`.record_checks.record_check` reads of a :class:`.tfrecord_read.Records`, as JSON."""
    return {
        "classes": len(records.class_names),
        "coarse_key": records.coarse_key,
        "coarse_classes": len(records.coarse_class_names or ()),
        "image": records.image,
        "shape": list(records.shape),
    }


class RecordProcess:
    """The child of one dataset: :attr:`counts` (records in each shard of each split, every record
    checked) and :meth:`read`."""

    def __init__(self, records, sizes: dict[str, int]):
        splits = list(records.files)
        self.paths = [path for split in splits for path in records.files[split]]
        self.root = records.root
        largest = max(sizes.values(), default=0)
        self.limit = MEMORY_FLOOR + MEMORY_PER_SHARD_BYTE * largest
        self._pid, self._buffer, self._lock = os.getpid(), b"", threading.Lock()
        self._log = tempfile.TemporaryFile()
        paths = [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH", "")]
        # Two malloc arenas, not one for each of the library's 64 threads (64 MB of address space each).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p), MALLOC_ARENA_MAX="2")
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-c", BOOT, str(self.limit)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env=env,
            )
        except OSError as exc:
            self._log.close()
            raise SourceError(
                f"{self.root}: cannot start the process that reads ArrayRecord shards ({exc.strerror})"
            ) from None
        self._stop = weakref.finalize(self, _stop, self._child, self._log)
        shards = [
            [split, path, _listed(records, split, i)] for split in splits for i, path in enumerate(records.files[split])
        ]
        self._send({"layout": layout(records), "shards": shards})
        self.counts, self.pixels = self._checked(splits, SECONDS + SECONDS_PER_MB * sum(sizes.values()) / 1e6)

    def _checked(self, splits: list[str], seconds: float) -> tuple[dict[str, list[int]], dict[str, int]]:
        counts: dict[str, list[int]] = {split: [] for split in splits}
        pixels: dict[str, int] = dict.fromkeys(splits, 0)
        deadline, shard = time.monotonic() + seconds, None
        while True:
            try:
                answer = json.loads(self._line(deadline, shard))
            except ValueError:
                raise self._ended(shard) from None
            if "error" in answer:
                self.close()
                raise SourceError(str(answer["error"]))
            if answer.get("ok"):
                return counts, pixels
            if "shard" in answer:
                shard = str(answer["shard"])
            elif "count" in answer:
                counts[answer["split"]].append(int(answer["count"]))
                pixels[answer["split"]] += int(answer["pixels"])

    def read(self, shard: int, positions: list[int]) -> list[bytes]:
        """Records ``positions`` of shard ``shard`` (its place in the dataset's list of shards)."""
        with self._lock:
            self._send({"shard": shard, "at": positions})
            deadline, path = time.monotonic() + READ_SECONDS, self.paths[shard]
            kind = self._exactly(1, deadline, path)
            (count,) = COUNT.unpack(self._exactly(COUNT.size, deadline, path))
            if kind == b"E":
                reason = self._exactly(count, deadline, path).decode("utf-8", "replace")
                raise SourceError(f"{path}: cannot be read ({reason})")
            records = []
            for _ in range(count):
                (length,) = LENGTH.unpack(self._exactly(LENGTH.size, deadline, path))
                records.append(self._exactly(length, deadline, path))
            return records

    @property
    def usable(self) -> bool:
        """Alive, and this process's own (a forked process must not share the channel)."""
        return os.getpid() == self._pid and self._child.poll() is None

    def close(self) -> None:
        self._stop()

    def _send(self, message: dict) -> None:
        try:
            self._child.stdin.write(json.dumps(message).encode() + b"\n")
            self._child.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._ended(None) from None

    def _fill(self, deadline: float, shard: str | None) -> None:
        fd = self._child.stdout.fileno()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            self.close()
            raise SourceError(f"{shard or self.root}: reading the ArrayRecord shard took too long; stopped")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise self._ended(shard)
        self._buffer += chunk

    def _line(self, deadline: float, shard: str | None) -> bytes:
        while b"\n" not in self._buffer:
            self._fill(deadline, shard)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _exactly(self, size: int, deadline: float, shard: str) -> bytes:
        while len(self._buffer) < size:
            self._fill(deadline, shard)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _ended(self, shard: str | None) -> SourceError:
        try:
            code = self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        self.close()
        if code is None:
            how = "stopped answering"
        else:
            how = f"died of signal {-code}" if code < 0 else f"ended with status {code}"
        return SourceError(
            f"{shard or self.root}: the array_record library could not read it (its process {how}; within "
            f"{self.limit / (1 << 30):.1f} GB of address space): a damaged or crafted file?"
        )


def _stop(child: subprocess.Popen, log) -> None:
    try:
        child.stdin.close()  # the child ends when its requests do
    except OSError:
        pass
    try:
        child.wait(timeout=5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    log.close()


def _listed(records, split: str, index: int) -> int | None:
    lengths = records.shard_lengths.get(split)
    return lengths[index] if lengths else None


def shard_sizes(records) -> dict[str, int]:
    """Each shard's size; one line for a shard that is missing or cannot be opened."""
    sizes = {}
    for shards in records.files.values():
        for path in shards:
            try:
                present = Path(path).is_file()
                sizes[path] = os.path.getsize(path) if present else -1
            except OSError as exc:  # a name from the metadata that no file system holds (too long)
                name = Path(path).name[:80]
                raise SourceError(
                    f"{records.root}: ArrayRecord shard {name!r} cannot be opened ({exc.strerror})"
                ) from None
            if not present:
                raise SourceError(f"{records.root}: ArrayRecord shard {Path(path).name} is missing")
    return sizes


# (each shard's path, size, mtime_ns and inode; the layout checked) -> its process
_PROCESSES: dict[tuple, RecordProcess] = {}


def record_process(records) -> RecordProcess:
    """The process that reads ``records``' shards, every shard and record checked (started once per
    process while the shards are unchanged); one line naming the first shard or record that fails."""
    from ..sources.image_file import SPLIT_PIXELS_PER_BYTE, split_pixel_budget

    sizes = shard_sizes(records)
    stats = [os.stat(path) for path in sizes]
    key = (
        tuple((path, s.st_size, s.st_mtime_ns, s.st_ino) for path, s in zip(sizes, stats)),
        tuple((split, tuple(files)) for split, files in records.files.items()),
        tuple(sorted(records.counts.items())),
        tuple((split, tuple(n)) for split, n in sorted(records.shard_lengths.items())),
        json.dumps(layout(records)),
    )
    held = _PROCESSES.get(key)
    if held is not None and held.usable:
        return held
    process = RecordProcess(records, sizes)
    for split, counts in process.counts.items():
        if sum(counts) != records.counts[split]:
            process.close()
            raise SourceError(
                f"{records.root}: the {split} split's shards hold {sum(counts):,} records; the dataset's metadata "
                f"lists {records.counts[split]:,}"
            )
        shards = sum(sizes[path] for path in records.files[split])
        if process.pixels[split] > split_pixel_budget(shards):
            process.close()
            raise SourceError(
                f"{records.root}: the {split} split's images decode to {process.pixels[split]:,} pixels, more than "
                f"{SPLIT_PIXELS_PER_BYTE} per byte of its {shards:,}-byte shards: a decompression bomb?"
            )
    _PROCESSES[key] = process
    return process
