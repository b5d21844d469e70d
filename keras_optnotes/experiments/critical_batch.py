"""How large a batch? Steps to a target loss against the batch size, and the noise scale.

McCandlish et al. (2018) model the training steps S and the training examples E = B·S
that a batch size B needs to reach a given loss as

    S = S_min (1 + B_crit / B),        E = E_min (1 + B / B_crit),

equivalently (S / S_min − 1)(E / E_min − 1) = 1, with the critical batch size
B_crit = E_min / S_min: below it, doubling the batch nearly halves the steps (perfect
scaling); above it, the steps hardly fall while the examples double. They predict
B_crit by the simple gradient noise scale B_simple = tr(Σ) / |G|² (G the true gradient,
Σ the per-example gradient covariance) measured at the same point of training.
Shallue et al. (2019) measure the left-hand side the same way: for each batch size,
the learning rate that reaches the target in the fewest steps.

`run_critical_batch` measures both on one network and dataset:

1. **Steps to target.** A run trains with plain gradient descent (θ ← θ − η g) on
   batches of exactly B training examples, each drawn independently and uniformly
   without replacement within the batch (so consecutive batches are independent, as
   the model assumes). After every step the cross-entropy of the whole training set is
   computed in inference mode, −(1/N) Σᵢ log p_{yᵢ}(xᵢ) with p clipped below at 1e-7
   (Keras' clipping); the run's steps to target are the first step count at which it
   is ≤ `target_loss`. A run that has not reached it after `max_steps` steps, or whose
   loss is not finite, has no step count (`None`).
2. **Learning rate per batch size**, by the fewest steps, as Shallue et al. do: every
   value of one grid is run on the *tuning* seeds (`protocol.make_seeds`), and the
   value with the lowest mean steps to target (all tuning seeds reaching it) is
   chosen. A run stops as soon as
   its value can no longer win (its steps so far already exceed
   n · best mean − the other seeds' steps), which changes nothing in the choice.
3. **Report** runs at the chosen rate on fresh seeds (different initial weights and
   batches): steps and examples to target per seed, mean and 95 % t-interval.
4. **Fit** of S = S_min (1 + B_crit / B) by least squares in log space over every
   report run (`fit_critical_batch`); since log E = log B + log S, the same residuals
   fit E = E_min (1 + B / B_crit) with E_min = S_min · B_crit. One fit per seed too,
   for an interval on B_crit.
5. **Gradient noise scale** at the point each report run reached the target, by
   `keras_optnotes.callbacks.GradientNoiseScale`: several independent big-batch
   measurements of |G|² and tr(Σ) at the run's final weights, averaged and corrected
   for drawing from a finite training set (`finite_population_estimates`); over the
   runs, B_simple = mean tr(Σ) / mean |G|².

Example:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.experiments.critical_batch import run_critical_batch
>>> result = run_critical_batch(data.load("digits"), batch_sizes=(8, 64, 512))
>>> result.fit.critical_batch_size, result.noise_scale().mean

References:
    McCandlish, Kaplan, Amodei, OpenAI Dota Team, "An empirical model of large-batch
    training", arXiv:1812.06162, 2018.
    Shallue, Lee, Antognini, Sohl-Dickstein, Frostig, Dahl, "Measuring the effects of
    data parallelism on neural network training", JMLR 20(112), 2019.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_optnotes.checks import check_integer, check_positive
from keras_optnotes.experiments._common import Progress, op_determinism
from keras_optnotes.experiments.protocol import Interval, make_seeds, mean_interval

if TYPE_CHECKING:
    from keras_optnotes.data import Split

DEFAULT_BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512)
# 0.05 to 1.6 in factors of √2, around the fastest rates a first trial found for plain
# gradient descent on the digits MLP (0.2 at batch 8 to 0.8 at batch 512).
DEFAULT_LEARNING_RATES = tuple(round(0.05 * 2 ** (k / 2), 6) for k in range(11))
DEFAULT_TARGET_LOSS = 0.03
DEFAULT_MAX_STEPS = 8000
DEFAULT_SEEDS = 8
DEFAULT_TUNING_SEEDS = 2
DEFAULT_NOISE_SMALL_BATCH = 16
DEFAULT_NOISE_BIG_BATCH = 256
DEFAULT_NOISE_MEASUREMENTS = 16
# Keras' cross-entropy clips probabilities to [1e-7, 1 - 1e-7].
_PROBABILITY_FLOOR = 1e-7

TABLE_COLUMNS = (
    "batch size",
    "learning rate (tuned)",
    "steps to target, mean [95% CI]",
    "examples to target, mean",
    "fitted steps",
    "B_simple at target (pooled)",
    "seeds reaching target",
)


def _interval(values: Sequence[float]) -> Interval | None:
    """`protocol.mean_interval` of `values`, `None` when there are none."""
    return mean_interval(values) if len(values) else None


# --- the fit -------------------------------------------------------------------------


@dataclass(frozen=True)
class CriticalBatchFit:
    """McCandlish et al.'s S = S_min (1 + B_crit / B) fitted to steps to target.

    Attributes:
        min_steps: S_min, the steps an infinitely large batch would need.
        min_examples: E_min = S_min · B_crit, the examples a tiny batch would need.
        critical_batch_size: B_crit = E_min / S_min.
        rms_log_residual: root-mean-square of log S − log S_fit over the points.
        points: number of (B, S) points fitted.
    """

    min_steps: float
    min_examples: float
    critical_batch_size: float
    rms_log_residual: float
    points: int

    def steps(self, batch_size: Any) -> np.ndarray:
        """The fitted S_min (1 + B_crit / B) at `batch_size` (scalar or array)."""
        b = np.asarray(batch_size, np.float64)
        return self.min_steps * (1.0 + self.critical_batch_size / b)

    def examples(self, batch_size: Any) -> np.ndarray:
        """The fitted E_min (1 + B / B_crit) at `batch_size` (scalar or array)."""
        b = np.asarray(batch_size, np.float64)
        return self.min_examples * (1.0 + b / self.critical_batch_size)

    def to_json(self) -> dict:
        return {
            "S_min": self.min_steps,
            "E_min": self.min_examples,
            "B_crit": self.critical_batch_size,
            "rms_log_residual": self.rms_log_residual,
            "points": self.points,
        }


def _log_residuals(params: np.ndarray, batch: np.ndarray, log_steps: np.ndarray):
    log_min_steps, log_critical = params
    return log_steps - log_min_steps - np.log1p(np.exp(log_critical) / batch)


def fit_critical_batch(
    batch_sizes: Sequence[float], steps: Sequence[float]
) -> CriticalBatchFit:
    """Least-squares fit of S = S_min (1 + B_crit / B) in log space.

    Minimizes Σᵢ (log Sᵢ − log S_min − log(1 + B_crit / Bᵢ))² over log S_min and
    log B_crit (so every batch size weighs by its relative error, and both parameters
    stay positive). Repeated batch sizes (one point per seed) are allowed. The start
    is the best of a log-spaced scan of B_crit from min(B)/10⁴ to max(B)·10⁴ with
    S_min profiled out in closed form (the mean of log Sᵢ − log(1 + B_crit/Bᵢ));
    `scipy.optimize.least_squares` then polishes it.

    Args:
        batch_sizes: Bᵢ > 0, at least two distinct values.
        steps: Sᵢ > 0, one per batch size.

    Returns:
        A `CriticalBatchFit`; E_min = S_min · B_crit.

    Raises:
        ValueError: mismatched lengths, values ≤ 0 or not finite, or fewer than two
            distinct batch sizes.

    Example:
        >>> fit = fit_critical_batch([8, 64, 512], [900.0, 200.0, 110.0])
        >>> fit.critical_batch_size, fit.steps(128)
    """
    from scipy.optimize import least_squares

    batch = np.asarray(batch_sizes, np.float64).reshape(-1)
    values = np.asarray(steps, np.float64).reshape(-1)
    if batch.shape != values.shape:
        raise ValueError(
            f"`batch_sizes` and `steps` must have the same length; received "
            f"{batch.size} and {values.size}."
        )
    for name, array in (("batch_sizes", batch), ("steps", values)):
        if not np.all(np.isfinite(array)) or np.any(array <= 0):
            raise ValueError(
                f"`{name}` must hold finite numbers > 0; received {array.tolist()}."
            )
    if len(np.unique(batch)) < 2:
        raise ValueError(
            "`batch_sizes` must hold at least two distinct values to fit S_min and "
            f"B_crit; received {batch.tolist()}."
        )
    log_steps = np.log(values)
    scan = np.linspace(
        math.log(batch.min()) - 4 * math.log(10),
        math.log(batch.max()) + 4 * math.log(10),
        801,
    )
    best = None
    for log_critical in scan:
        log_min = float(np.mean(log_steps - np.log1p(np.exp(log_critical) / batch)))
        cost = float(
            np.sum(
                _log_residuals(np.array([log_min, log_critical]), batch, log_steps) ** 2
            )
        )
        if best is None or cost < best[0]:
            best = (cost, log_min, log_critical)
    solution = least_squares(
        _log_residuals,
        np.array(best[1:]),
        args=(batch, log_steps),
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        max_nfev=10_000,
    )
    log_min, log_critical = solution.x
    residuals = _log_residuals(solution.x, batch, log_steps)
    min_steps, critical = math.exp(log_min), math.exp(log_critical)
    return CriticalBatchFit(
        min_steps=min_steps,
        min_examples=min_steps * critical,
        critical_batch_size=critical,
        rms_log_residual=float(np.sqrt(np.mean(residuals**2))),
        points=int(batch.size),
    )


# --- one training run ----------------------------------------------------------------


def training_cross_entropy(probabilities: Any, labels: Any) -> float:
    """−(1/N) Σᵢ log p_{yᵢ}, in float64, with p clipped below at 1e-7 (as Keras)."""
    p = np.asarray(probabilities, np.float64)
    y = np.asarray(labels).reshape(-1)
    picked = np.maximum(p[np.arange(len(y)), y], _PROBABILITY_FLOOR)
    return float(-np.mean(np.log(picked)))


@dataclass(frozen=True)
class TargetRun:
    """One run of gradient descent until the training loss reaches the target.

    Attributes:
        batch_size: B.
        learning_rate: η.
        seed: seed of the initial weights and of the batches.
        steps: steps to target, or `None` if it was not reached.
        outcome: "reached", "budget" (`max_steps` steps without reaching it),
            "diverged" (loss not finite) or "pruned" (stopped because it could no
            longer be the fastest value of the grid).
        final_loss: the training-set cross-entropy at the last step run.
        noise: the gradient noise measured at the target (`NoiseMeasurement`), or
            `None` when not measured.
    """

    batch_size: int
    learning_rate: float
    seed: int
    steps: int | None
    outcome: str
    final_loss: float
    noise: NoiseMeasurement | None = None

    @property
    def examples(self) -> int | None:
        """Examples to target, B · S (`None` if not reached)."""
        return None if self.steps is None else self.steps * self.batch_size


@dataclass(frozen=True)
class NoiseMeasurement:
    """The simple noise scale at one set of weights.

    Attributes:
        squared_norm: |G|², from the mean of the measurements' estimates.
        trace: tr(Σ), from the mean of the measurements' estimates.
        measurements: how many independent big batches were drawn.
    """

    squared_norm: float
    trace: float
    measurements: int

    @property
    def noise_scale(self) -> float:
        """B_simple = tr(Σ) / |G|²."""
        return self.trace / self.squared_norm if self.squared_norm else math.nan


class _Trainer:
    """One model reused for every run: weights reset per seed, η set per run.

    Plain gradient descent keeps no state, so resetting the weights and the learning
    rate gives exactly a fresh run while the compiled train step is traced once per
    batch shape.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, num_classes: int, width: int):
        import keras

        from keras_optnotes.models import build_classifier
        from keras_optnotes.optimizers import GradientDescent

        self.x, self.y = x, y
        self.num_classes, self.width = num_classes, width
        self.model = build_classifier(x.shape[1:], num_classes, seed=0, width=width)
        self.optimizer = GradientDescent(0.1)
        self.model.compile(
            optimizer=self.optimizer, loss="sparse_categorical_crossentropy"
        )
        self._initial: dict[int, list] = {}
        self._keras = keras

    def initial_weights(self, seed: int) -> list:
        from keras_optnotes.models import build_classifier

        if seed not in self._initial:
            self._initial[seed] = build_classifier(
                self.x.shape[1:], self.num_classes, seed=seed, width=self.width
            ).get_weights()
        return self._initial[seed]

    def loss(self, model=None) -> float:
        """The training-set cross-entropy at the current weights. Inside `fit`, pass
        the callback's `self.model`: on JAX, reading it syncs the trained weights
        into the model (they live in the trainer's state until then)."""
        model = self.model if model is None else model
        return training_cross_entropy(model.predict_on_batch(self.x), self.y)

    def run(
        self, batch_size: int, learning_rate: float, seed: int, target: float, cap: int
    ) -> tuple[int | None, str, float]:
        """Trains until the target, `cap` steps, or a non-finite loss."""
        self.model.set_weights(self.initial_weights(seed))
        self.optimizer.learning_rate = learning_rate
        self.optimizer.iterations.assign(0)
        loss = self.loss()
        if loss <= target:
            return 0, "reached", loss
        if cap < 1:
            return None, "pruned", loss
        watch = _TargetWatch(self, target)
        self.model.fit(
            _IndependentBatches(self.x, self.y, batch_size, seed, cap),
            epochs=1,
            verbose=0,
            shuffle=False,  # Keras would shuffle the order of a PyDataset's batches
            callbacks=[watch],
        )
        return watch.result(cap)


