"""λ_max (and the trace) of the loss Hessian, logged every few epochs of `fit`."""

from __future__ import annotations

import math
from typing import Any

from keras_optnotes.callbacks._logs import LogProducer
from keras_optnotes.checks import check_bool, check_integer, check_positive
from keras_optnotes.diagnostics._backend import check_jit_compile
from keras_optnotes.diagnostics._data import Batches
from keras_optnotes.diagnostics.algorithms import hutchinson, power_iteration
from keras_optnotes.diagnostics.operators import HessianOperator


class SharpnessMonitor(LogProducer):
    """Log the top Hessian eigenvalue λ_max (and optionally tr H) during training.

    At the end of every `every_n_epochs`-th epoch (the first one included), λ_max of
    H = ∇²f(θ) — f the compiled training loss averaged over all batches of `data`,
    with `training=False` by default — is found by power iteration
    (`power_iteration`), warm-started from the previous epoch's eigenvector, and
    written into the logs (hence `history.history`) as `hessian_top_eigenvalue`.
    With `trace_samples ≥ 2`, Hutchinson's estimate of tr H is logged as
    `hessian_trace`. Epochs without a measurement log `nan`, so every history list
    has one entry per epoch. The Hessian-vector product (see `HessianOperator`)
    is traced once for the whole run. Every result is also kept in `self.results`
    as `(epoch, result)`.

    Every argument, `data` included, is checked at construction; the operator is
    built at the first measurement, so a model that `fit` builds (no `Input`) is
    fine. The callback runs before the other callbacks of `fit` whatever its place
    in the list (it moves itself to the front when `fit` sets it up, and warns once
    where it cannot), so `TensorBoard`, `CSVLogger` or
    `ModelCheckpoint(monitor="hessian_top_eigenvalue")` see its values.

    Args:
      data: a `tf.data.Dataset` of batches or a tuple of arrays (a fixed subset of the
        training or validation set; every measurement sweeps all of it).
      every_n_epochs: measure every this many epochs.
      trace_samples: Rademacher vectors for the trace; 0 turns the trace off.
      max_iterations: power iterations per measurement.
      tolerance: relative change of λ that stops the power iteration.
      seed: seed of the start vector and of the trace's vectors (an integer ≥ 0).
      training: forward pass flag (default `False`).
      batch_size: batch size for array data (an integer ≥ 1).
      jit_compile: XLA for the Hessian-vector product (`None`: TensorFlow on a GPU
        or TPU where the model allows, JAX always; `True` is refused on PyTorch;
        see `HessianOperator`).

    Example:
      >>> monitor = SharpnessMonitor((x_val[:512], y_val[:512]), trace_samples=20)
      >>> history = model.fit(x, y, epochs=5, callbacks=[monitor])
      >>> history.history["hessian_top_eigenvalue"]

    References:
      Cohen et al., "Gradient descent on neural networks typically occurs at the edge
      of stability", ICLR 2021 (λ_max during training).
    """

    def __init__(
        self,
        data: Any,
        every_n_epochs: int = 1,
        trace_samples: int = 0,
        max_iterations: int = 20,
        tolerance: float = 1e-3,
        seed: int = 0,
        training: bool = False,
        batch_size: int = 256,
        jit_compile: bool | None = None,
    ):
        super().__init__()
        self.data = data
        self.every_n_epochs = check_integer("every_n_epochs", every_n_epochs, 1)
        self.trace_samples = check_integer("trace_samples", trace_samples, 0)
        if self.trace_samples == 1:
            raise ValueError(
                "`trace_samples` must be 0 (no trace) or at least 2; received 1."
            )
        self.max_iterations = check_integer("max_iterations", max_iterations, 1)
        self.tolerance = check_positive("tolerance", tolerance)
        self.seed = check_integer("seed", seed, 0)
        self.training = check_bool("training", training)
        self.batch_size = check_integer("batch_size", batch_size, 1)
        self.jit_compile = check_jit_compile(jit_compile)
        Batches(data, self.batch_size)  # checks `data` now, not when fit starts
        self.results: list[tuple[int, Any]] = []
        self._operator = None
        self._vector = None

    def on_train_begin(self, logs=None):
        self._operator = (
            None  # fit may build the model later: see the first measurement
        )
        self._vector = None

    def _operator_for_this_run(self) -> HessianOperator:
        if self._operator is None:
            self._operator = HessianOperator(
                self.model,
                self.data,
                training=self.training,
                batch_size=self.batch_size,
                jit_compile=self.jit_compile,
            )
        return self._operator

    def on_epoch_end(self, epoch, logs=None):
        values = {"hessian_top_eigenvalue": math.nan}
        if self.trace_samples:
            values["hessian_trace"] = math.nan
        if epoch % self.every_n_epochs == 0:
            operator = self._operator_for_this_run()
            eigen = power_iteration(
                operator.matvec,
                operator.size,
                max_iterations=self.max_iterations,
                tolerance=self.tolerance,
                seed=self.seed + epoch,
                initial=self._vector,
            )
            self._vector = eigen.eigenvectors[0]
            self.results.append((epoch, eigen))
            values["hessian_top_eigenvalue"] = eigen.top
            if self.trace_samples:
                trace = hutchinson(
                    operator.matvec,
                    operator.size,
                    self.trace_samples,
                    self.seed + epoch,
                )
                self.results.append((epoch, trace))
                values["hessian_trace"] = trace.trace
            operator.release()  # training does not carry the product's graph
        if logs is not None:
            logs.update(values)
