"""Training callbacks: Prechelt early stopping and the diagnostics that run inside `fit`."""

from keras_optnotes.callbacks.early_stopping import PrecheltEarlyStopping  # noqa: F401
from keras_optnotes.callbacks.noise_scale import GradientNoiseScale  # noqa: F401
from keras_optnotes.callbacks.optimizer_state import (  # noqa: F401
    OptimizerStateMonitor,
    effective_learning_rates,
)
from keras_optnotes.callbacks.sharpness_monitor import SharpnessMonitor  # noqa: F401
from keras_optnotes.callbacks.swa import (  # noqa: F401
    StochasticWeightAveraging,
    recompute_batch_normalization_statistics,
)