def _independent_batches_class():
    import keras

    class IndependentBatches(keras.utils.PyDataset):
        """`steps` batches of `batch_size` examples, each drawn independently.

        Batch i is a uniform sample without replacement from the N examples, drawn
        with `numpy.random.default_rng([seed, batch_size, i])`: the same seed gives
        the same batches in any process, whatever ran before.
        """

        def __init__(self, x, y, batch_size: int, seed: int, steps: int):
            super().__init__()
            self.x, self.y = x, y
            self.batch_size, self.seed, self.steps = batch_size, seed, steps

        def __len__(self) -> int:
            return self.steps

        def __getitem__(self, index: int):
            rng = np.random.default_rng([self.seed, self.batch_size, index])
            chosen = rng.choice(len(self.x), self.batch_size, replace=False)
            return self.x[chosen], self.y[chosen]

    return IndependentBatches


def _IndependentBatches(x, y, batch_size, seed, steps):  # noqa: N802 - a class, lazily
    return _independent_batches_class()(x, y, batch_size, seed, steps)


def _target_watch_class():
    import keras

    class TargetWatch(keras.callbacks.Callback):
        """After every step: the training-set loss; stops at the target or NaN."""

        def __init__(self, trainer: _Trainer, target: float):
            super().__init__()
            self.trainer, self.target = trainer, target
            self.steps, self.reached, self.diverged = 0, False, False
            self.last_loss = math.nan

        def on_train_batch_end(self, batch, logs=None):
            self.steps += 1
            self.last_loss = self.trainer.loss(self.model)
            if self.last_loss <= self.target:
                self.reached = True
            elif not math.isfinite(self.last_loss):
                self.diverged = True
            if self.reached or self.diverged:
                self.model.stop_training = True

        def result(self, cap: int) -> tuple[int | None, str, float]:
            if self.reached:
                return self.steps, "reached", self.last_loss
            return None, "diverged" if self.diverged else "stopped", self.last_loss

    return TargetWatch


