"""What the diagnostics return: small frozen dataclasses, never a bare float.

Each holds the estimate, its error measure (a residual or a standard error), the
iterations or samples it used and a `converged` flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class HessianEigenvalues:
    """The k eigenvalues of largest magnitude of the loss Hessian.

    Attributes:
      eigenvalues: shape (k,), in the order found (decreasing magnitude, as a rule).
      eigenvectors: shape (k, n), unit-norm flat vectors (see
        `HessianOperator.unflatten` to cut them per variable).
      residuals: shape (k,), ‖H u − λ u‖ for each pair.
      iterations: shape (k,), power iterations used for each eigenvalue.
      converged: whether every eigenvalue met the tolerance within `max_iterations`.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    iterations: np.ndarray
    converged: bool

    @property
    def top(self) -> float:
        """The first (largest-magnitude) eigenvalue, λ_max."""
        return float(self.eigenvalues[0])


@dataclass(frozen=True)
class HessianTrace:
    """Hutchinson's estimate of tr(H) with its standard error.

    Attributes:
      trace: the mean of zᵀ H z over the Rademacher vectors z drawn.
      standard_error: the sample standard deviation of zᵀ H z over √samples.
      samples: the number of vectors used.
      converged: whether standard_error ≤ tolerance · |trace| when it stopped.
    """

    trace: float
    standard_error: float
    samples: int
    converged: bool


@dataclass(frozen=True)
class KeskarSharpness:
    """Keskar et al.'s ε-sharpness (Metric 2.1), in percent.

    Attributes:
      sharpness: φ = 100 · (max_{y ∈ C_ε} f(x + A y) − f(x)) / (1 + f(x)).
      loss: f(x), the loss at the solution.
      max_loss: the largest loss found in the box (a lower bound on the true maximum).
      epsilon: the box's relative half-width ε.
      subspace_dim: p, or None for the full space.
      iterations: the iterations of the inner maximisation.
      function_evaluations: loss-and-gradient evaluations made (each a pass over data).
      converged: whether the maximiser reported convergence before `max_iterations`.
    """

    sharpness: float
    loss: float
    max_loss: float
    epsilon: float
    subspace_dim: int | None
    iterations: int
    function_evaluations: int
    converged: bool


@dataclass(frozen=True, eq=False)
class LossLine:
    """The loss along a 1-D line in weight space, at the given `alphas`."""

    alphas: np.ndarray
    losses: np.ndarray


@dataclass(frozen=True, eq=False)
class LossSurface:
    """The loss on a 2-D grid: `losses[i, j]` at θ + alphas[i] d1 + betas[j] d2."""

    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray


@dataclass(frozen=True, eq=False)
class LearningRateRange:
    """The curve of a learning-rate range test (Smith).

    Attributes:
      learning_rates: the learning rate of each step taken.
      losses: the training loss of each step's batch.
      smoothed_losses: bias-corrected exponential moving average of `losses`.
      suggested_learning_rate: the learning rate where the smoothed loss falls fastest
        (steepest negative slope against log η) before its minimum.
      diverged: whether the run stopped because the smoothed loss exceeded
        `divergence` × its minimum (or became non-finite).
      steps: the number of steps taken.
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed_losses: np.ndarray
    suggested_learning_rate: float
    diverged: bool
    steps: int
