"""The notes' regularizers that Keras lacks, as `keras.regularizers.Regularizer`s."""
