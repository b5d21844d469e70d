"""Loss landscapes: random filter-normalized directions, 1-D lines, 2-D surfaces.

Directions are lists of arrays, one per trainable variable in
`model.trainable_variables` order. Every function restores the model's weights exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from keras_optnotes.diagnostics._progress import check_verbose, progress_bar
from keras_optnotes.diagnostics.operators import (
    HessianOperator,
    check_model,
    preserved_weights,
)
from keras_optnotes.diagnostics.results import LossLine, LossSurface

NORMALIZATIONS = ("filter", "layer", "none")
IGNORES = ("biasbn", "none")


def random_direction(
    model: keras.Model,
    normalization: str = "filter",
    ignore: str = "biasbn",
    seed: int = 0,
) -> list[np.ndarray]:
    """A random Gaussian direction in weight space, normalized as in Li et al. 2018.

    Each entry of d is drawn from N(0, 1), then, for every trainable variable w:

    - `"filter"`: each filter d_j is rescaled to d_j · ‖w_j‖ / ‖d_j‖. In Keras a
      filter is a slice along a kernel's *last* axis (the output channel of a
      `Conv2D` kernel `(h, w, in, out)`, the output unit of a `Dense` kernel).
    - `"layer"`: the whole variable is rescaled to d · ‖w‖ / ‖d‖.
    - `"none"`: left as drawn.

    Variables with at most one axis (biases, normalization scales and offsets) get a
    zero direction with `ignore="biasbn"`; with `ignore="none"` they get d = w, as in
    the authors' code.

    Args:
      model: a built Keras model.
      normalization: `"filter"`, `"layer"` or `"none"`.
      ignore: `"biasbn"` or `"none"`.
      seed: seed of the Gaussian draw.

    Returns:
      A list of float64 arrays shaped like `model.trainable_variables`.

    Example:
      >>> d1 = random_direction(model, seed=1)
      >>> d2 = random_direction(model, seed=2)

    References:
      Li, Xu, Taylor, Studer, Goldstein, "Visualizing the loss landscape of neural
      nets", NeurIPS 2018.
    """
    check_model(model)
    if normalization not in NORMALIZATIONS:
        raise ValueError(
            f"`normalization` must be one of {NORMALIZATIONS}; received "
            f"{normalization!r}."
        )
    if ignore not in IGNORES:
        raise ValueError(f"`ignore` must be one of {IGNORES}; received {ignore!r}.")
    rng = np.random.default_rng(seed)
    direction = []
    for variable in model.trainable_variables:
        weights = np.asarray(keras.ops.convert_to_numpy(variable), np.float64)
        d = rng.standard_normal(weights.shape)
        if weights.ndim <= 1:
            d = np.zeros_like(weights) if ignore == "biasbn" else weights.copy()
        elif normalization == "filter":
            axes = tuple(range(weights.ndim - 1))
            weight_norms = np.sqrt(np.sum(weights**2, axis=axes))
            draw_norms = np.sqrt(np.sum(d**2, axis=axes))
            d = d * (weight_norms / (draw_norms + 1e-10))
        elif normalization == "layer":
            d = d * (np.linalg.norm(weights) / (np.linalg.norm(d) + 1e-10))
        direction.append(d)
    return direction


def _check_alphas(name: str, alphas: Any) -> np.ndarray:
    values = np.asarray(alphas, np.float64).ravel()
    if values.size == 0:
        raise ValueError(f"`{name}` must hold at least one value; received {alphas!r}.")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"`{name}` must be finite; received {alphas!r}.")
    return values


def _check_direction(name: str, direction: Any, model: keras.Model) -> list[np.ndarray]:
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    arrays = [np.asarray(d, np.float64) for d in direction]
    if [a.shape for a in arrays] != shapes:
        raise ValueError(
            f"`{name}` must hold one array per trainable variable with shapes "
            f"{shapes}; received shapes {[a.shape for a in arrays]}."
        )
    return arrays


def _as_weight_list(other: Any, model: keras.Model) -> list[np.ndarray]:
    if isinstance(other, keras.Model):
        other = other.get_weights()
    arrays = [np.asarray(w) for w in other]
    shapes = [tuple(w.shape) for w in model.weights]
    if [a.shape for a in arrays] != shapes:
        raise ValueError(
            "`other_weights` must be a model of the same architecture or a list like "
            f"`model.get_weights()` with shapes {shapes}; received shapes "
            f"{[a.shape for a in arrays]}."
        )
    return arrays


def loss_along_line(
    model: keras.Model,
    data: Any,
    direction: Sequence[Any] | None = None,
    alphas: Any = None,
    *,
    other_weights: Any = None,
    loss: Any = None,
    training: bool = False,
    batch_size: int = 256,
    verbose: int | str = "auto",
) -> LossLine:
    """The loss along a line through the model's weights θ.

    Either along a direction, f(θ + α d), or, with `other_weights`, along the
    interpolation between two solutions, f((1 − α) θ_A + α θ_B) (Keskar et al. 2017,
    Figure 3; Goodfellow et al. 2015), with θ_A the model's weights and θ_B the other
    ones. The interpolation runs over *all* of `model.weights` (batch-normalization
    statistics included), so α = 1 is exactly the other model.

    Args:
      model: a built Keras model, compiled with a loss (or pass `loss=`).
      data: a `tf.data.Dataset` of batches or a tuple of arrays.
      direction: one array per trainable variable (see `random_direction`).
      alphas: the non-empty positions α.
      other_weights: a model of the same architecture or its `get_weights()`; give
        this or `direction`, not both.
      loss: replaces the compiled loss.
      training: forward pass flag (default `False`: dropout off, batch
        normalization on its moving statistics).
      batch_size: batch size for array data.
      verbose: as in `Model.fit`: "auto" (default) or 1 a `keras.utils.Progbar`
        over the line's points, 2 one line when done, 0 silent.

    Returns:
      `LossLine(alphas, losses)`.

    Example:
      >>> line = loss_along_line(small_batch_model, (x, y),
      ...                        other_weights=large_batch_model,
      ...                        alphas=np.linspace(-1, 2, 31))
    """
    alphas = _check_alphas("alphas", [] if alphas is None else alphas)
    if (direction is None) == (other_weights is None):
        raise ValueError(
            "give exactly one of `direction` and `other_weights`; received "
            f"direction={'None' if direction is None else 'arrays'}, other_weights="
            f"{'None' if other_weights is None else 'given'}."
        )
    verbose = check_verbose(verbose)
    operator = HessianOperator(
        model, data, loss=loss, training=training, batch_size=batch_size
    )
    losses = []
    progress = progress_bar(alphas.size, verbose, "point")
    with preserved_weights(model):
        if direction is not None:
            d = _check_direction("direction", direction, model)
            origin = operator.get_weights()
            for alpha in alphas:
                operator.set_weights([w + alpha * e for w, e in zip(origin, d)])
                losses.append(operator.loss())
                progress.update(len(losses))
        else:
            end = _as_weight_list(other_weights, model)
            start = model.get_weights()
            for alpha in alphas:
                model.set_weights(
                    [
                        ((1.0 - alpha) * a.astype(np.float64) + alpha * b).astype(
                            a.dtype
                        )
                        if np.issubdtype(a.dtype, np.floating)
                        else a
                        for a, b in zip(start, end)
                    ]
                )
                losses.append(operator.loss())
                progress.update(len(losses))
    return LossLine(alphas=alphas, losses=np.array(losses))


def loss_surface(
    model: keras.Model,
    data: Any,
    directions: tuple[Sequence[Any], Sequence[Any]],
    grid: Any,
    *,
    loss: Any = None,
    training: bool = False,
    batch_size: int = 256,
    verbose: int | str = "auto",
) -> LossSurface:
    """The loss on the plane f(θ + α d1 + β d2) spanned by two directions.

    Args:
      model: a built Keras model, compiled with a loss (or pass `loss=`).
      data: a `tf.data.Dataset` of batches or a tuple of arrays.
      directions: `(d1, d2)`, each one array per trainable variable.
      grid: the values used for both α and β, or a pair `(alphas, betas)`.
      loss: replaces the compiled loss.
      training: forward pass flag (default `False`).
      batch_size: batch size for array data.
      verbose: as in `Model.fit`: "auto" (default) or 1 a `keras.utils.Progbar`
        over the grid's points, 2 one line when done, 0 silent.

    Returns:
      `LossSurface(alphas, betas, losses)` with `losses[i, j]` at (alphas[i],
      betas[j]).

    Example:
      >>> surface = loss_surface(model, (x, y),
      ...     (random_direction(model, seed=1), random_direction(model, seed=2)),
      ...     grid=np.linspace(-1, 1, 21))

    References:
      Li et al., "Visualizing the loss landscape of neural nets", NeurIPS 2018.
    """
    if len(directions) != 2:
        raise ValueError(
            f"`directions` must be a pair (d1, d2); received {len(directions)} items."
        )
    if isinstance(grid, (tuple, list)) and len(grid) == 2 and np.ndim(grid[0]) == 1:
        alphas = _check_alphas("grid", grid[0])
        betas = _check_alphas("grid", grid[1])
    else:
        alphas = betas = _check_alphas("grid", grid)
    verbose = check_verbose(verbose)
    operator = HessianOperator(
        model, data, loss=loss, training=training, batch_size=batch_size
    )
    d1 = _check_direction("directions[0]", directions[0], model)
    d2 = _check_direction("directions[1]", directions[1], model)
    losses = np.empty((alphas.size, betas.size))
    progress = progress_bar(losses.size, verbose, "point")
    with preserved_weights(model):
        origin = operator.get_weights()
        for i, alpha in enumerate(alphas):
            for j, beta in enumerate(betas):
                operator.set_weights(
                    [w + alpha * a + beta * b for w, a, b in zip(origin, d1, d2)]
                )
                losses[i, j] = operator.loss()
                progress.update(i * betas.size + j + 1)
    return LossSurface(alphas=alphas, betas=betas, losses=losses)