def _TargetWatch(trainer, target):  # noqa: N802 - a class, lazily
    return _target_watch_class()(trainer, target)


def finite_population_estimates(
    squared_norm: float,
    trace: float,
    small_batch_size: int,
    big_batch_size: int,
    population: int,
) -> tuple[float, float]:
    """`GradientNoiseScale`'s |G|² and tr(Σ), corrected for a finite training set.

    The callback's estimator assumes independent examples: E|G_B|² = |G|² + tr(Σ)/B.
    Batches drawn without replacement from N examples have E|G_B|² = |G|² +
    a_B tr(Σ) with a_B = (N − B) / ((N − 1) B) (Σ the covariance of the N per-example
    gradients, divided by N). The callback's two estimates are the exact solution of
    the independent-example equations, so |G_B|² = |G|²_iid + tr(Σ)_iid / B for both
    batch sizes; this re-solves the same two equations with a_B:

        tr(Σ) = (|G_small|² − |G_big|²) / (a_small − a_big),
        |G|²  = |G_big|² − a_big tr(Σ).

    Args:
        squared_norm: the callback's |G|² estimate (or a mean of them).
        trace: the callback's tr(Σ) estimate (or a mean of them).
        small_batch_size: B_small.
        big_batch_size: B_big.
        population: N, the examples the batches are drawn from (≥ B_big).

    Returns:
        `(squared_norm, trace)`, corrected.
    """
    small, big, n = small_batch_size, big_batch_size, population
    small_sq = squared_norm + trace / small
    big_sq = squared_norm + trace / big

    def a(b):
        return (n - b) / ((n - 1) * b)

    corrected_trace = (small_sq - big_sq) / (a(small) - a(big))
    return big_sq - a(big) * corrected_trace, corrected_trace


