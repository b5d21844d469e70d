"""Training callbacks: Prechelt early stopping and the diagnostics that run inside `fit`."""

from keras_optnotes.callbacks.early_stopping import PrecheltEarlyStopping  # noqa: F401
