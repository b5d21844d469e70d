"""Smith's learning-rate range test."""

from __future__ import annotations

import itertools
import os
from typing import Any

import keras
import numpy as np

from keras_optnotes.checks import check_integer, check_positive
from keras_optnotes.diagnostics._backend.common import restored_variables
from keras_optnotes.diagnostics._data import Batches
from keras_optnotes.diagnostics._progress import check_verbose, progress_bar
from keras_optnotes.diagnostics.operators import check_model, preserved_weights
from keras_optnotes.diagnostics.results import LearningRateRange


def _suggest(learning_rates: np.ndarray, smoothed: np.ndarray) -> float:
    """The learning rate of steepest descent of the smoothed loss in log η, taken
    before the smoothed minimum (past it the curve is already turning up)."""
    if not np.any(np.isfinite(smoothed)):
        return float("nan")
    stop = int(np.nanargmin(smoothed)) + 1
    if stop < 3:
        return float(learning_rates[max(stop - 1, 0)])
    slopes = np.gradient(smoothed[:stop], np.log(learning_rates[:stop]))
    return float(learning_rates[int(np.argmin(slopes))])


def lr_range_test(
    model: keras.Model,
    data: Any,
    start: float = 1e-7,
    end: float = 10.0,
    steps: int = 100,
    smoothing: float = 0.05,
    divergence: float = 5.0,
    *,
    batch_size: int = 32,
    plot_path: str | os.PathLike | None = None,
    verbose: int | str = "auto",
) -> LearningRateRange:
    """Train with an exponentially rising learning rate and record the loss (Smith).

    Step i ∈ {0, …, steps−1} uses η_i = start · (end/start)^{i/(steps−1)} and one batch
    of `data` (cycled when it runs out), through `model.train_on_batch` with the
    model's compiled optimizer — so it trains in training mode, like `fit`. The
    loss of each step's batch is smoothed by a bias-corrected exponential moving
    average, s_i = a_i / (1 − (1−smoothing)^{i+1}) with
    a_i = (1 − smoothing) a_{i−1} + smoothing · loss_i. The run stops early when
    s_i > divergence · min_{j≤i} s_j, the loss is not finite, or a weight is not
    (a non-finite gradient); each of these sets `diverged=True`.

    The suggested learning rate is where the smoothed loss falls fastest against
    log η before its minimum (the "steepest" rule of fastai); `nan` when no smoothed
    loss is finite. Afterwards every
    weight of the model and every variable of the optimizer (its iteration count,
    learning rate and slots) is restored exactly.

    Args:
      model: a built model compiled with an optimizer whose learning rate is a number
        (not a schedule) and a loss.
      data: a `tf.data.Dataset` of batches or a tuple of arrays.
      start: the first learning rate (> 0).
      end: the last learning rate (> start).
      steps: the number of steps (≥ 2).
      smoothing: weight of the newest loss in the moving average, in (0, 1].
      divergence: ratio of smoothed loss to its minimum that stops the run (> 1).
      batch_size: batch size for array data.
      plot_path: if given, the curve is written there as a PNG (needs matplotlib);
        for the figure itself, call `plot_lr_range(result)`.
      verbose: as in `Model.fit`: "auto" (default) or 1 a `keras.utils.Progbar`
        over the steps with the learning rate and the smoothed loss, 2 one line
        when done, 0 silent.

    Returns:
      `LearningRateRange` with the curve and the suggestion.

    Example:
      >>> result = lr_range_test(model, (x, y), steps=200)
      >>> result.suggested_learning_rate

    References:
      Smith, "Cyclical learning rates for training neural networks", WACV 2017
      (arXiv:1506.01186, 2015).
    """
    check_model(model)
    start = check_positive("start", start)
    end = check_positive("end", end)
    if end <= start:
        raise ValueError(
            f"`end` must be greater than `start` ({start}); received {end}."
        )
    steps = check_integer("steps", steps, 2)
    smoothing = check_positive("smoothing", smoothing)
    if smoothing > 1:
        raise ValueError(f"`smoothing` must be in (0, 1]; received {smoothing}.")
    divergence = check_positive("divergence", divergence)
    if divergence <= 1:
        raise ValueError(f"`divergence` must be greater than 1; received {divergence}.")
    optimizer = getattr(model, "optimizer", None)
    if not getattr(model, "compiled", False) or optimizer is None:
        raise ValueError(
            f"`model` ({model.name!r}) must be compiled with an optimizer and a loss."
        )
    if isinstance(
        optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule
    ) or (
        callable(optimizer._learning_rate)
        and not isinstance(optimizer._learning_rate, keras.Variable)
    ):
        raise ValueError(
            "`model.optimizer` has a learning-rate schedule; the range test needs an "
            "optimizer built with a number as `learning_rate`."
        )
    verbose = check_verbose(verbose)
    batches = Batches(data, batch_size)
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    rates = start * (end / start) ** (np.arange(steps) / (steps - 1))
    losses, smoothed = [], []
    average, best, diverged = 0.0, np.inf, False
    beta = 1.0 - smoothing
    progress = progress_bar(steps, verbose, "step", ["learning_rate", "smoothed_loss"])
    # Every variable of the model (weights, moving statistics, dropout seeds) and of
    # the optimizer (iteration count, learning rate, slots) is put back on exit.
    with preserved_weights(model), restored_variables(optimizer.variables):
        cycle = itertools.chain.from_iterable(itertools.repeat(batches))
        for index, (rate, batch) in enumerate(zip(rates, cycle)):
            optimizer.learning_rate = float(rate)
            x, y, sample_weight, _ = batch
            logs = model.train_on_batch(x, y, sample_weight, return_dict=True)
            value = float(logs["loss"])
            losses.append(value)
            average = beta * average + smoothing * value
            current = average / (1.0 - beta ** (index + 1))
            smoothed.append(current)
            progress.update(
                index + 1,
                [("learning_rate", float(rate)), ("smoothed_loss", current)],
                finalize=False,
            )
            best = min(best, current)
            finite = np.isfinite(current) and all(
                np.all(np.isfinite(keras.ops.convert_to_numpy(v)))
                for v in model.trainable_variables
            )
            if not finite or current > divergence * best:
                diverged = True
                break
    taken = len(losses)
    progress.update(taken, finalize=True)
    result = LearningRateRange(
        learning_rates=rates[:taken],
        losses=np.array(losses),
        smoothed_losses=np.array(smoothed),
        suggested_learning_rate=_suggest(rates[:taken], np.array(smoothed)),
        diverged=diverged,
        steps=taken,
    )
    if plot_path is not None:
        from keras_optnotes.diagnostics.plots import plot_lr_range

        plot_lr_range(result, plot_path)
    return result
