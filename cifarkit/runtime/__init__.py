"""Where and how TensorFlow runs: the distribution strategy and the runtime settings."""
