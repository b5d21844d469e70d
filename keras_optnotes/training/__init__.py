"""Things that need their own train step (sharpness-aware minimization and the like)."""

from keras_optnotes.training.sharpness_aware_minimization import (
    SharpnessAwareMinimization,
)

__all__ = [
    "SharpnessAwareMinimization",
]
