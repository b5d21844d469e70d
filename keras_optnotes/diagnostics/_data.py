"""Turn what the user passes as `data` into batches of tensors of the Keras backend.

Accepted: a `tf.data.Dataset` of batches `(x, y)` or `(x, y, sample_weight)` (as
`model.fit` takes it), or a tuple `(x, y)` / `(x, y, sample_weight)` of arrays, cut here
into batches of `batch_size`. Array batches are converted once and kept, so an algorithm
that sweeps the data a hundred times does not copy it a hundred times. On the JAX and
PyTorch backends the batches of a dataset are converted through NumPy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import keras

from keras_optnotes.checks import check_integer

Batch = tuple[Any, Any, Any]


def is_dataset(data: Any) -> bool:
    """Whether `data` is a `tf.data.Dataset` (TensorFlow is not imported to find out:
    a dataset cannot exist unless it was)."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and isinstance(data, tf.data.Dataset)


def _first_leaf(structure: Any) -> Any:
    return keras.tree.flatten(structure)[0]


def batch_size_of(x: Any) -> int:
    """The number of examples in a batch whose inputs are `x` (nested or not)."""
    return int(_first_leaf(x).shape[0])


def split_element(element: Any) -> Batch:
    """`(x, y, sample_weight)` of one element, `None` for the parts it lacks."""
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


def _leaf_to_tensor(value: Any) -> Any:
    if keras.backend.backend() != "tensorflow" and hasattr(value, "numpy"):
        if type(value).__module__.startswith("tensorflow"):
            value = value.numpy()  # a tf.Tensor from a dataset
    return keras.ops.convert_to_tensor(value)


def to_tensor(structure: Any) -> Any:
    """A (nested) batch as tensors of the current backend; `None` stays `None`."""
    if structure is None:
        return None
    return keras.tree.map_structure(_leaf_to_tensor, structure)


def check_data(data: Any) -> None:
    """Raise `ValueError` unless `data` is a dataset or a tuple of 1 to 3 parts."""
    if is_dataset(data):
        return
    if isinstance(data, (tuple, list)) and 1 <= len(data) <= 3:
        return
    raise ValueError(
        "`data` must be a tf.data.Dataset of batches or a tuple of arrays "
        f"(x, y) or (x, y, sample_weight); received {type(data).__name__}."
    )


class Batches:
    """Re-iterable batches `(x, y, sample_weight, size)` with at least one batch.

    Args:
      data: a `tf.data.Dataset` of batches, or a tuple of arrays.
      batch_size: the batch size used to cut arrays; ignored for a dataset.
    """

    def __init__(self, data: Any, batch_size: int = 256):
        batch_size = check_integer("batch_size", batch_size, 1)
        check_data(data)
        self._dataset = None
        self._cached: list[tuple[Any, Any, Any, int]] | None = None
        if is_dataset(data):
            self._dataset = data
        else:
            x, y, sample_weight = split_element(tuple(data))
            total = batch_size_of(x) if keras.tree.flatten(x) else 0
            self._cached = []
            for start in range(0, total, batch_size):
                stop = min(start + batch_size, total)

                def cut(structure, start=start, stop=stop):
                    if structure is None:
                        return None
                    return to_tensor(
                        keras.tree.map_structure(lambda a: a[start:stop], structure)
                    )

                self._cached.append((cut(x), cut(y), cut(sample_weight), stop - start))
        first = next(iter(self), None)
        if first is None:
            raise ValueError("`data` yields no batches; it must hold at least one.")
        self.first = first

    @property
    def single(self) -> bool:
        """Whether these are arrays cut into one batch: the same tensors every pass."""
        return self._cached is not None and len(self._cached) == 1

    def __iter__(self) -> Iterator[tuple[Any, Any, Any, int]]:
        if self._cached is not None:
            yield from self._cached
            return
        on_tensorflow = keras.backend.backend() == "tensorflow"
        for element in self._dataset:
            x, y, sample_weight = split_element(element)
            size = batch_size_of(x)
            if size:
                if not on_tensorflow:
                    x, y, sample_weight = (to_tensor(p) for p in (x, y, sample_weight))
                yield x, y, sample_weight, size