def _measure_noise(
    trainer: _Trainer, seed: int, small: int, big: int, measurements: int
) -> NoiseMeasurement:
    """B_simple's parts at the trainer's current weights, by `GradientNoiseScale`.

    With `ema=0` every record of the callback is one raw big-batch estimate; their
    means are taken here and corrected for drawing from a finite training set
    (`finite_population_estimates`), so B_simple = tr(Σ) / |G|² of the means.
    """
    from keras_optnotes.callbacks import GradientNoiseScale

    noise = GradientNoiseScale(
        (trainer.x, trainer.y),
        small_batch_size=small,
        big_batch_size=big,
        ema=0.0,
        seed=seed,
    )
    noise.set_model(trainer.model)
    for _ in range(measurements):
        noise.measure()
    squared_norm, trace = finite_population_estimates(
        float(np.mean([m["gradient_squared_norm"] for m in noise.measurements])),
        float(np.mean([m["gradient_noise_trace"] for m in noise.measurements])),
        small,
        big,
        len(trainer.x),
    )
    return NoiseMeasurement(
        squared_norm=squared_norm, trace=trace, measurements=measurements
    )


# --- the experiment ------------------------------------------------------------------


@dataclass(frozen=True)
class BatchSizeResult:
    """One batch size: its tuning and its report runs.

    Attributes:
        batch_size: B.
        learning_rate: the grid value with the fewest mean steps on the tuning seeds
            (`None` if no value reached the target on every tuning seed).
        tuning: the tuning runs, every grid value × tuning seed (pruned ones too).
        runs: the report runs at `learning_rate`, one per report seed.
    """

    batch_size: int
    learning_rate: float | None
    tuning: tuple[TargetRun, ...]
    runs: tuple[TargetRun, ...]

    @property
    def steps(self) -> list[int | None]:
        """Steps to target, one per report seed (`None` where not reached)."""
        return [run.steps for run in self.runs]

    def reached_steps(self) -> list[int]:
        return [s for s in self.steps if s is not None]

    def tuning_means(self, grid: Sequence[float]) -> dict[float, float | None]:
        """Mean tuning steps per grid value (`None` unless every seed reached it)."""
        means = {}
        for rate in grid:
            steps = [r.steps for r in self.tuning if r.learning_rate == rate]
            means[rate] = float(np.mean(steps)) if steps and None not in steps else None
        return means

    def noise_scales(self) -> list[float]:
        """B_simple at the target of each report run that measured it."""
        return [r.noise.noise_scale for r in self.runs if r.noise is not None]

    def pooled_noise_scale(self) -> float | None:
        """mean tr(Σ) / mean |G|² over the report runs that measured it."""
        return _pooled([r.noise for r in self.runs if r.noise is not None])


