"""Shared test set-up: quiet TensorFlow, the TensorFlow backend unless told otherwise.

Run the backend-independent tests on JAX with `KERAS_BACKEND=jax python -m pytest -m
"not tensorflow_only"`; float64 on JAX needs x64 mode, switched on here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if os.environ["KERAS_BACKEND"] == "jax":
    os.environ.setdefault("JAX_ENABLE_X64", "1")
