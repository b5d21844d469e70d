"""Keskar et al.'s ε-sharpness (ICLR 2017, Metric 2.1)."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_optnotes.checks import check_integer, check_positive
from keras_optnotes.diagnostics._progress import check_verbose, progress_bar
from keras_optnotes.diagnostics.operators import HessianOperator, preserved_weights
from keras_optnotes.diagnostics.results import KeskarSharpness


def _import_scipy_optimize():
    try:
        from scipy import optimize
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "keskar_sharpness maximises with SciPy's L-BFGS-B; install it with "
            'pip install "keras-optnotes[diagnostics]"'
        ) from error
    return optimize


def keskar_sharpness(
    model: keras.Model,
    data: Any,
    epsilon: float = 1e-3,
    subspace_dim: int | None = None,
    max_iterations: int = 10,
    seed: int = 0,
    *,
    loss: Any = None,
    training: bool = False,
    batch_size: int = 256,
    verbose: int | str = "auto",
) -> KeskarSharpness:
    """Keskar's ε-sharpness of the solution held in `model`'s weights, in percent.

    With x the trainable weights (flat), f the training loss over all batches of
    `data` (`HessianOperator`), A an n×p matrix and C_ε the box

        C_ε = {y ∈ Rᵖ : |y_i| ≤ ε (|(A⁺x)_i| + 1)},

    the sharpness is

        φ_{x,f}(ε, A) = 100 · (max_{y ∈ C_ε} f(x + A y) − f(x)) / (1 + f(x)).

    With `subspace_dim=None`, A = I (the full space, the box |y_i| ≤ ε(|x_i| + 1)); with
    `subspace_dim=p`, A has p columns of independent standard normal entries drawn
    from `seed` and A⁺ is its pseudo-inverse.

    The inner maximisation is done approximately, as in the paper, by SciPy's
    L-BFGS-B on −f(x + A y) with the box as bounds, for at most `max_iterations`
    iterations, from a start drawn uniformly in the box (at a minimum ∇f = 0, so
    y = 0 would not move). The result is a lower bound on the true maximum. Needs
    the `diagnostics` extra (SciPy). The model's weights are restored exactly. A
    non-finite loss or gradient anywhere (NaN or inf in the data or the weights)
    gives `converged=False`.

    Args:
      model: a built Keras model, compiled with a loss (or pass `loss=`).
      data: a `tf.data.Dataset` of batches or a tuple of arrays.
      epsilon: ε > 0, the box's relative half-width (the paper uses 1e-3 and 5e-4).
      subspace_dim: p ≥ 1, or `None` for the full space.
      max_iterations: L-BFGS-B iterations (the paper: 10).
      seed: seed of A and of the start point.
      loss: replaces the compiled loss.
      training: forward pass flag (default `False`).
      batch_size: batch size for array data.
      verbose: as in `Model.fit`: "auto" (default) or 1 a `keras.utils.Progbar`
        over the L-BFGS-B iterations with the largest loss found so far, 2 one
        line when done, 0 silent.

    Returns:
      `KeskarSharpness` with φ, f(x), the maximum found, and the iterations used.

    Example:
      >>> keskar_sharpness(model, (x, y), epsilon=1e-3).sharpness

    References:
      Keskar, Mudigere, Nocedal, Smelyanskiy, Tang, "On large-batch training for deep
      learning: generalization gap and sharp minima", ICLR 2017, Metric 2.1.
    """
    epsilon = check_positive("epsilon", epsilon)
    if subspace_dim is not None:
        subspace_dim = check_integer("subspace_dim", subspace_dim, 1)
    max_iterations = check_integer("max_iterations", max_iterations, 1)
    verbose = check_verbose(verbose)
    optimize = _import_scipy_optimize()
    operator = HessianOperator(
        model, data, loss=loss, training=training, batch_size=batch_size
    )
    rng = np.random.default_rng(seed)
    with preserved_weights(model):
        x = operator.flatten(operator.get_weights())
        base_loss = operator.loss()
        if subspace_dim is None:
            basis = None
            center = x
        else:
            basis = rng.standard_normal((operator.size, subspace_dim))
            center = np.linalg.lstsq(basis, x, rcond=None)[0]  # A⁺ x
        half_width = epsilon * (np.abs(center) + 1.0)
        best = [base_loss]
        evaluations = [0]
        finite = [bool(np.isfinite(base_loss))]

        def negative_loss(y: np.ndarray) -> tuple[float, np.ndarray]:
            step = y if basis is None else basis @ y
            operator.set_flat_weights(x + step)
            value, gradient = operator.loss_and_gradient()
            evaluations[0] += 1
            finite[0] &= bool(np.isfinite(value) and np.all(np.isfinite(gradient)))
            if np.isfinite(value):
                best[0] = max(best[0], value)
            if basis is not None:
                gradient = basis.T @ gradient
            return -value, -gradient

        progress = progress_bar(max_iterations, verbose, "iteration", ["max_loss"])
        iterations_done = [0]

        def report(_: np.ndarray) -> None:  # called by SciPy after each iteration
            iterations_done[0] += 1
            progress.update(iterations_done[0], [("max_loss", best[0])], finalize=False)

        start = rng.uniform(-half_width, half_width)
        outcome = optimize.minimize(
            negative_loss,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=optimize.Bounds(-half_width, half_width),
            # Only the iteration budget or a zero projected gradient (a corner of
            # the box) stops it: the default relative-decrease test would stop on
            # the tiny changes of f that sharpness is made of.
            options={"maxiter": max_iterations, "ftol": 0.0, "gtol": 0.0},
            callback=report,
        )
        progress.update(int(outcome.nit), [("max_loss", best[0])], finalize=True)
    max_loss = best[0]
    return KeskarSharpness(
        sharpness=100.0 * (max_loss - base_loss) / (1.0 + base_loss),
        loss=base_loss,
        max_loss=max_loss,
        epsilon=epsilon,
        subspace_dim=subspace_dim,
        iterations=int(outcome.nit),
        function_evaluations=evaluations[0],
        converged=bool(outcome.success) and finite[0],
    )