@dataclass(frozen=True)
class CriticalBatchExperiment:
    """The result of `run_critical_batch`.

    Attributes:
        dataset: the split's name.
        train_samples: N, the training examples (the population batches are drawn
            from and the loss is measured on).
        target_loss: the training cross-entropy to reach.
        learning_rates: the grid.
        tuning_seeds: seeds of the tuning runs.
        seeds: seeds of the report runs (disjoint from `tuning_seeds`).
        max_steps: the step budget of a run.
        width: the MLP's hidden width.
        noise_batches: (B_small, B_big) of the noise measurements.
        noise_measurements: big batches drawn per measurement.
        batches: one `BatchSizeResult` per batch size, ascending.
        fit: the fit over every report run that reached the target.
        seed_fits: one fit per report seed (seeds with two or more batch sizes
            reaching the target).
        seconds: wall-clock time of the whole experiment.
    """

    dataset: str
    train_samples: int
    target_loss: float
    learning_rates: tuple[float, ...]
    tuning_seeds: tuple[int, ...]
    seeds: tuple[int, ...]
    max_steps: int
    width: int
    noise_batches: tuple[int, int]
    noise_measurements: int
    batches: tuple[BatchSizeResult, ...]
    fit: CriticalBatchFit | None
    seed_fits: tuple[CriticalBatchFit, ...]
    seconds: float

    def get(self, batch_size: int) -> BatchSizeResult:
        """The result of one batch size.

        Raises:
            KeyError: that batch size was not run, listing those that were.
        """
        for result in self.batches:
            if result.batch_size == batch_size:
                return result
        sizes = ", ".join(str(r.batch_size) for r in self.batches)
        raise KeyError(f"batch size {batch_size} was not run; run: {sizes}")

    def noise_scale(self) -> Interval | None:
        """B_simple pooled over every report run, mean tr(Σ) / mean |G|², with the
        95 % t-interval of the same ratio pooled seed by seed (`Interval.mean` is
        the pooled ratio; no interval unless every seed's pooled |G|² is > 0)."""
        measured = [r.noise for b in self.batches for r in b.runs if r.noise]
        pooled = _pooled(measured)
        if pooled is None:
            return None
        per_seed = [
            _pooled(
                [
                    r.noise
                    for b in self.batches
                    for r in b.runs
                    if r.seed == seed and r.noise
                ]
            )
            for seed in self.seeds
        ]
        per_seed = [v for v in per_seed if v is not None]
        if len(per_seed) < 2 or any(v <= 0 for v in per_seed):
            nan = math.nan
            return Interval(pooled, nan, nan, nan, len(per_seed))
        spread = mean_interval(per_seed)
        half = spread.high - spread.mean
        return Interval(
            pooled, pooled - half, pooled + half, spread.standard_error, len(per_seed)
        )

    def critical_batch_interval(self) -> Interval | None:
        """B_crit over the per-seed fits: mean and 95 % t-interval."""
        return _interval([f.critical_batch_size for f in self.seed_fits])

    def table_rows(self) -> list[list]:
        """One row of `TABLE_COLUMNS` per batch size."""
        rows = []
        for result in self.batches:
            steps = _interval(result.reached_steps())
            noise = result.pooled_noise_scale()
            rows.append(
                [
                    result.batch_size,
                    result.learning_rate,
                    "—" if steps is None else steps.format(digits=1),
                    None if steps is None else steps.mean * result.batch_size,
                    None
                    if self.fit is None
                    else float(self.fit.steps(result.batch_size)),
                    noise,
                    f"{len(result.reached_steps())}/{len(result.runs)}",
                ]
            )
        return rows

    def to_json(self) -> dict:
        """The result as JSON-ready dicts (the `critical_batch.json` schema)."""
        runs = []
        for result in self.batches:
            means = result.tuning_means(self.learning_rates)
            rate = result.learning_rate
            runs.append(
                {
                    "batch_size": result.batch_size,
                    "learning_rate": rate,
                    "learning_rate_grid": list(self.learning_rates),
                    "learning_rate_at_grid_edge": rate is not None
                    and rate in (min(self.learning_rates), max(self.learning_rates)),
                    "tuning_mean_steps": {str(k): v for k, v in means.items()},
                    "steps_to_target": result.steps,
                    "examples_to_target": [r.examples for r in result.runs],
                    "outcome": [r.outcome for r in result.runs],
                    "steps": _to_dict(_interval(result.reached_steps())),
                    "gradient_noise_scale": [
                        None if r.noise is None else r.noise.noise_scale
                        for r in result.runs
                    ],
                    "gradient_noise_trace": [
                        None if r.noise is None else r.noise.trace for r in result.runs
                    ],
                    "gradient_squared_norm": [
                        None if r.noise is None else r.noise.squared_norm
                        for r in result.runs
                    ],
                    "final_train_loss": [r.final_loss for r in result.runs],
                    "gradient_noise_scale_pooled": result.pooled_noise_scale(),
                }
            )
        noise = self.noise_scale()
        small, big = self.noise_batches
        return {
            "protocol": {
                "dataset": self.dataset,
                "train_samples": self.train_samples,
                "model": f"MLP 2x{self.width} ReLU, softmax",
                "optimizer": "GradientDescent (plain SGD)",
                "target": f"training-set cross-entropy <= {self.target_loss}, "
                "evaluated after every step in inference mode",
                "target_loss": self.target_loss,
                "batches": "independent uniform draws, without replacement within a "
                "batch",
                "learning_rate_choice": "fewest mean steps to target on the tuning "
                "seeds",
                "tuning_seeds": list(self.tuning_seeds),
                "seeds": list(self.seeds),
                "max_steps": self.max_steps,
            },
            "runs": runs,
            "fit": None
            if self.fit is None
            else {
                **self.fit.to_json(),
                "method": "least squares of log S over every report run",
                "B_crit_per_seed": [f.critical_batch_size for f in self.seed_fits],
                "B_crit_over_seeds": _to_dict(self.critical_batch_interval()),
            },
            "gradient_noise_scale": {
                "B_simple": None if noise is None else noise.mean,
                **(_to_dict(noise) or {}),
                "small_batch_size": small,
                "big_batch_size": big,
                "measurements_per_run": self.noise_measurements,
                "where": "the weights at which each report run first reached the "
                "target",
                "estimator": "GradientNoiseScale's |G|^2 and tr(Sigma), averaged over "
                "the measurements, corrected for sampling without replacement from "
                "the training set; B_simple = mean tr(Sigma) / mean |G|^2 over the "
                "report runs; ci95 from the same ratio pooled seed by seed",
            },
            "wall_clock_s": self.seconds,
        }


