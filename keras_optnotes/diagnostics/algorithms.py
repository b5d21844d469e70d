"""Algorithms on a Hessian operator: power iteration with deflation, Hutchinson's trace.

The algorithms only need `matvec(v) -> H v` on flat float64 vectors, so they are
written in NumPy (float64) and tested on explicit matrices; `hessian_top_eigenvalues`
and `hessian_trace` plug the model's `HessianOperator` into them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from keras_optnotes.checks import check_integer, check_positive
from keras_optnotes.diagnostics._progress import announce, check_verbose, progress_bar
from keras_optnotes.diagnostics.operators import HessianOperator
from keras_optnotes.diagnostics.results import HessianEigenvalues, HessianTrace

MatVec = Callable[[np.ndarray], np.ndarray]


def power_iteration(
    matvec: MatVec,
    size: int,
    k: int = 1,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    seed: int = 0,
    initial: np.ndarray | None = None,
    verbose: int | str = 0,
) -> HessianEigenvalues:
    """The k eigenvalues of largest magnitude of a symmetric operator.

    Power iteration v ← H v / ‖H v‖ on the space orthogonal to the eigenvectors already
    found (deflation by projection: the operator becomes (I − UUᵀ) H (I − UUᵀ)). The
    estimate is the Rayleigh quotient λ = vᵀ H v; iteration stops when
    |λ_t − λ_{t−1}| ≤ tolerance · |λ_{t−1}|.

    Args:
      matvec: v ↦ H v on flat float64 vectors of length `size`.
      size: the dimension n.
      k: how many eigenvalues (1 ≤ k ≤ n).
      max_iterations: iterations allowed per eigenvalue.
      tolerance: relative change of λ that counts as converged.
      seed: seed of the Gaussian start vectors.
      initial: optional start vector for the first eigenvalue (a warm start).
      verbose: 0 (default) silent; 1 or "auto" a `keras.utils.Progbar` per
        eigenvalue over its iterations, showing the current estimate; 2 one line
        per eigenvalue when it is done.

    Returns:
      `HessianEigenvalues` with eigenvalues, eigenvectors, residuals ‖Hu − λu‖,
      iterations and `converged`.

    Note:
      Power iteration finds the eigenvalues of largest *magnitude*; at a saddle the
      first may be negative. A product H v with a non-finite entry (NaN or inf in the
      data or the weights) stops the iteration with `converged=False`.
    """
    k = check_integer("k", k, 1)
    if k > size:
        raise ValueError(
            f"`k` must be at most the number of parameters {size}; received {k}."
        )
    max_iterations = check_integer("max_iterations", max_iterations, 1)
    tolerance = check_positive("tolerance", tolerance)
    verbose = check_verbose(verbose)
    rng = np.random.default_rng(seed)
    found: list[np.ndarray] = []
    values, residuals, iterations, all_converged = [], [], [], True

    def project(v: np.ndarray) -> np.ndarray:
        for u in found:
            v = v - (u @ v) * u
        return v

    for index in range(k):
        start = rng.standard_normal(size)
        if index == 0 and initial is not None:
            start = np.asarray(initial, np.float64).ravel()
        v = project(start)
        v /= np.linalg.norm(v)
        eigenvalue, converged, used = None, False, 0
        announce(f"Eigenvalue {index + 1}/{k}", verbose if k > 1 else 0)
        progress = progress_bar(max_iterations, verbose, "iteration", ["eigenvalue"])
        hv = project(matvec(v))
        while used < max_iterations:
            used += 1
            if not np.all(np.isfinite(hv)):  # a non-finite loss or gradient
                break
            new_eigenvalue = float(v @ hv)
            progress.update(used, [("eigenvalue", new_eigenvalue)], finalize=False)
            norm = np.linalg.norm(hv)
            if eigenvalue is not None and abs(new_eigenvalue - eigenvalue) <= (
                tolerance * abs(eigenvalue)
            ):
                eigenvalue, converged = new_eigenvalue, True
                break
            eigenvalue = new_eigenvalue
            if norm == 0.0:  # v lies in the null space: λ = 0 exactly
                converged = True
                break
            v = project(hv / norm)
            v /= np.linalg.norm(v)
            hv = project(matvec(v))
        eigenvalue = float(v @ hv)
        progress.update(used, [("eigenvalue", eigenvalue)], finalize=True)
        residuals.append(float(np.linalg.norm(hv - eigenvalue * v)))
        values.append(eigenvalue)
        iterations.append(used)
        found.append(v)
        all_converged &= converged
    return HessianEigenvalues(
        eigenvalues=np.array(values),
        eigenvectors=np.stack(found),
        residuals=np.array(residuals),
        iterations=np.array(iterations),
        converged=bool(all_converged),
    )


def _estimate(draws: list[float]) -> tuple[float, float]:
    """The mean of the draws zᵀ H z and its standard error (NaN from one draw)."""
    error = np.std(draws, ddof=1) / np.sqrt(len(draws)) if len(draws) > 1 else np.nan
    return float(np.mean(draws)), float(error)


def hutchinson(
    matvec: MatVec,
    size: int,
    samples: int = 100,
    seed: int = 0,
    tolerance: float | None = None,
    verbose: int | str = 0,
) -> HessianTrace:
    """Hutchinson's unbiased estimate of tr(H) with Rademacher vectors.

    tr(H) ≈ (1/m) Σ_i z_iᵀ H z_i with z_i ∈ {−1, +1}ⁿ uniform; the standard error is
    the sample standard deviation of z_iᵀ H z_i over √m.

    Args:
      matvec: v ↦ H v on flat float64 vectors of length `size`.
      size: the dimension n.
      samples: the number m of vectors (≥ 2, so that a standard error exists).
      seed: seed of the Rademacher draws.
      tolerance: when given, stop early once at least 10 samples give
        standard_error ≤ tolerance · |trace|; `converged` says whether that held.
        When `None`, all samples are used and `converged` is `True`. A non-finite
        zᵀ H z (NaN or inf in the data or the weights) stops the estimate with
        `converged=False`.
      verbose: 0 (default) silent; 1 or "auto" a `keras.utils.Progbar` over the
        samples, showing the running estimate and its standard error; 2 one line
        when done.

    Returns:
      `HessianTrace(trace, standard_error, samples, converged)`.

    References:
      Hutchinson, "A stochastic estimator of the trace of the influence matrix for
      Laplacian smoothing splines", 1990.
    """
    samples = check_integer("samples", samples, 2)
    if tolerance is not None:
        tolerance = check_positive("tolerance", tolerance)
    verbose = check_verbose(verbose)
    progress = progress_bar(samples, verbose, "sample", ["trace", "standard_error"])
    rng = np.random.default_rng(seed)
    draws: list[float] = []
    converged = tolerance is None
    for _ in range(samples):
        z = rng.integers(0, 2, size=size).astype(np.float64) * 2.0 - 1.0
        draws.append(float(z @ matvec(z)))
        trace, error = _estimate(draws)
        shown = [("trace", trace), ("standard_error", error)]
        progress.update(len(draws), shown, finalize=False)
        if not np.isfinite(draws[-1]):  # a non-finite loss or gradient
            converged = False
            break
        if (
            tolerance is not None
            and len(draws) >= 10
            and error <= tolerance * abs(trace)
        ):
            converged = True
            break
    progress.update(len(draws), shown, finalize=True)
    return HessianTrace(
        trace=trace,
        standard_error=error,
        samples=len(draws),
        converged=bool(converged),
    )


def hessian_top_eigenvalues(
    model: keras.Model,
    data: Any,
    k: int = 1,
    max_iterations: int = 100,
    tolerance: float = 1e-3,
    seed: int = 0,
    *,
    loss: Any = None,
    training: bool = False,
    batch_size: int = 256,
    jit_compile: bool | None = None,
    verbose: int | str = "auto",
) -> HessianEigenvalues:
    """The k largest-magnitude eigenvalues of the Hessian of the loss, λ_max first.

    Power iteration with deflation (`power_iteration`) on H = ∇²f(θ) at the model's
    current weights, f the training loss averaged over all batches of `data`
    (`HessianOperator`). Each iteration is one Hessian-vector product per batch.

    Args:
      model: a built Keras model, compiled with a loss (or pass `loss=`).
      data: a `tf.data.Dataset` of `(x, y[, sample_weight])` batches or a tuple of
        arrays.
      k: number of eigenvalues (≥ 1).
      max_iterations: power iterations per eigenvalue.
      tolerance: relative change of the eigenvalue that stops the iteration.
      seed: seed of the start vectors.
      loss: replaces the compiled loss.
      training: forward pass flag; `False` (default): dropout off, batch normalization
        on its moving statistics.
      batch_size: batch size for array data.
      jit_compile: XLA for the Hessian-vector product: `None` (default) on a GPU or
        TPU where the model allows, `True` on any device, `False` never (see
        `HessianOperator`).
      verbose: as in `Model.fit`: "auto" (default) or 1 a `keras.utils.Progbar`
        per eigenvalue over its power iterations, 2 one line per eigenvalue when
        done, 0 silent.

    Returns:
      `HessianEigenvalues`; `.top` is λ_max.

    Example:
      >>> result = hessian_top_eigenvalues(model, (x, y), k=2)
      >>> result.eigenvalues, result.converged

    References:
      Yao et al., "PyHessian: Neural networks through the lens of the Hessian", 2020.
    """
    check_integer("k", k, 1)
    verbose = check_verbose(verbose)
    operator = HessianOperator(
        model,
        data,
        loss=loss,
        training=training,
        batch_size=batch_size,
        jit_compile=jit_compile,
    )
    return power_iteration(
        operator.matvec,
        operator.size,
        k,
        max_iterations,
        tolerance,
        seed,
        verbose=verbose,
    )


def hessian_trace(
    model: keras.Model,
    data: Any,
    samples: int = 100,
    seed: int = 0,
    *,
    tolerance: float | None = None,
    loss: Any = None,
    training: bool = False,
    batch_size: int = 256,
    jit_compile: bool | None = None,
    verbose: int | str = "auto",
) -> HessianTrace:
    """Hutchinson's estimate of the trace of the loss Hessian, with its standard error.

    tr(H) ≈ (1/m) Σ z_iᵀ H z_i, z_i Rademacher, H = ∇²f(θ) the Hessian of the training
    loss over all batches of `data` at the current weights (`HessianOperator`).

    Args:
      model: a built Keras model, compiled with a loss (or pass `loss=`).
      data: a `tf.data.Dataset` of batches or a tuple of arrays.
      samples: number of Rademacher vectors (≥ 2).
      seed: seed of the draws.
      tolerance: optional early stop on the relative standard error (see
        `hutchinson`).
      loss: replaces the compiled loss.
      training: forward pass flag (default `False`).
      batch_size: batch size for array data.
      jit_compile: as for `hessian_top_eigenvalues`.
      verbose: as in `Model.fit`: "auto" (default) or 1 a `keras.utils.Progbar`
        over the samples with the running estimate, 2 one line when done, 0 silent.

    Returns:
      `HessianTrace(trace, standard_error, samples, converged)`.

    Example:
      >>> estimate = hessian_trace(model, (x, y), samples=50)
      >>> estimate.trace, estimate.standard_error

    References:
      Hutchinson 1990; Yao et al., "PyHessian", 2020.
    """
    check_integer("samples", samples, 2)
    verbose = check_verbose(verbose)
    operator = HessianOperator(
        model,
        data,
        loss=loss,
        training=training,
        batch_size=batch_size,
        jit_compile=jit_compile,
    )
    return hutchinson(
        operator.matvec, operator.size, samples, seed, tolerance, verbose=verbose
    )
