"""The notes' regularizers that Keras lacks, as `keras.regularizers.Regularizer`s."""

from keras_optnotes.regularizers.penalty import (
    ParameterNormPenalty,
    apply_penalty,
)

__all__ = [
    "ParameterNormPenalty",
    "apply_penalty",
]
