"""Dataset statistics as JSON (``stats.json``, the bundled ``*-stats.json``, the ``stats`` a saved
model's preprocessing layer holds in its config), read into a checked type.

Channels are 3 (RGB) or 1 (grey images); every vector and matrix has that many entries, means
lie in [0, 1] (the scale is uint8 / 255), spreads are finite and not negative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pydantic

from .jsonfile import Strict, parse_json, read_bytes_capped

MAX_STATS_BYTES = 1024 * 1024  # the file is about 1 KB
CHANNELS = (1, 3)

Number = Annotated[float, pydantic.Field(allow_inf_nan=False)]
Unit = Annotated[float, pydantic.Field(ge=0, le=1, allow_inf_nan=False)]
NotNegative = Annotated[float, pydantic.Field(ge=0, allow_inf_nan=False)]
Row = Annotated[tuple[Number, ...], pydantic.Field(max_length=3)]
Text = Annotated[str, pydantic.Field(max_length=4096)]


class StatsFile(Strict):
    """The fields of :class:`cifarkit.readers.stats.Stats` (``mean_255`` and ``std_255`` are derived)."""

    mean: Annotated[tuple[Unit, ...], pydantic.Field(min_length=1, max_length=3)]
    std: Annotated[tuple[NotNegative, ...], pydantic.Field(min_length=1, max_length=3)]
    covariance: Annotated[tuple[Row, ...], pydantic.Field(max_length=3)]
    eigenvalues: Annotated[tuple[Number, ...], pydantic.Field(max_length=3)]
    eigenvectors: Annotated[tuple[Row, ...], pydantic.Field(max_length=3)]
    pixels: Annotated[int, pydantic.Field(ge=1, le=2**62)]
    images: Annotated[int, pydantic.Field(ge=1, le=2**40)]
    dataset: Text = ""
    split: Text = "train"
    scale: Text = ""

    @pydantic.model_validator(mode="after")
    def _channels(self) -> StatsFile:
        channels = len(self.mean)
        if channels not in CHANNELS:
            raise ValueError(f"statistics of {channels} channels; images have 1 or 3")
        square = (self.covariance, self.eigenvectors)
        if (
            len(self.std) != channels
            or len(self.eigenvalues) != channels
            or any(len(m) != channels or any(len(row) != channels for row in m) for m in square)
        ):
            raise ValueError(f"the mean has {channels} channels, but not every vector and matrix matches")
        return self


def read_stats_file(path: Path) -> StatsFile:
    """A statistics file; anything else is one line (:class:`cifarkit.errors.SourceError`)."""
    return parse_json(read_bytes_capped(path, MAX_STATS_BYTES), StatsFile, path)


def parse_stats(data: bytes, where: object) -> StatsFile:
    return parse_json(data, StatsFile, where)
