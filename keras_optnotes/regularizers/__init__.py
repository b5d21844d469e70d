"""The notes' regularizers that Keras lacks, as `keras.regularizers.Regularizer`s."""

from keras_optnotes.regularizers.penalty import (  # noqa: F401
    ParameterNormPenalty,
    apply_penalty,
)
