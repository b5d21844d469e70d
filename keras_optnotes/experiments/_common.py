"""Helpers shared by the experiments."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

# Receives one line per run as it starts ("[2/7] Momentum (learning_rate=0.1)"); the
# experiments print nothing themselves, a command passes `print`.
Progress = Callable[[str], None]


class RunsResult:
    """What every experiment's frozen result shares: its `runs`, one per arm.

    A subclass is a frozen dataclass with a `runs` tuple whose items have a
    `table_row()`, and names in `_run_name` the attribute that tells the runs apart.
    """

    runs: tuple
    _run_name: ClassVar[str]

    def get(self, name: str) -> Any:
        """The run called `name`.

        Raises:
            KeyError: no run of that name, listing the runs.
        """
        for run in self.runs:
            if getattr(run, self._run_name) == name:
                return run
        names = ", ".join(str(getattr(run, self._run_name)) for run in self.runs)
        raise KeyError(f"{name!r} was not run; runs: {names}")

    def table_rows(self) -> list[list]:
        """One summary row per run, in the order run."""
        return [run.table_row() for run in self.runs]


@contextlib.contextmanager
def op_determinism() -> Iterator[None]:
    """Turns TensorFlow's op determinism on, and back off afterwards if it was off."""
    from keras_optnotes._tensorflow import import_tensorflow

    tf = import_tensorflow()

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
