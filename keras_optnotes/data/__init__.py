"""Datasets that need no network, and the batch-level augmentation recipe."""

from keras_optnotes.data.augment import augment, augmented_batches  # noqa: F401
from keras_optnotes.data.datasets import (  # noqa: F401
    DATASETS,
    OFFLINE_DATASETS,
    DatasetUnavailableError,
    Split,
    cifar10,
    corrupt_labels,
    digits,
    load,
    mnist,
    spirals,
    waveforms,
)

__all__ = [
    "DATASETS",
    "OFFLINE_DATASETS",
    "DatasetUnavailableError",
    "Split",
    "augment",
    "augmented_batches",
    "cifar10",
    "corrupt_labels",
    "digits",
    "load",
    "mnist",
    "spirals",
    "waveforms",
]
