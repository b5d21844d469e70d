"""The one way the package imports TensorFlow where the Keras backend may be another.

`keras_optnotes.data.augment` and the experiments use `tf.data` on every backend, so
they import TensorFlow lazily. On the PyTorch backend that import has an order to keep:
importing `triton` (which Keras' PyTorch backend and `torch.compile` import) after
TensorFlow crashes the interpreter with a segmentation fault (TensorFlow 2.21 with the
triton of PyTorch 2.14's wheels), while triton first and TensorFlow second works. So
Keras, and with it the backend, is imported first.
"""

from __future__ import annotations


def import_tensorflow():
    """`import tensorflow`, after Keras and its backend."""
    import keras  # noqa: F401  (on PyTorch: torch and triton, before TensorFlow)
    import tensorflow

    return tensorflow
