"""Helpers shared by the experiments."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

# Receives one line per run as it starts ("[2/7] Momentum (learning_rate=0.1)"); the
# experiments print nothing themselves, a command passes `print`.
Progress = Callable[[str], None]


@contextlib.contextmanager
def op_determinism() -> Iterator[None]:
    """Turns TensorFlow's op determinism on, and back off afterwards if it was off."""
    import tensorflow as tf

    try:  # TensorFlow has no public way back, so leave it on if this moves.
        from tensorflow.python.framework.config import (
            disable_op_determinism,
            is_op_determinism_enabled,
        )

        was_enabled = is_op_determinism_enabled()
    except ImportError:
        disable_op_determinism, was_enabled = None, True
    tf.config.experimental.enable_op_determinism()
    try:
        yield
    finally:
        if not was_enabled:
            disable_op_determinism()