def _pooled(measurements: Sequence[NoiseMeasurement]) -> float | None:
    """mean tr(Σ) / mean |G|² (the ratio of means, as McCandlish et al. average
    the two before dividing); `None` without measurements or with mean |G|² ≤ 0."""
    if not measurements:
        return None
    norm = float(np.mean([m.squared_norm for m in measurements]))
    trace = float(np.mean([m.trace for m in measurements]))
    return trace / norm if norm > 0 else None


def _to_dict(interval: Interval | None) -> dict | None:
    return None if interval is None else interval.to_dict()


def _check_arguments(
    batch_sizes,
    learning_rates,
    target_loss,
    seeds,
    tuning_seeds,
    max_steps,
    width,
    noise_batches,
    noise_measurements,
    train_samples,
):
    sizes = tuple(check_integer("batch_sizes", b, 1) for b in batch_sizes)
    if len(set(sizes)) < 2:
        raise ValueError(
            "`batch_sizes` must hold at least two distinct sizes; received "
            f"{list(batch_sizes)!r}."
        )
    if max(sizes) > train_samples:
        raise ValueError(
            f"`batch_sizes` must not exceed the {train_samples} training samples; "
            f"received {max(sizes)}."
        )
    rates = tuple(float(check_positive("learning_rates", r)) for r in learning_rates)
    if not rates:
        raise ValueError("`learning_rates` must hold at least one value; received ().")
    check_positive("target_loss", target_loss)
    check_integer("seeds", seeds, 1)
    check_integer("tuning_seeds", tuning_seeds, 1)
    check_integer("max_steps", max_steps, 1)
    check_integer("width", width, 4)
    small, big = noise_batches
    check_integer("noise_batches[0]", small, 1)
    check_integer("noise_batches[1]", big, 2 * small)
    if big % small or big > train_samples:
        raise ValueError(
            f"`noise_batches` must be (B_small, B_big) with B_big a multiple of B_small "
            f"and at most the {train_samples} training samples; received "
            f"{tuple(noise_batches)}."
        )
    check_integer("noise_measurements", noise_measurements, 1)
    return tuple(sorted(set(sizes))), tuple(sorted(set(rates)))


def _tune(trainer, batch_size, grid, guess, tuning_seeds, target, max_steps, progress):
    """Every grid value on every tuning seed; a run stops once its value cannot win.

    Values are tried nearest to `guess` first (in log distance), so that a good mean
    is known early and the slow values stop early; ties go to the smaller value,
    so the choice does not depend on the order.
    """
    runs, best = [], None  # best: (mean steps, rate)
    order = sorted(grid, key=lambda rate: (abs(math.log(rate / guess)), rate))
    for rate in order:
        done = []
        for seed in tuning_seeds:
            cap = max_steps
            if best is not None:  # one step more and the mean exceeds the best one
                cap = min(cap, round(best[0] * len(tuning_seeds)) - sum(done))
            steps, outcome, loss = trainer.run(batch_size, rate, seed, target, cap)
            if steps is None and outcome == "stopped":
                outcome = "budget" if cap == max_steps else "pruned"
            runs.append(TargetRun(batch_size, rate, seed, steps, outcome, loss))
            if steps is None:
                break
            done.append(steps)
        else:
            mean = float(np.mean(done))
            if best is None or (mean, rate) < best:
                best = (mean, rate)
        if progress is not None:
            progress(
                f"  tune B={batch_size} lr={rate:g}: "
                + ", ".join(
                    f"{r.steps or r.outcome}" for r in runs if r.learning_rate == rate
                )
            )
    return (None if best is None else best[1]), tuple(runs)


