"""McCandlish et al.'s gradient noise scale, measured during `fit`."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np

from keras_optnotes.callbacks._logs import LogProducer
from keras_optnotes.checks import check_bool, check_integer
from keras_optnotes.diagnostics._data import (
    batch_size_of,
    check_data,
    is_dataset,
    split_element,
    to_tensor,
)
from keras_optnotes.diagnostics.operators import check_model, traced_functions


class _BigBatches:
    """An endless stream of batches of exactly `size` examples drawn from `data`.

    Arrays are sampled without replacement with a seeded NumPy generator; a
    `tf.data.Dataset` of batches is re-cut into batches of `size` and cycled.
    """

    def __init__(self, data: Any, size: int, seed: int):
        check_data(data)
        self._size = size
        if is_dataset(data):
            self._arrays = None
            rebatched = data.unbatch().batch(size, drop_remainder=True)
            if next(iter(rebatched), None) is None:
                raise ValueError(
                    f"`data` yields fewer examples than `big_batch_size` ({size}); it "
                    "must hold at least one big batch."
                )
            self._iterator = iter(rebatched.repeat())
        else:
            self._arrays = split_element(
                tuple(keras.tree.map_structure(np.asarray, tuple(data)))
            )
            total = batch_size_of(self._arrays[0])
            if total < size:
                raise ValueError(
                    f"`data` holds {total} examples, fewer than `big_batch_size` "
                    f"({size}); it must hold at least one big batch."
                )
            self._total = total
            self._rng = np.random.default_rng(seed)

    def next(self):
        """`(x, y, sample_weight)` of the next big batch (`None` for missing parts)."""
        if self._arrays is None:
            return split_element(next(self._iterator))
        index = np.sort(self._rng.choice(self._total, self._size, replace=False))
        return tuple(
            None if part is None else keras.tree.map_structure(lambda a: a[index], part)
            for part in self._arrays
        )


def noise_scale_estimates(
    small_gradients: Any, small_batch_size: int, big_batch_size: int
) -> tuple[float, float]:
    """McCandlish et al.'s unbiased |G|² and tr(Σ) from one big batch.

    With the B_big/B_small gradients g_j of the small batches that make up the big
    batch, |G_small|² = mean_j |g_j|² and |G_big|² = |mean_j g_j|² (the big-batch
    gradient's squared norm):

        |G|²  ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
        tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big).

    Args:
      small_gradients: shape (B_big/B_small, n), one flat gradient per small batch.
      small_batch_size: B_small.
      big_batch_size: B_big.

    Returns:
      `(squared_norm, trace)`, the estimates of |G|² and tr(Σ).
    """
    gradients = np.asarray(small_gradients, np.float64)
    small_sq = float(np.mean(np.sum(gradients**2, axis=1)))
    big_sq = float(np.sum(np.mean(gradients, axis=0) ** 2))
    b_small, b_big = small_batch_size, big_batch_size
    squared_norm = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return squared_norm, trace


class GradientNoiseScale(LogProducer):
    """Log the simple gradient noise scale B_simple = tr(Σ)/|G|² during training.

    G is the true gradient of the loss and Σ the covariance of per-example gradients.
    Every `every_n_steps` training steps, a batch of B_big examples is drawn from
    `data` and cut into B_big/B_small small batches; with |G_small|² the mean squared
    norm of the small-batch gradients and |G_big|² the squared norm of their mean
    (the big-batch gradient), the unbiased estimates are

        |G|²  ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
        tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big).

    Each is smoothed by an exponential moving average with decay `ema` and bias
    correction (divided by 1 − ema^n after n measurements), and
    B_simple = tr(Σ)_ema / |G|²_ema (negative while |G|² is below the noise of its
    own estimate, as early in training on random labels). At the end of every epoch
    the latest values are written into the logs (and so into `history.history`) as
    `gradient_noise_scale`, `gradient_noise_trace` (tr Σ) and
    `gradient_squared_norm` (|G|²); `nan` before the first measurement. Every
    measurement is also kept in `self.measurements`.

    A Keras callback never sees the training batch, so the callback draws its own
    batches from `data` (the training set, as arrays or a dataset of batches). The
    gradients are of the compiled loss (`model.compute_loss`, plus `model.losses`)
    with `training=False` by default (dropout off), on any backend (traced once on
    TensorFlow and JAX and shared with the other diagnostics on the same model).
    The estimator itself is `noise_scale_estimates`.

    The callback runs before the other callbacks of `fit` whatever its place in
    the list (it moves itself to the front when `fit` sets it up, and warns once
    where it cannot), so `TensorBoard`, `CSVLogger` or `ModelCheckpoint` see its
    values. Every argument is checked at
    construction.

    Args:
      data: the training data: a tuple of arrays `(x, y[, sample_weight])`, sampled
        without replacement, or a `tf.data.Dataset` of batches, re-cut and cycled.
      small_batch_size: B_small ≥ 1.
      big_batch_size: B_big, a multiple of B_small greater than it; default
        8 · B_small.
      every_n_steps: measure every this many training steps (the first step too).
      ema: decay of the moving averages, in [0, 1).
      seed: seed of the sampling (an integer ≥ 0).
      training: forward pass flag for the gradients (True or False).

    Example:
      >>> noise = GradientNoiseScale((x_train, y_train), small_batch_size=16)
      >>> history = model.fit(x_train, y_train, callbacks=[noise])
      >>> history.history["gradient_noise_scale"]

    References:
      McCandlish, Kaplan, Amodei, OpenAI Dota Team, "An empirical model of
      large-batch training", arXiv:1812.06162, 2018 (Appendix A.1).
    """

    def __init__(
        self,
        data: Any,
        small_batch_size: int,
        big_batch_size: int | None = None,
        every_n_steps: int = 10,
        ema: float = 0.99,
        seed: int = 0,
        training: bool = False,
    ):
        super().__init__()
        self.small_batch_size = check_integer("small_batch_size", small_batch_size, 1)
        if big_batch_size is None:
            big_batch_size = 8 * self.small_batch_size
        self.big_batch_size = check_integer(
            "big_batch_size", big_batch_size, 2 * self.small_batch_size
        )
        if self.big_batch_size % self.small_batch_size:
            raise ValueError(
                f"`big_batch_size` must be a multiple of `small_batch_size` "
                f"({self.small_batch_size}); received {self.big_batch_size}."
            )
        self.every_n_steps = check_integer("every_n_steps", every_n_steps, 1)
        if (
            isinstance(ema, bool)
            or not isinstance(ema, (int, float))
            or not (0.0 <= ema < 1.0)
        ):
            raise ValueError(f"`ema` must be a number in [0, 1); received {ema!r}.")
        self.ema = float(ema)
        self.seed = check_integer("seed", seed, 0)
        self.training = check_bool("training", training)
        self._batches = _BigBatches(data, self.big_batch_size, self.seed)
        self.measurements: list[dict[str, float]] = []
        self._functions = None
        self.reset()

    def reset(self) -> None:
        """Forget the moving averages (done at the start of every `fit`)."""
        self._step = 0
        self._count = 0
        self._g2 = 0.0
        self._trace = 0.0
        self._latest = dict.fromkeys(
            ("gradient_noise_scale", "gradient_noise_trace", "gradient_squared_norm"),
            math.nan,
        )

    # --- the measurement -----------------------------------------------------------

    def _cut(self, structure, i):
        if structure is None:
            return None
        small = self.small_batch_size
        return to_tensor(
            keras.tree.map_structure(
                lambda t: t[i * small : (i + 1) * small], structure
            )
        )

    def measure(self) -> dict[str, float]:
        """Draw one big batch, update the moving averages and return the estimates."""
        if self._functions is None:
            check_model(self.model)
            self._functions, _ = traced_functions(self.model, None, self.training, None)
        x, y, sample_weight = self._batches.next()
        chunks = self.big_batch_size // self.small_batch_size
        gradients = [
            self._functions.loss_and_gradient(
                self._cut(x, i), self._cut(y, i), self._cut(sample_weight, i)
            )[1]
            for i in range(chunks)
        ]
        g2, trace = noise_scale_estimates(
            gradients, self.small_batch_size, self.big_batch_size
        )
        self._count += 1
        self._g2 = self.ema * self._g2 + (1.0 - self.ema) * g2
        self._trace = self.ema * self._trace + (1.0 - self.ema) * trace
        correction = 1.0 - self.ema**self._count
        g2_mean, trace_mean = self._g2 / correction, self._trace / correction
        record = {
            "gradient_noise_scale": trace_mean / g2_mean if g2_mean else math.nan,
            "gradient_noise_trace": trace_mean,
            "gradient_squared_norm": g2_mean,
        }
        self.measurements.append(record)
        return record

    # --- callback hooks ------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.reset()

    def on_train_batch_end(self, batch, logs=None):
        if self._step % self.every_n_steps == 0:
            self._latest = self.measure()
        self._step += 1

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update(self._latest)
