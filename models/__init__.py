"""The ML itself: features, tf.Transform preprocessing, the Keras model. Knows no runner."""
