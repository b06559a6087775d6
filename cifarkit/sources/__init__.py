"""Everything that reads datasets: CIFAR archives and folders, image trees, downloads."""

from .labelled import Batch, LabelledImages
from .layouts import open_source

__all__ = ["Batch", "LabelledImages", "open_source"]
