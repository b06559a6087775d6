"""cifarkit: CIFAR-10/100 read safely, exported fast, fed to TensorFlow."""

__version__ = "0.1.0"
