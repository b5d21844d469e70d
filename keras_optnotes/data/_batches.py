"""The `keras.utils.PyDataset` behind `augmented_batches` (imports Keras, so it is
imported only when batches are made; see `keras_optnotes.data.augment`)."""

from __future__ import annotations

import math

import keras
import numpy as np


class AugmentedBatches(keras.utils.PyDataset):
    """Batches of arrays, shuffled and augmented anew at each epoch.

    Made by `keras_optnotes.data.augmented_batches`, which checks the arguments.
    The epoch's arrays are made when its first batch is asked for, and dropped at
    its end (`on_epoch_end`), so epoch e always sees the e-th shuffle and the e-th
    draw of every layer.
    """

    def __init__(
        self, x, y, recipe, *, batch_size, augment_batch_size, shuffle
    ) -> None:
        # One worker, in the calling thread: the layers' seed generators advance
        # in the order of the epochs.
        super().__init__(workers=1, use_multiprocessing=False)
        self._x, self._y = x, y
        self._recipe = recipe
        self._layers = recipe.layers()
        self._batch_size = batch_size
        self._augment_batch_size = augment_batch_size
        self._shuffle = np.random.default_rng(recipe.seed) if shuffle else None
        self._epoch: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return math.ceil(len(self._x) / self._batch_size)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        if self._epoch is None:
            self._epoch = self._augmented_epoch()
        x, y = self._epoch
        window = slice(index * self._batch_size, (index + 1) * self._batch_size)
        return x[window], y[window]

    def on_epoch_end(self) -> None:
        self._epoch = None

    def _augmented_epoch(self) -> tuple[np.ndarray, np.ndarray]:
        order = (
            self._shuffle.permutation(len(self._x))
            if self._shuffle is not None
            else np.arange(len(self._x))
        )
        x, y = self._x[order], self._y[order]
        if not self._layers:
            return x, y
        xs, ys = [], []
        for start in range(0, len(x), self._augment_batch_size):
            chunk = slice(start, start + self._augment_batch_size)
            images, labels = self._recipe.apply(self._layers, x[chunk], y[chunk])
            xs.append(keras.ops.convert_to_numpy(images))
            ys.append(keras.ops.convert_to_numpy(labels))
        return np.concatenate(xs), np.concatenate(ys)
