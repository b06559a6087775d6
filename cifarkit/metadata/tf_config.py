"""``$TF_CONFIG``, the cluster a multi-worker run trains on, read into a checked type."""

from __future__ import annotations

from typing import Annotated

import pydantic

from ..errors import UsageError
from .jsonfile import Strict, parse_json

MAX_TF_CONFIG_BYTES = 1024 * 1024  # a cluster of thousands of addresses is under 100 KB
MAX_TASKS = 100_000

Address = Annotated[str, pydantic.Field(min_length=1, max_length=1024)]


class Task(Strict):
    type: Annotated[str, pydantic.Field(min_length=1, max_length=64)]
    # TensorFlow's own parser takes "0" for 0, so this reads both
    index: Annotated[int, pydantic.Field(strict=False, ge=0, le=MAX_TASKS)]


class TFConfig(Strict):
    cluster: dict[
        Annotated[str, pydantic.Field(max_length=64)], Annotated[list[Address], pydantic.Field(max_length=MAX_TASKS)]
    ]
    task: Task

    @property
    def members(self) -> list[str]:
        """The addresses of this task's kind."""
        return self.cluster.get(self.task.type, [])


def parse_tf_config(raw: str, name: str = "TF_CONFIG") -> TFConfig:
    """``$TF_CONFIG``'s text; a malformed one is one line (:class:`UsageError`)."""
    data = raw.encode("utf-8", "surrogateescape")
    if len(data) > MAX_TF_CONFIG_BYTES:
        raise UsageError(f"${name} is larger than {MAX_TF_CONFIG_BYTES:,} bytes; not a cluster description")
    return parse_json(data, TFConfig, f"${name}", UsageError)
