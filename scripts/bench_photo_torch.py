#!/usr/bin/env python3
"""torchvision's ImageFolder + DataLoader over a photo tree, one timed pass at a time: the torch
contender of scripts/bench_photo_pipeline.py, run by a Python that has torch and torchvision
(their own virtual environment, not the project's), and driven over its standard input and
output so that its passes take turns with the other contenders'.

    /tmp/torchvenv/bin/python scripts/bench_photo_torch.py TREE --batch 128 --workers 2
    stdin: a recipe name ("paper" or "inception") a line; stdout: a JSON line for each pass

The transforms are the tutorials' for each recipe: Resize(256) (shorter side), RandomCrop(227),
RandomHorizontalFlip, ToTensor, Normalize; and RandomResizedCrop(224), RandomHorizontalFlip,
ToTensor, Normalize. The workers persist between passes (as a training run keeps them), and
their CPU time is read from /proc while they run, so each pass counts what every process spent.

This module imports only the standard library at the top: scripts/bench_photo_pipeline.py takes
:func:`tree_cpu_seconds` from it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

# ImageNet's channel means and deviations, as torchvision's examples normalise.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children, grandchildren...), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_cpu_seconds() -> float:
    """CPU seconds (user and system) of this process, of the children it reaped, and of those
    still running (a DataLoader's workers): a process reaped between two readings moves from
    the last term to the second, so the differences stay right."""
    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    tick = os.sysconf("SC_CLK_TCK")
    for pid in _descendants(os.getpid()):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def loaders(tree: str, batch: int, workers: int) -> dict:
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T

    normalize = T.Normalize(MEAN, STD)
    recipes = {
        "paper": T.Compose([T.Resize(256), T.RandomCrop(227), T.RandomHorizontalFlip(), T.ToTensor(), normalize]),
        "inception": T.Compose([T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(), normalize]),
    }
    return {
        name: DataLoader(
            datasets.ImageFolder(tree, transform=transform),
            batch_size=batch,
            shuffle=True,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        for name, transform in recipes.items()
    }


def serve(tree: str, batch: int, workers: int) -> int:
    import torch
    import torchvision

    made = loaders(tree, batch, workers)
    print(json.dumps({"ready": f"torch {torch.__version__}, torchvision {torchvision.__version__}"}), flush=True)
    for line in sys.stdin:
        loader = made[line.strip()]
        start, cpu, count = time.perf_counter(), tree_cpu_seconds(), 0
        for _images, labels in loader:
            count += int(labels.shape[0])
        wall = time.perf_counter() - start
        print(json.dumps({"images": count, "wall": wall, "cpu": tree_cpu_seconds() - cpu}), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    return serve(args.tree, args.batch, args.workers)


if __name__ == "__main__":
    sys.exit(main())