def _report(trainer, batch_size, rate, seeds, target, max_steps, noise, progress):
    runs = []
    for seed in seeds:
        steps, outcome, loss = trainer.run(batch_size, rate, seed, target, max_steps)
        if steps is None and outcome == "stopped":
            outcome = "budget"
        measured = None
        if steps is not None:
            small, big, count = noise
            measured = _measure_noise(trainer, seed, small, big, count)
        runs.append(TargetRun(batch_size, rate, seed, steps, outcome, loss, measured))
    if progress is not None:
        progress(
            f"  report B={batch_size} lr={rate:g}: steps "
            + ", ".join(str(r.steps or r.outcome) for r in runs)
        )
    return tuple(runs)


def _fits(batches: Sequence[BatchSizeResult], seeds: Sequence[int]):
    points = [(b.batch_size, r.steps) for b in batches for r in b.runs if r.steps]
    fit = None
    if len({b for b, _ in points}) >= 2:
        fit = fit_critical_batch(*zip(*points))
    per_seed = []
    for seed in seeds:
        mine = [
            (b.batch_size, r.steps)
            for b in batches
            for r in b.runs
            if r.seed == seed and r.steps
        ]
        if len(mine) >= 2:
            per_seed.append(fit_critical_batch(*zip(*mine)))
    return fit, tuple(per_seed)


def run_critical_batch(
    split: Split,
    *,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    target_loss: float = DEFAULT_TARGET_LOSS,
    seeds: int = DEFAULT_SEEDS,
    tuning_seeds: int = DEFAULT_TUNING_SEEDS,
    max_steps: int = DEFAULT_MAX_STEPS,
    width: int = 64,
    noise_batches: tuple[int, int] = (
        DEFAULT_NOISE_SMALL_BATCH,
        DEFAULT_NOISE_BIG_BATCH,
    ),
    noise_measurements: int = DEFAULT_NOISE_MEASUREMENTS,
    progress: Progress | None = None,
) -> CriticalBatchExperiment:
    """Steps to a target training loss against the batch size, B_crit and B_simple.

    The procedure is the module's (steps to target after every step, η tuned per
    batch size for the fewest steps on the tuning seeds of
    `protocol.make_seeds(seeds, tuning_seeds)`, reported on its report seeds, the fit of S = S_min (1 + B_crit / B) in log space, B_simple
    at the target). The network is `keras_optnotes.models.build_classifier` on the
    flattened inputs (an MLP with two hidden layers of `width` ReLU units), trained
    with plain gradient descent. Only the training split is used: the target is a
    training loss, the quantity the model of McCandlish et al. is about.

    Args:
        split: the data; its training arrays are the population.
        batch_sizes: the batch sizes B, each ≤ the training samples.
        learning_rates: the grid of η every batch size is tuned on.
        target_loss: the training cross-entropy to reach, > 0.
        seeds: how many report seeds (fresh initial weights and batches), ≥ 1.
        tuning_seeds: how many seeds the learning rate is chosen on, ≥ 1.
        max_steps: the step budget of a run.
        width: the MLP's hidden width.
        noise_batches: (B_small, B_big) of `GradientNoiseScale`'s estimator.
        noise_measurements: independent big batches per B_simple measurement.
        progress: receives one line per batch size's tuning and report runs.

    Returns:
        A `CriticalBatchExperiment`; `to_json()` is `critical_batch.json`.

    Raises:
        ValueError: an argument out of range, naming it and the value.
    """
    start = time.perf_counter()
    x = np.asarray(split.x_train, np.float32).reshape(len(split.x_train), -1)
    y = np.asarray(split.y_train)
    sizes, grid = _check_arguments(
        batch_sizes,
        learning_rates,
        target_loss,
        seeds,
        tuning_seeds,
        max_steps,
        width,
        noise_batches,
        noise_measurements,
        len(x),
    )
    chosen_seeds = make_seeds(seeds, tuning_seeds)
    tuning, report = chosen_seeds.tuning, chosen_seeds.report
    results = []
    with op_determinism():
        trainer = _Trainer(x, y, split.num_classes, width)
        guess = math.sqrt(grid[0] * grid[-1])
        for batch_size in sizes:
            rate, tuning_runs = _tune(
                trainer,
                batch_size,
                grid,
                guess,
                tuning,
                target_loss,
                max_steps,
                progress,
            )
            guess = guess if rate is None else rate
            runs = ()
            if rate is not None:
                runs = _report(
                    trainer,
                    batch_size,
                    rate,
                    report,
                    target_loss,
                    max_steps,
                    (*noise_batches, noise_measurements),
                    progress,
                )
            results.append(BatchSizeResult(batch_size, rate, tuning_runs, runs))
    fit, seed_fits = _fits(results, report)
    return CriticalBatchExperiment(
        dataset=split.name,
        train_samples=len(x),
        target_loss=float(target_loss),
        learning_rates=grid,
        tuning_seeds=tuning,
        seeds=report,
        max_steps=max_steps,
        width=width,
        noise_batches=tuple(noise_batches),
        noise_measurements=noise_measurements,
        batches=tuple(results),
        fit=fit,
        seed_fits=seed_fits,
        seconds=time.perf_counter() - start,
    )


