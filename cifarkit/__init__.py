"""cifarkit: CIFAR-10/100 read safely, exported fast, fed to TensorFlow.

    >>> import cifarkit
    >>> dataset = cifarkit.open_source("cifar-10-python.tar.gz")
    >>> cifarkit.export_dataset(dataset, "cifar10-png", cifarkit.ExportOptions(format="png"))
    >>> train = cifarkit.load("cifar10-png", "train")  # tf.data.Dataset of (uint8 image, label)
"""

__version__ = "0.1.0"  # defined first: submodules import it

from .data import load, open_data  # noqa: E402  (TensorFlow is imported on first use only)
from .errors import CifarkitError  # noqa: E402
from .export import ExportOptions, export_dataset  # noqa: E402
from .sources import open_source  # noqa: E402

__all__ = ["CifarkitError", "ExportOptions", "__version__", "export_dataset", "load", "open_data", "open_source"]
