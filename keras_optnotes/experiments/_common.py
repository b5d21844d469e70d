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
    """Runs the block with the active backend's deterministic kernels, then restores.

    The experiments seed everything they draw (`keras.utils.set_random_seed`, seeded
    layers and shuffles); this switches on, for the duration, what each backend
    offers against run-to-run differences in its kernels:

    - TensorFlow: `tf.config.experimental.enable_op_determinism()` (switched off
      again afterwards if it was off). With it, a run repeats bit for bit on the
      same machine and versions, on CPU and GPU.
    - PyTorch: `torch.use_deterministic_algorithms(True, warn_only=True)` (the
      previous setting restored afterwards): the deterministic implementation of
      every op that has one, a warning for the few that have none on GPU (on CUDA,
      cuBLAS also needs `CUBLAS_WORKSPACE_CONFIG=:4096:8` in the environment before
      the process starts). On CPU, runs repeat bit for bit.
    - JAX: nothing to switch at run time. On CPU, XLA's kernels are deterministic
      and runs repeat bit for bit; on GPU, set
      `XLA_FLAGS=--xla_gpu_deterministic_ops=true` before the process starts.

    Not reproducible bit for bit on any backend: one backend against another, other
    versions of the backend or of Keras, other hardware or thread counts.
    """
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        with _tensorflow_op_determinism():
            yield
    elif backend == "torch":
        with _torch_deterministic_algorithms():
            yield
    else:
        yield


@contextlib.contextmanager
def _tensorflow_op_determinism() -> Iterator[None]:
    from keras_optnotes._tensorflow import import_tensorflow

    tf = import_tensorflow("TensorFlow's op determinism")

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


@contextlib.contextmanager
def _torch_deterministic_algorithms() -> Iterator[None]:
    import torch

    was_enabled = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(was_enabled, warn_only=was_warn_only)
