"""Layers that Keras lacks (noise on weights) and a factory for the normalization variants."""

from keras_optnotes.layers.normalization import (  # noqa: F401
    NORMALIZATION_KINDS,
    GroupNormalization,
    InstanceNormalization,
    normalization,
)
from keras_optnotes.layers.weight_noise import WeightNoise  # noqa: F401