# --- the figure ----------------------------------------------------------------------


def plot_critical_batch(
    result: CriticalBatchExperiment,
    path: Any = None,
    *,
    axes: Any = None,
    title: str | None = None,
):
    """Steps and examples to target against the batch size, log–log, with the fit.

    Left: each report seed's steps (dots), their mean with its 95 % t-interval, the
    fitted S = S_min (1 + B_crit / B), and vertical lines at B_crit (fit over every
    run; shaded: the interval over per-seed fits) and at B_simple (mean over the
    runs; shaded: its interval). Right: the same for the examples E = B · S and
    E = E_min (1 + B / B_crit).

    Args:
        result: a `CriticalBatchExperiment`.
        path: where to save the figure (PNG); not saved when `None`.
        axes: two matplotlib `Axes` to draw the steps and the examples into (e.g.
            `figure.subplots(1, 2)`); a new figure of two panels when `None`.
        title: the figure's title; a summary of the settings by default.

    Returns:
        The matplotlib `Figure` (the axes' figure when `axes` are given).

    Example:
        >>> result = run_critical_batch(load("digits"), batch_sizes=(8, 64, 512))
        >>> figure = plot_critical_batch(result)  # shown inline in a notebook
    """
    from keras_optnotes.report import panels

    figure, (steps_axes, examples_axes) = panels(axes, 2, figsize=(11, 4.6))
    sizes = np.array([b.batch_size for b in result.batches], np.float64)
    for axes, scale, label in (
        (steps_axes, lambda b: 1.0, "steps to target"),
        (examples_axes, lambda b: b, "examples to target (B · steps)"),
    ):
        for batch in result.batches:
            reached = batch.reached_steps()
            if not reached:
                continue
            values = np.array(reached, np.float64) * scale(batch.batch_size)
            axes.scatter(
                np.full(len(values), batch.batch_size),
                values,
                s=10,
                color="0.6",
                zorder=2,
            )
            # On log axes: the geometric mean and the t-interval of log values.
            summary = mean_interval(np.log(values))
            center = math.exp(summary.mean)
            low, high = (
                (center, center)
                if math.isnan(summary.low)
                else (math.exp(summary.low), math.exp(summary.high))
            )
            axes.errorbar(
                batch.batch_size,
                center,
                yerr=[[center - low], [high - center]],
                fmt="o",
                color="tab:blue",
                capsize=3,
                zorder=3,
            )
        marks = _mark_scales(axes, result, sizes, scale)
        axes.set_xlim(min(sizes.min(), *marks) / 1.6, max(sizes.max(), *marks) * 1.6)
        axes.set_xscale("log", base=2)
        axes.set_yscale("log")
        axes.set_xlabel("batch size B")
        axes.set_ylabel(label)
        axes.grid(True, which="both", alpha=0.25)
    steps_axes.legend(fontsize="small", loc="upper right")
    if title is None:
        title = (
            f"{result.dataset}: steps to training cross-entropy ≤ {result.target_loss} "
            f"(plain SGD, η tuned per B; {len(result.seeds)} seeds: geometric mean "
            "and 95 % t-interval of log values)"
        )
    figure.suptitle(title, fontsize="medium")
    if path is not None:
        figure.savefig(path, dpi=110)
    return figure


def _mark_scales(axes, result, sizes, scale) -> list[float]:
    """The fitted curve and the B_crit and B_simple lines on one panel; returns the
    batch sizes marked (for the limits of the x axis)."""
    marks = []
    if result.fit is not None:
        grid = np.geomspace(sizes.min() / 1.5, sizes.max() * 1.5, 200)
        axes.plot(
            grid,
            result.fit.steps(grid) * scale(grid),
            color="tab:orange",
            label=f"fit S_min(1 + B_crit/B): S_min = {result.fit.min_steps:.0f}",
        )
        critical = result.fit.critical_batch_size
        axes.axvline(
            critical,
            color="tab:orange",
            linestyle="--",
            label=f"B_crit = E_min/S_min = {critical:.0f}",
        )
        marks.append(critical)
        spread = result.critical_batch_interval()
        if spread is not None and spread.count > 1 and spread.low > 0:
            axes.axvspan(
                max(spread.low, 1e-3), spread.high, color="tab:orange", alpha=0.1
            )
    noise = result.noise_scale()
    if noise is not None and noise.mean > 0:
        axes.axvline(
            noise.mean,
            color="tab:green",
            linestyle=":",
            label=f"B_simple = tr(Σ)/|G|² = {noise.mean:.0f}",
        )
        marks.append(noise.mean)
        if noise.count > 1 and noise.low > 0:
            axes.axvspan(
                max(noise.low, 1e-3),
                noise.high,
                color="tab:green",
                alpha=0.1,
            )
    return marks
