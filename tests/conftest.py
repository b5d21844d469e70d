"""Shared test set-up: quiet TensorFlow, the TensorFlow backend unless told otherwise.

The backend-sensitive test files run again on JAX and PyTorch, each in its own pytest
process (Keras picks its backend once per process). A test that needs TensorFlow itself
(`tf.distribute`, `tf.data` internals, the XLA-fused optimizer path) is marked
`@pytest.mark.tensorflow_only` and skipped on the other backends. float64 on JAX needs
x64 mode, switched on here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

BACKEND = os.environ["KERAS_BACKEND"]


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(
        reason=f"needs the TensorFlow backend (running on {BACKEND})"
    )
    if BACKEND != "tensorflow":
        for item in items:
            if "tensorflow_only" in item.keywords:
                item.add_marker(skip)
