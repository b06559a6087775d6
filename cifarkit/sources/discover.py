"""Where a dataset is found when the user names none.

In order: ``$CIFARKIT_DATA``, ``./data/``, the Keras cache, an extracted ``cifar-10-batches-py/``
in or next to the current folder; then the small real sample bundled with cifarkit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..constants import SAMPLE_NAME
from ..errors import SourceError
from .layouts import ARCHIVE_NAMES, EXTRACTED_FOLDERS

SAMPLE_PATH = Path(__file__).resolve().parent.parent / "sample" / SAMPLE_NAME
ENV_VAR = "CIFARKIT_DATA"


@dataclass(frozen=True)
class Found:
    path: Path
    is_sample: bool
    searched: tuple[str, ...]


def _dataset_in(folder: Path) -> Path | None:
    """A CIFAR archive or extracted folder directly inside ``folder`` (CIFAR-10 python first)."""
    for name in EXTRACTED_FOLDERS[:1] + ARCHIVE_NAMES + EXTRACTED_FOLDERS[1:]:
        if (folder / name).exists():
            return folder / name
    return None


def candidates(cwd: Path | None = None, home: Path | None = None) -> list[Path]:
    cwd = cwd or Path.cwd()
    home = home or Path.home()
    return [
        cwd / "data",
        home / ".keras" / "datasets",
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
