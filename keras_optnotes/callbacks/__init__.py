"""Training callbacks: Prechelt early stopping and the diagnostics that run inside `fit`."""

from keras_optnotes.callbacks.early_stopping import PrecheltEarlyStopping
from keras_optnotes.callbacks.noise_scale import (
    GradientNoiseScale,
    noise_scale_estimates,
)
from keras_optnotes.callbacks.optimizer_state import (
    OptimizerStateMonitor,
    effective_learning_rates,
)
from keras_optnotes.callbacks.sharpness_monitor import SharpnessMonitor
from keras_optnotes.callbacks.swa import (
    StochasticWeightAveraging,
    recompute_batch_normalization_statistics,
)

__all__ = [
    "GradientNoiseScale",
    "OptimizerStateMonitor",
    "PrecheltEarlyStopping",
    "SharpnessMonitor",
    "StochasticWeightAveraging",
    "effective_learning_rates",
    "noise_scale_estimates",
    "recompute_batch_normalization_statistics",
]
