"""cifarkit: CIFAR-10/100 read safely, exported fast, fed to TensorFlow.

>>> import cifarkit
>>> dataset = cifarkit.open_source("cifar-10-python.tar.gz")   # LabelledImages: numpy, by split
>>> cifarkit.export_dataset(dataset, "cifar10-png", cifarkit.ExportOptions(format="png"))
>>> reader = cifarkit.open_data("cifar10-png")                 # DataReader: builds tf.data
>>> train = cifarkit.load("cifar10-png", "train")  # tf.data.Dataset of (uint8 image, int64 label)
>>> ds = cifarkit.load("mnist", split="train[:90%]", as_supervised=False, batch_size=128)  # as tfds.load
>>> (x_train, y_train), (x_test, y_test) = cifarkit.load_numpy("cifar10")  # as keras.datasets
"""

from ._version import __version__
from .data import DataReader, load, load_numpy, open_data  # TensorFlow is imported on first use only
from .errors import CifarkitError
from .formats.export import ExportOptions, export_dataset
from .modelio.layer_registry import install as _install_keras_layers
from .sources import LabelledImages, open_source

_install_keras_layers()  # saved models load after `import cifarkit` alone; imports no Keras (see keras_registry)

__all__ = [
    "CifarkitError",
    "DataReader",
    "ExportOptions",
    "LabelledImages",
    "__version__",
    "export_dataset",
    "load",
    "load_numpy",
    "open_data",
    "open_source",
]
