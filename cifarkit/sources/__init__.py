"""Everything that reads datasets: CIFAR archives and folders, image trees, downloads."""

from .layouts import open_source
from .records import Batch, Dataset

__all__ = ["Batch", "Dataset", "open_source"]
