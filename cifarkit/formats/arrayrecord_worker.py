"""The child process that holds the ``array_record`` library for :mod:`.arrayrecord_process`: it
checks every shard of a dataset, then serves its records by index until the parent closes its
stdin.

The library trusts a file's footer (the chunk count it reserves memory for, the records per
chunk it divides by) and a chunk's compressed records, which zstd may inflate a thousandfold
(600 MB of zeros fit in a 128 KB file); the Riegeli hashes catch damage, not a file crafted with
correct ones. And it starts 64 threads, whose stacks and malloc arenas take up to 1.5 GB of
address space. So it never runs in cifarkit's process: here, under an address-space limit, a
crash or an allocation the limit refuses ends this process, and the parent says so in one line.

First every shard is opened and read whole, and checked:

- it is read one record at a time, in order, in this process's own thread: the library decodes a
  chunk there (its batch reads decode on its pool's threads, where a failed allocation aborts the
  process rather than raising), so a record too large for the limit is a :class:`MemoryError`;
- it holds the records the metadata lists (shard lengths; the parent adds the split counts);
- its records together decode to at most :data:`BYTES_PER_FILE_BYTE` times its size on disk
  (PNG or JPEG records do not compress: about 1x; raw pixels 1-5x);
- every record passes :func:`.record_checks.record_check`, the TFRecord records' checks (an
  Example with in-range int64 labels, an encoded image's header within the pixel budget, raw
  pixels that fill their shape); the pixels each shard's images decode to are sent to the parent,
  which holds a split to :func:`~cifarkit.sources.image_file.split_pixel_budget`.

Protocol: the first line of stdin is the request (JSON: the layout, the shards); the answers are
JSON lines on a copy of stdout (``{"shard": path}`` before a shard is opened, then its count and
pixels), and last ``{"ok": true}`` or ``{"error": "..."}``. Then each further line of stdin asks
for records (``{"shard": k, "at": [positions]}``, k indexing the request's shards), answered with
a frame: ``R``, the count (u32) and each record's length (u64) and bytes; or ``E``, a length (u32)
and the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
from types import SimpleNamespace

BYTES_PER_FILE_BYTE = 64  # what a shard's records may decode to, per byte of the file
FLOOR_BYTES = 64 << 20  # ... and at least this much, whatever the file's size
THREAD_STACK = 2 << 20  # the library's threads' stacks here (they decode records, recursing little)
READER_OPTIONS = "readahead_buffer_size:0,max_parallelism:0"  # random access, as TFDS and Grain read
COUNT, LENGTH = struct.Struct("<I"), struct.Struct("<Q")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def open_reader(module, path: str):
    """The library's reader, or the reason it cannot open the file."""
    reader = module.ArrayRecordReader(path, READER_OPTIONS)
    if reader.ok():
        return reader, None
    try:
        reader.read_all()  # raises the library's reason
    except (RuntimeError, IndexError) as exc:
        return None, f"{path}: not a valid ArrayRecord file ({first_line(exc)})"
    return None, f"{path}: not a valid ArrayRecord file"


def shard_problem(module, path: str, listed: int | None, check) -> tuple[str | None, int]:
    """Read one shard whole: (what is wrong with it, or None; its records)."""
    reader, problem = open_reader(module, path)
    if reader is None:
        return problem, 0
    try:
        count = reader.num_records()
        if listed is not None and count != listed:
            why = (
                f"{path}: holds {count:,} records; the dataset's metadata lists {listed:,} (a shard cut short "
                "or replaced?)"
            )
            return why, count
        budget = max(FLOOR_BYTES, BYTES_PER_FILE_BYTE * os.path.getsize(path))
        held = 0
        for index in range(count):
            try:
                data = reader.read()  # in this thread (max_parallelism 0): a failed allocation is a MemoryError
            except (RuntimeError, IndexError) as exc:
                if "allocate" in str(exc):  # pybind11's words for a bytes object the limit refused
                    raise MemoryError from None
                return f"{path}: not a valid ArrayRecord file (record {index}: {first_line(exc)})", count
            held += len(data)
            if held > budget:
                why = (
                    f"{path}: its records decode to more than {budget:,} bytes, {BYTES_PER_FILE_BYTE} times its "
                    "size on disk: a decompression bomb?"
                )
                return why, count
            reason = check(data)
            if reason is not None:
                return f"{path}: record {index}: {reason}", count
        return None, count
    finally:
        with contextlib.suppress(RuntimeError):  # a reader that failed raises its reason again
            reader.close()


def check_all(module, request: dict, limit: int, send) -> bool:
    """Check every shard of the request; whether all passed (the answers sent)."""
    from .record_checks import record_check

    spec = request["layout"]
    records = SimpleNamespace(
        class_names=range(spec["classes"]),
        coarse_key=spec["coarse_key"],
        coarse_class_names=range(spec["coarse_classes"]),
        image=spec["image"],
        shape=tuple(spec["shape"]),
    )
    for split, path, listed in request["shards"]:
        send({"shard": path})
        tally = [0]
        try:
            problem, count = shard_problem(module, path, listed, record_check(records, tally))
        except MemoryError:  # the library's std::bad_alloc under the limit
            gigabytes = limit / (1 << 30)
            problem, count = (
                (
                    f"{path}: its records decode to more than the {gigabytes:.1f} GB of memory this check may use: "
                    "a decompression bomb?"
                ),
                0,
            )
        except Exception as exc:  # the library's other refusals
            problem, count = f"{path}: cannot be read as an ArrayRecord file ({first_line(exc)})", 0
        if problem is not None:
            send({"error": problem})
            return False
        send({"split": split, "count": count, "pixels": tally[0]})
    send({"ok": True})
    return True


def serve(module, paths: list[str], requests, channel) -> None:
    """Records by position, until the parent closes the requests."""
    readers: dict[int, object] = {}
    while line := requests.readline():
        try:
            request = json.loads(line)
            shard = int(request["shard"])
            if shard not in readers:
                reader, problem = open_reader(module, paths[shard])
                if reader is None:
                    raise RuntimeError(problem)
                readers[shard] = reader
            records = readers[shard].read([int(at) for at in request["at"]])
        except Exception as exc:  # the file changed since it was checked, or a request out of range
            reason = first_line(exc).encode()
            channel.write(b"E" + COUNT.pack(len(reason)) + reason)
            channel.flush()
            continue
        parts = [b"R", COUNT.pack(len(records))]
        for record in records:
            parts += [LENGTH.pack(len(record)), record]
        channel.write(b"".join(parts))
        channel.flush()


def main(argv: list[str]) -> int:
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # nothing a library prints reaches the channel
    limit = int(argv[1])
    try:
        import resource

        # The library's 64 threads: with the usual 8 MB stacks they reserve 0.5 GB of address space.
        stack = resource.getrlimit(resource.RLIMIT_STACK)[1]
        resource.setrlimit(resource.RLIMIT_STACK, (THREAD_STACK if stack < 0 else min(THREAD_STACK, stack), stack))
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):  # no such limit here: the process still keeps a crash away
        pass
    requests = sys.stdin.buffer
    request = json.loads(requests.readline())

    def send(answer: dict) -> None:
        channel.write(json.dumps(answer).encode() + b"\n")
        channel.flush()

    from array_record.python import array_record_module as module

    if check_all(module, request, limit, send):
        serve(module, [path for _, path, _ in request["shards"]], requests, channel)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
