#!/usr/bin/env python3
"""Build the small real CIFAR-10 sample bundled with cifarkit (cifarkit/sample/).

Takes the first N images of each class from the train and test splits of a real
cifar-10-python.tar.gz (see ../shared/data/README.md for how to build one) and writes them in
the official python layout, so `cifarkit export` with no dataset exercises the real reader:

    python scripts/make_sample.py ~/.cache/cifarkit-real/cifar-10-python.tar.gz

Then update SAMPLE_MD5 in cifarkit/constants.py with the md5 it prints.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from cifarkit.constants import SAMPLE_NAME
from cifarkit.sources import open_source

OUT = Path(__file__).resolve().parent.parent / "cifarkit" / "sample" / SAMPLE_NAME


def _pick(dataset, split: str, per_class: int):
    images, labels, names = [], [], []
    seen = np.zeros(len(dataset.class_names), dtype=int)
    for batch in dataset.batches[split]:
        for i, label in enumerate(batch.labels):
            if seen[label] < per_class:
                seen[label] += 1
                images.append(batch.images[i].transpose(2, 0, 1).reshape(-1))  # back to planar rows
                labels.append(int(label))
                names.append(batch.source_files[i].split(":")[-1].encode())
    return np.stack(images).astype(np.uint8), labels, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a real cifar-10-python.tar.gz")
    parser.add_argument("--per-class-train", type=int, default=20)
    parser.add_argument("--per-class-test", type=int, default=10)
    args = parser.parse_args()
    dataset = open_source(args.source, verify=False)
    members = {}
    for split, member, per_class in (
        ("train", "data_batch_1", args.per_class_train),
        ("test", "test_batch", args.per_class_test),
    ):
        data, labels, names = _pick(dataset, split, per_class)
        batch = {
            b"batch_label": f"sample of the {split} split".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": names,
        }
        members[member] = pickle.dumps(batch, protocol=2)
    members["batches.meta"] = pickle.dumps(
        {
            b"num_cases_per_batch": len(labels),
            b"label_names": [n.encode() for n in dataset.class_names],
            b"num_vis": 3072,
        },
        protocol=2,
    )
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(filename="", fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        for name, data in members.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(buffer.getvalue())
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes), md5 {hashlib.md5(buffer.getvalue()).hexdigest()}")


if __name__ == "__main__":
    main()
