"""Reading a split for training: the reader, TFDS's split syntax, file shuffling, image
decoding, the tf.data pipeline, the feed without tf.data, and statistics."""
