"""Where a dataset is found when the user names none, or names one (``cifarkit.load("mnist")``).

In order: ``$CIFARKIT_DATA``, ``./data/``, the Keras cache (Keras 2's ``cifar-10-batches-py/`` and
Keras 3's ``cifar-10-batches-py-target/cifar-10-batches-py/``), an extracted
``cifar-10-batches-py/`` in or next to the current folder; then the small real sample bundled with
cifarkit. A named dataset is looked for in the folder given (``data_dir``) first, then in the
same places, by the names the official files, Keras and torchvision give it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..constants import SAMPLE_NAME
from ..errors import SourceError
from .layouts import ARCHIVE_NAMES, EXTRACTED_FOLDERS, KERAS3_FOLDERS

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "sample" / SAMPLE_NAME
ENV_VAR = "CIFARKIT_DATA"


@dataclass(frozen=True)
class Found:
    path: Path
    is_sample: bool
    searched: tuple[str, ...]


def _dataset_in(folder: Path) -> Path | None:
    """A CIFAR archive or extracted folder directly inside ``folder`` (CIFAR-10 python first)."""
    for name in EXTRACTED_FOLDERS[:1] + KERAS3_FOLDERS[:1] + ARCHIVE_NAMES + EXTRACTED_FOLDERS[1:] + KERAS3_FOLDERS[1:]:
        if (folder / name).exists():
            return folder / name
    if folder.name == "tensorflow_datasets":  # TFDS's data_dir: <name>/<version>/ (formats/tfrecord_source.py)
        return next((folder / n for n in ("cifar10", "cifar100") if (folder / n).is_dir()), None)
    return None


def candidates(cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    cwd = cwd or Path.cwd()
    home = home or Path.home()
    return [
        cwd / "data",
        home / ".keras" / "datasets",
        home / "tensorflow_datasets",
        cwd,
        cwd.parent,
    ]


def find_dataset(cwd: Path | None = None, home: Path | None = None) -> Found:
    """The first dataset found in the usual places, or the bundled sample."""
    searched: list[str] = []
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.exists():
            raise SourceError(f"${ENV_VAR} is set to {path}, which does not exist")
        return Found(path, False, (f"${ENV_VAR}",))
    searched.append(f"${ENV_VAR} (unset)")
    for folder in candidates(cwd, home):
        searched.append(str(folder))
        if folder.is_dir():
            found = _dataset_in(folder)
            if found is not None:
                return Found(found, False, tuple(searched))
    return Found(SAMPLE_PATH, True, tuple(searched))


# What each dataset name (TFDS's names) is called on disk, most specific first: the official
# archives and their folders, Keras's caches (mnist.npz, fashion-mnist/), torchvision's folders,
# and a plain folder of the dataset's name.
DATASET_FILES = {
    "cifar10": (
        EXTRACTED_FOLDERS[0],
        KERAS3_FOLDERS[0],
        "cifar-10-python.tar.gz",
        EXTRACTED_FOLDERS[2],
        "cifar-10-binary.tar.gz",
        "cifar10",
        "cifar-10",
    ),
    "cifar100": (
        EXTRACTED_FOLDERS[1],
        KERAS3_FOLDERS[1],
        "cifar-100-python.tar.gz",
        EXTRACTED_FOLDERS[3],
        "cifar-100-binary.tar.gz",
        "cifar100",
        "cifar-100",
    ),
    "mnist": ("mnist.npz", "mnist", "MNIST/raw", "MNIST"),
    "fashion_mnist": ("fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "FashionMNIST"),
    "kmnist": ("kmnist", "KMNIST/raw", "KMNIST"),
}


def search_folders(data_dir: str | Path | None = None, cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    """Where a named dataset is looked for, in order."""
    cwd, home = cwd or Path.cwd(), home or Path.home()
    folders = [Path(data_dir).expanduser()] if data_dir is not None else []
    env = os.environ.get(ENV_VAR)
    if env:
        folders.append(Path(env).expanduser())
    folders += [cwd / "data", home / ".keras" / "datasets", home / "tensorflow_datasets", cwd]
    return folders


def find_named(
    name: str, data_dir: str | Path | None = None, cwd: Path | None = None, home: Path | None = None
) -> Path:
    """The first copy of dataset ``name`` (``cifar10``, ``mnist``, ...) in :func:`search_folders`."""
    key = name.lower().replace("-", "_")
    if key not in DATASET_FILES:
        raise SourceError(
            f"{name}: no such file or folder, and not a dataset name cifarkit looks for ({', '.join(DATASET_FILES)})"
        )
    folders = search_folders(data_dir, cwd, home)
    for folder in folders:
        if folder.name in DATASET_FILES[key] and folder.exists():  # $CIFARKIT_DATA may be the dataset itself
            return folder
        for entry in DATASET_FILES[key]:
            if (folder / entry).exists():
                return folder / entry
    hint = f"cifarkit download {key}, or give its path" if key.startswith("cifar") else "give its path"
    raise SourceError(f"{name}: not found in {', '.join(str(f) for f in folders)} ({hint})")
