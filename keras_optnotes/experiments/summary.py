"""Summaries of measurements repeated over seeds, as the tutorials report them.

A measurement repeated over seeds is summarised two ways:

- `spread` → `Spread`: the mean and how far the seeds spread around it (the sample
  standard deviation, the smallest and largest value), for a curve's band or a
  table's "mean ± s.d." cell;
- `estimate` → `Estimate`: the per-seed values, their mean and its 95 % Student-t
  interval, for a verdict. Two estimates over the same seeds are compared by
  `difference` (the mean of the per-seed differences a − b and its 95 % t-interval)
  and `significant_difference` (its sign where the interval excludes 0).

`wilson_interval` is the interval of a proportion (runs that escaped a basin, runs
that trained), `descend` the path of an optimizer on a 2-D test function and
`run_description` one line on how long a run took and on what.

Example:

>>> from keras_optnotes.experiments import summary
>>> a = summary.estimate([0.91, 0.93, 0.92, 0.94])
>>> b = summary.estimate([0.90, 0.91, 0.91, 0.92])
>>> str(summary.spread(a.values))
'0.925 ± 0.013'
>>> summary.significant_difference(a, b)
1
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from keras_optnotes.experiments.protocol import (
    Interval,
    mean_interval,
    paired_difference,
)

__all__ = [
    "Estimate",
    "Spread",
    "descend",
    "difference",
    "estimate",
    "run_description",
    "significant_difference",
    "spread",
    "wilson_interval",
]


@dataclasses.dataclass(frozen=True)
class Spread:
    """The mean of a measurement over seeds and how far the seeds spread around it.

    Printed "m ± s" (four significant digits of the mean, two of s), or "m" for one
    seed.

    Attributes:
        mean: the mean over seeds.
        std: the sample standard deviation (n − 1 in its denominator; 0 for one seed).
        low: the smallest value.
        high: the largest value.
        n: the number of seeds.
    """

    mean: float
    std: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n == 1:
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.std:.2g}"


def spread(values: Sequence[float]) -> Spread:
    """The `Spread` of `values`, one per seed.

    Args:
        values: the measurements, any shape (flattened); a NaN makes the mean and
            the standard deviation NaN, as it should (a diverged seed is not dropped).

    Returns:
        A `Spread`.

    Raises:
        ValueError: `values` is empty.

    Example:

    >>> spread([1.0, 2.0, 4.0])
    Spread(mean=2.3333333333333335, std=1.5275252316519468, low=1.0, high=4.0, n=3)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("`values` is empty: there is nothing to summarise.")
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return Spread(
        float(np.mean(values)),
        std,
        float(values.min()),
        float(values.max()),
        int(values.size),
    )


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Per-seed values, their mean and its 95 % Student-t interval.

    The interval is x̄ ± t₀.₉₇₅,ₙ₋₁ · s/√n over the n seeds. Printed "m [lo, hi]"
    (four significant digits of the mean, three of the bounds), or "m" for one seed.

    Attributes:
        values: the measurement of each seed, in seed order.
    """

    values: tuple[float, ...]

    @property
    def interval(self) -> Interval:
        """The mean and its 95 % t-interval (an `experiments.protocol.Interval`)."""
        return mean_interval(self.values)

    @property
    def mean(self) -> float:
        """The mean over seeds."""
        return float(np.mean(self.values))

    def __str__(self) -> str:
        interval = self.interval
        if interval.count < 2:
            return f"{interval.mean:.4g}"
        return f"{interval.mean:.4g} [{interval.low:.3g}, {interval.high:.3g}]"


def estimate(values: Sequence[float]) -> Estimate:
    """The `Estimate` of `values`, one per seed (any shape, flattened in order)."""
    return Estimate(tuple(float(v) for v in np.ravel(values)))


def _paired(a: Estimate, b: Estimate) -> Interval | None:
    if len(a.values) != len(b.values):
        raise ValueError(
            "Paired differences need one value per seed on both sides; received "
            f"{len(a.values)} and {len(b.values)} values."
        )
    if len(a.values) < 2:
        return None
    return paired_difference(a.values, b.values)


def difference(a: Estimate, b: Estimate) -> str:
    """The difference a − b paired by seed, as text.

    The per-seed differences dᵢ = aᵢ − bᵢ give d̄ ± t₀.₉₇₅,ₙ₋₁ · s_d/√n; the
    difference is significant at 95 % when that interval excludes 0.

    Args:
        a: one arm's `Estimate`.
        b: the other arm's, over the same seeds in the same order.

    Returns:
        "+d [+lo, +hi], significant" (or "not significant"); with one seed,
        "+d (one seed: no interval)".

    Raises:
        ValueError: `a` and `b` have different numbers of seeds.
    """
    interval = _paired(a, b)
    if interval is None:
        return f"{a.mean - b.mean:+.3g} (one seed: no interval)"
    mark = "significant" if interval.significant else "not significant"
    return f"{interval.mean:+.3g} [{interval.low:+.3g}, {interval.high:+.3g}], {mark}"


def significant_difference(a: Estimate, b: Estimate) -> int:
    """The sign of a − b where it is significant at 95 % (paired by seed).

    Returns:
        +1 if the 95 % t-interval of the per-seed differences a − b lies above 0,
        −1 if it lies below 0, 0 if it contains 0 or there is one seed.

    Raises:
        ValueError: `a` and `b` have different numbers of seeds.
    """
    interval = _paired(a, b)
    if interval is None or not interval.significant:
        return 0
    return 1 if interval.mean > 0 else -1


def wilson_interval(
    successes: int, trials: int, z: float = 1.959963984540054
) -> tuple[float, float]:
    """Wilson's score interval of a proportion.

    With p̂ = k/n: centre (p̂ + z²/2n) / (1 + z²/n), half-width
    z · √(p̂(1 − p̂)/n + z²/4n²) / (1 + z²/n), clipped to [0, 1]. Unlike p̂ ± z·√(p̂(1 −
    p̂)/n) it stays inside [0, 1] and is not empty at k = 0 or k = n, where its bound
    is exactly 0 or 1.

    Args:
        successes: k, the number of successes, 0 ≤ k ≤ n.
        trials: n, the number of trials; 0 gives `(nan, nan)`.
        z: the normal quantile; the default gives a 95 % interval.

    Returns:
        `(low, high)`.

    Raises:
        ValueError: `successes` outside [0, trials].

    References:
        Wilson, "Probable inference, the law of succession, and statistical
        inference", JASA 22(158), 1927.
    """
    if trials <= 0:
        return math.nan, math.nan
    if not 0 <= successes <= trials:
        raise ValueError(
            f"`successes` must lie in [0, trials={trials}]; received {successes}."
        )
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    # At k = 0 (k = n) the bound is 0 (1) exactly; rounding would leave ±1e-18.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def descend(
    optimizer: Any,
    gradient: Callable[[np.ndarray], np.ndarray],
    start: Any,
    steps: int,
    record: Callable[[Any], Any] | None = None,
):
    """Runs a Keras optimizer on a 2-D test function and returns the path.

    Every row of `start` is its own run: the update rules are element-wise, so one
    float64 variable of shape (runs, 2) holds independent runs that share the
    hyper-parameters. Each step computes the gradient in NumPy and applies it with
    `optimizer.apply`, exactly as `fit` would.

    Args:
        optimizer: a `keras.optimizers.Optimizer`, not yet built.
        gradient: maps the points, an array (runs, 2), to their gradients.
        start: the starting points, (runs, 2).
        steps: the number of steps.
        record: optional `record(optimizer) -> array`, called after each step (e.g.
            to read an optimizer slot); its values are returned too.

    Returns:
        The points, an array (steps + 1, runs, 2) starting with `start`; with
        `record`, the pair `(points, recorded)`.

    Example:

    >>> import keras
    >>> path = descend(keras.optimizers.SGD(0.25), lambda p: 2 * p, [[1.0, -2.0]], 2)
    >>> path[:, 0].tolist()
    [[1.0, -2.0], [0.5, -1.0], [0.25, -0.5]]
    """
    import keras

    start = np.asarray(start, dtype=np.float64)
    if start.ndim != 2:
        raise ValueError(
            f"`start` must have shape (runs, dimensions); received shape {start.shape}."
        )
    variable = keras.Variable(start, dtype="float64", name="point")
    path, recorded = [start], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(int(steps)):
            g = gradient(np.asarray(variable.numpy()))
            optimizer.apply([keras.ops.convert_to_tensor(g, "float64")], [variable])
            path.append(np.asarray(variable.numpy()))
            if record is not None:
                recorded.append(np.asarray(record(optimizer), dtype=np.float64))
    points = np.stack(path)
    return (points, np.stack(recorded)) if record is not None else points


def run_description(seconds: float, *, cpu_seconds: float | None = None) -> str:
    """One line on how long a run took and on what machine.

    The CPU time (all threads of this process) does not grow when other jobs share
    the cores; the wall-clock time does, and the load average says by how much.

    Args:
        seconds: the run's wall-clock time.
        cpu_seconds: its CPU time; default: this process' CPU time so far.

    Returns:
        "Run in 42 s (61 s of CPU time) on 2 CPU cores; load average 1.9 at the end:
        the cores were not oversubscribed. Python 3.11.9, Keras 3.15.1 (tensorflow),
        keras-optnotes 0.1.0."
    """
    import keras

    from keras_optnotes import __version__

    cpu = time.process_time() if cpu_seconds is None else cpu_seconds
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = cores or os.cpu_count()
    shared = (
        "the cores were shared with other jobs, so the wall-clock time is inflated"
        if load > cores
        else "the cores were not oversubscribed"
    )
    return (
        f"Run in {seconds:.0f} s ({cpu:.0f} s of CPU time) on {cores} CPU cores; "
        f"load average {load:.1f} at the end: {shared}. "
        f"Python {platform.python_version()}, Keras {keras.__version__} "
        f"({keras.backend.backend()}), keras-optnotes {__version__}."
    )
