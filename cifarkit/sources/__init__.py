"""Everything that reads datasets: CIFAR archives and folders, image trees, downloads."""

from .labelled import Batch, LabelledImages
from .registry import FAMILIES, SourceFamily, open_source

__all__ = ["FAMILIES", "Batch", "LabelledImages", "SourceFamily", "open_source"]
