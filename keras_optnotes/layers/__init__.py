"""Layers that Keras lacks (noise on weights) and a factory for the normalization variants."""

from keras_optnotes.layers.normalization import (
    NORMALIZATION_KINDS,
    GroupNormalization,
    InstanceNormalization,
    normalization,
)
from keras_optnotes.layers.weight_noise import WeightNoise

__all__ = [
    "GroupNormalization",
    "InstanceNormalization",
    "NORMALIZATION_KINDS",
    "WeightNoise",
    "normalization",
]
