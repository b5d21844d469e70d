"""Turn what the user passes as `data` into batches of tensors.

Accepted: a `tf.data.Dataset` of batches `(x, y)` or `(x, y, sample_weight)` (as
`model.fit` takes it), or a tuple `(x, y)` / `(x, y, sample_weight)` of arrays, cut here
into batches of `batch_size`. Array batches are converted once and kept, so an algorithm
that sweeps the data a hundred times does not copy it a hundred times.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow import nest

Batch = tuple[Any, Any, Any]


def _first_leaf(structure: Any) -> Any:
    return nest.flatten(structure)[0]


def batch_size_of(x: Any) -> int:
    """The number of examples in a batch whose inputs are `x` (nested or not)."""
    return int(_first_leaf(x).shape[0])


def _split_element(element: Any) -> Batch:
    if isinstance(element, (tuple, list)):
        if len(element) == 1:
            return element[0], None, None
        if len(element) == 2:
            return element[0], element[1], None
        if len(element) == 3:
            return element[0], element[1], element[2]
        raise ValueError(
            "`data` must yield (x, y) or (x, y, sample_weight); received elements "
            f"with {len(element)} parts."
        )
    return element, None, None


def _to_tensor(structure: Any) -> Any:
    if structure is None:
        return None
    return nest.map_structure(tf.convert_to_tensor, structure)


class Batches:
    """Re-iterable batches `(x, y, sample_weight, size)` with at least one batch.

    Args:
      data: a `tf.data.Dataset` of batches, or a tuple of arrays.
      batch_size: the batch size used to cut arrays; ignored for a dataset.
    """

    def __init__(self, data: Any, batch_size: int = 256):
        if isinstance(batch_size, bool) or not isinstance(
            batch_size, (int, np.integer)
        ):
            raise ValueError(
                f"`batch_size` must be a positive integer; received {batch_size!r}."
            )
        if batch_size < 1:
            raise ValueError(
                f"`batch_size` must be a positive integer; received {batch_size}."
            )
        self._dataset = None
        self._cached: list[tuple[Any, Any, Any, int]] | None = None
        if isinstance(data, tf.data.Dataset):
            self._dataset = data
        elif isinstance(data, (tuple, list)):
            x, y, sample_weight = _split_element(tuple(data))
            total = batch_size_of(x) if nest.flatten(x) else 0
            self._cached = []
            for start in range(0, total, int(batch_size)):
                stop = min(start + int(batch_size), total)

                def cut(structure, start=start, stop=stop):
                    if structure is None:
                        return None
                    return _to_tensor(
                        nest.map_structure(lambda a: a[start:stop], structure)
                    )

                self._cached.append((cut(x), cut(y), cut(sample_weight), stop - start))
        else:
            raise ValueError(
                "`data` must be a tf.data.Dataset of batches or a tuple of arrays "
                f"(x, y) or (x, y, sample_weight); received {type(data).__name__}."
            )
        first = next(iter(self), None)
        if first is None:
            raise ValueError("`data` yields no batches; it must hold at least one.")
        self.first = first

    def __iter__(self) -> Iterator[tuple[Any, Any, Any, int]]:
        if self._cached is not None:
            yield from self._cached
            return
        for element in self._dataset:
            x, y, sample_weight = _split_element(element)
            size = batch_size_of(x)
            if size:
                yield x, y, sample_weight, size
