"""The augmentations: ops registered by name, recipes as ordered op lists, the host
(tf.data) and device (keras.ops) forms, the Keras layer, and the preview grid."""
