"""Model files: the .keras contract, export to SavedModel and TFLite, running exported
models, and the registry of cifarkit's Keras layers."""
