"""The ArrayRecord target's mutator (scripts/fuzz_targets.py): shards whose records are changed and
written again with the library's own writer, so the Riegeli hashes are right and the change
reaches the record checks, the counts and the decoders; and shards whose bytes are changed as they
lie, cut short or damaged under their hashes.

The records are the TFRecord export's Examples: they are mutated by the TFRecord target's own
mutators (fuzz_records.py) on the same records framed as a TFRecord shard.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile

import fuzz_mutators as mut
import fuzz_records as rec

WRITER_OPTIONS = "group_size:1"  # cifarkit's and TFDS's
BOMB_MB = 70  # a record of zeros over the 64 MB a small shard's records may decode to, in a few KB
_DECODED: dict[int, list[bytes]] = {}  # a seed's records, by the hash of its bytes


class _Library:
    """The array_record library in a helper process of its own: loaded in the fuzz worker, its 64
    threads' stacks and malloc arenas (1.5 GB of address space) would count against the worker's
    limit and make the readers under test fail for want of memory. Shards go in and out as files;
    records as TFRecord framing (fuzz_records.frame)."""

    _process: subprocess.Popen | None = None

    @classmethod
    def call(cls, op: str, src: str, dst: str) -> None:
        if cls._process is None or cls._process.poll() is not None:
            env = dict(os.environ, MALLOC_ARENA_MAX="2")
            cls._process = subprocess.Popen(
                [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )
        cls._process.stdin.write(f"{op}\t{src}\t{dst}\n")
        cls._process.stdin.flush()
        answer = cls._process.stdout.readline()
        if answer != "ok\n":
            raise RuntimeError(f"the array_record helper answered {answer!r}")


def _serve() -> None:
    from array_record.python import array_record_module as module

    for line in sys.stdin:
        op, src, dst = line.rstrip("\n").split("\t")
        if op == "decode":
            reader = module.ArrayRecordReader(src)
            with open(dst, "wb") as out:
                out.write(b"".join(rec.frame(r) for r in reader.read_all()))
            reader.close()
        else:
            with open(src, "rb") as held:
                records = rec.records_of(held.read())
            writer = module.ArrayRecordWriter(dst, WRITER_OPTIONS)
            for record in records:
                writer.write(record)
            writer.close()
        print("ok", flush=True)


def records(data: bytes) -> list[bytes]:
    """The records of a well-formed shard (the seeds are), read once per seed."""
    key = hash(data)
    if key not in _DECODED:
        with _scratch(data) as src, _scratch(b"") as dst:
            _Library.call("decode", src, dst)
            with open(dst, "rb") as framed:
                _DECODED[key] = rec.records_of(framed.read())
    return list(_DECODED[key])


def shard(records: list[bytes]) -> bytes:
    """The bytes of a shard holding ``records``, as cifarkit's writer writes them."""
    with _scratch(b"".join(rec.frame(r) for r in records)) as src, _scratch(b"") as dst:
        _Library.call("encode", src, dst)
        with open(dst, "rb") as handle:
            return handle.read()


class _scratch:
    """A temporary file holding ``data``, removed after."""

    def __init__(self, data: bytes):
        fd, self.path = tempfile.mkstemp(suffix=".array_record")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)

    def __enter__(self) -> str:
        return self.path

    def __exit__(self, *exc) -> None:
        os.unlink(self.path)


def mutate_array_record(rng: random.Random, data: bytes, images: dict[str, bytes]) -> tuple[bytes, str]:
    held = records(data)
    choice = rng.randrange(10)
    if choice < 5 and held:  # an Example changed (labels, images, shapes, keys), written anew
        framed, note = rec.mutate_example(rng, b"".join(rec.frame(r) for r in held), images)
        return shard(rec.records_of(framed)), f"records rewritten: {note}"
    if choice < 7 and held:  # records dropped, repeated, moved, or the shard's tail cut off
        i = rng.randrange(len(held))
        how = rng.choice(["dropped", "repeated", "moved last", "cut after"])
        if how == "dropped":
            del held[i]
        elif how == "repeated":
            held.insert(i, held[i])
        elif how == "moved last":
            held.append(held.pop(i))
        else:
            held = held[:i]
        return shard(held), f"record {i} {how}, written anew"
    if choice == 7:
        cut = rng.randrange(len(data))
        return data[:cut], f"cut at byte {cut}"
    if choice == 8 and held and rng.random() < 0.2:
        i = rng.randrange(len(held))
        held[i] = bytes(BOMB_MB << 20)
        return shard(held), f"record {i} is {BOMB_MB} MB of zeros (a few KB compressed)"
    changed, note = mut.mutate_binary(rng, data, [])
    return changed, f"shard bytes: {note}"


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    _serve()
