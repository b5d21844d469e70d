"""The evidence protocol every comparison here follows, written once.

A comparison of training methods answers "is A better than B on data neither was
chosen on?". This module holds the pieces of that answer, in the order they are used
(the vocabulary is scikit-learn's `model_selection`):

1. **Three disjoint splits** (`three_way_split`): training, validation and test. The
   test split is kept apart in a `ThreeWaySplit`; what trains and tunes receives only
   its `development` part (`DevelopmentSplit`: training and validation, no test
   attribute at all), so no choice can see the test split.
2. **A grid per method** (`log_grid`): at least 3 log-spaced values around the
   method's own convention.
3. **The choice on validation** (`choose_on_validation`): each candidate is trained
   on each tuning seed and scored on the validation split; the candidate with the
   best mean score wins (ties: the first tried). Where the winner's learning rate is
   the grid's smallest or largest, the grid may be extended past that edge by its
   own ratio, up to `max_extensions` times, until the winner is inside: a choice on
   the edge does not show that the best value was bracketed.
4. **Fresh seeds** (`make_seeds`): the chosen setting is trained again on report
   seeds disjoint from the tuning seeds, and measured on the test split.
5. **Intervals** (`mean_interval`, `paired_difference`): per-seed values, their mean
   with a two-sided 95 % Student-t interval, and differences between methods paired
   by seed (mean and t-interval of the per-seed differences).
6. **A budget** (`Budget`): equal optimizer steps or equal epochs for every method,
   named in the report.

`run_protocol` chains 3-5 for a set of `Arm`s (one method each: its grid and how it
trains) and returns a `ProtocolResult` whose `to_dict()` is the JSON the commands
write. Nothing here imports TensorFlow at import time.

For n per-seed values x_1 … x_n with mean x̄ and sample standard deviation s, the
interval is x̄ ± t_{1−α/2, n−1} · s / √n. The paired difference of A against a
baseline B is that interval over d_i = A_i − B_i: pairing by seed removes the
variance the two methods share (same initial weights, same batch order).

Example:

>>> from keras_optnotes.experiments import protocol
>>> interval = protocol.mean_interval([0.95, 0.96, 0.97])
>>> round(interval.mean, 4), [round(v, 4) for v in interval.to_dict()["ci95"]]
(0.96, [0.9352, 0.9848])

References:
    Student (W. S. Gosset), "The probable error of a mean", Biometrika, 1908.
    Dror, Baumer, Shlomov & Reichart, "The Hitchhiker's Guide to Testing Statistical
    Significance in Natural Language Processing", ACL 2018.
    Choi, Shallue, Nado, Lee, Maddison & Dahl, "On Empirical Comparisons of
    Optimizers for Deep Learning", 2019 (tune every method's learning rate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from keras_optnotes.checks import check_in_range, check_integer, check_positive

if TYPE_CHECKING:
    from keras_optnotes.data import Split

CONFIDENCE = 0.95
TUNING_SEED_OFFSET = 1000  # tuning seeds are 1000, 1001, …; report seeds 0, 1, …
BUDGET_KINDS = ("steps", "epochs")
# How many times the experiments extend a learning-rate grid whose winner is on an edge.
EDGE_EXTENSIONS = 2

# Receives one line per training run as it starts; the experiments print nothing.
Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------
# Student's t quantile, without SciPy if need be.


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) by the modified Lentz method."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 1000):
        # The even and then the odd term of the fraction (Abramowitz & Stegun 26.5.8).
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-16:
            return fraction
    raise ArithmeticError(f"I_x(a, b) did not converge for a={a}, b={b}, x={x}")


def _regularized_incomplete_beta(a: float, b: float, x: float, y: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b), for a, b > 0, x in [0, 1] and y = 1 − x.

    `y` is passed separately so that it keeps its digits when x is close to 1.
    """
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log(y) - _log_beta(a, b))
    # The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
    # I_x(a, b) = 1 − I_{1−x}(b, a) beyond.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, y) / b


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t ≥ 0 and T Student-t with `df` degrees of freedom."""
    x, y = df / (df + t * t), t * t / (df + t * t)
    if x > 0.5:  # near t = 0: P(T > t) = ½ − ½ I_y(½, ν/2), without cancellation
        return 0.5 - 0.5 * _regularized_incomplete_beta(0.5, df / 2.0, y, x)
    return 0.5 * _regularized_incomplete_beta(df / 2.0, 0.5, x, y)


def _student_t_quantile(probability: float, df: float) -> float:
    """The quantile of Student's t by bisection on its exact tail (no SciPy).

    P(T > t) = ½ I_{ν/(ν+t²)}(ν/2, ½); it falls strictly in t, so bisection on
    [0, hi] converges to the float nearest the quantile, to the accuracy of I_x.
    """
    if probability == 0.5:
        return 0.0
    tail = min(probability, 1.0 - probability)
    low, high = 0.0, 1.0
    while _t_upper_tail(high, df) > tail:
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if _t_upper_tail(middle, df) > tail:
            low = middle
        else:
            high = middle
    quantile = 0.5 * (low + high)
    return quantile if probability > 0.5 else -quantile


def t_quantile(probability: float, df: float) -> float:
    """The `probability` quantile of Student's t distribution with `df` degrees.

    Uses `scipy.stats.t.ppf` when SciPy is installed (it is an optional extra), and
    otherwise an exact computation: bisection on P(T > t) = ½ I_{ν/(ν+t²)}(ν/2, ½),
    with the regularized incomplete beta function I_x by its continued fraction
    (Abramowitz & Stegun 26.5.8). Both agree to about 1e-12 (a test checks it).

    Args:
        probability: in (0, 1); 0.975 gives the two-sided 95 % interval's quantile.
        df: degrees of freedom, > 0 (n − 1 for n values).

    Returns:
        t such that P(T ≤ t) = `probability`.

    Example:

    >>> round(t_quantile(0.975, 7), 4)
    2.3646
    """
    probability = check_in_range(
        "probability", probability, 0.0, 1.0, low_inclusive=False, high_inclusive=False
    )
    df = check_positive("df", df)
    try:
        from scipy import stats
    except ImportError:
        return _student_t_quantile(probability, df)
    return float(stats.t.ppf(probability, df))


# --------------------------------------------------------------------------------------
# Intervals over seeds.


@dataclass(frozen=True)
class Interval:
    """A mean over seeds with its two-sided Student-t confidence interval.

    Attributes:
        mean: x̄, the mean of the values.
        low: x̄ − t · s/√n (NaN for a single value).
        high: x̄ + t · s/√n (NaN for a single value).
        standard_error: s/√n, s the sample standard deviation (n − 1 in its
            denominator; NaN for a single value).
        count: n, the number of values (seeds).
        confidence: the interval's coverage, 0.95 by default.
    """

    mean: float
    low: float
    high: float
    standard_error: float
    count: int
    confidence: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        """Whether the interval excludes 0 (for a difference: significant at its
        confidence level)."""
        return bool(self.low > 0.0 or self.high < 0.0)

    def to_dict(self) -> dict:
        """`{"mean": m, "ci95": [lo, hi], "standard_error": se, "n": n}` for JSON;
        undefined bounds (one seed) are `None`."""

        def plain(value: float) -> float | None:
            return None if math.isnan(value) else float(value)

        key = f"ci{round(100 * self.confidence):d}"
        return {
            "mean": float(self.mean),
            key: [plain(self.low), plain(self.high)],
            "standard_error": plain(self.standard_error),
            "n": self.count,
        }

    def format(self, scale: float = 1.0, digits: int = 2) -> str:
        """ "m [lo, hi]" with the values multiplied by `scale` (100: percent)."""
        if math.isnan(self.low):
            return f"{self.mean * scale:.{digits}f}"
        return (
            f"{self.mean * scale:.{digits}f} "
            f"[{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"
        )


def _values(name: str, values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or array.size == 0 or not np.all(np.isfinite(array)):
        raise ValueError(
            f"Argument `{name}` must be a non-empty 1-D sequence of finite numbers. "
            f"Received: {name}={values!r}"
        )
    return array


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of per-seed values and its two-sided Student-t interval.

    x̄ ± t_{(1+c)/2, n−1} · s/√n, with s the sample standard deviation (n − 1 in its
    denominator) and c the confidence. With one value the bounds are NaN.

    Args:
        values: one value per seed, finite.
        confidence: the coverage c, in (0, 1).

    Returns:
        An `Interval`.

    Example:

    >>> mean_interval([1.0, 2.0, 3.0]).to_dict()["ci95"]  # 2 ± 4.3027 / √3
    [-0.48413771175033426, 4.484137711750334]
    """
    confidence = check_in_range(
        "confidence", confidence, 0.0, 1.0, low_inclusive=False, high_inclusive=False
    )
    array = _values("values", values)
    mean = float(np.mean(array))
    if array.size < 2:
        nan = float("nan")
        return Interval(mean, nan, nan, nan, 1, confidence)
    standard_error = float(np.std(array, ddof=1) / math.sqrt(array.size))
    half = t_quantile((1.0 + confidence) / 2.0, array.size - 1) * standard_error
    return Interval(
        mean, mean - half, mean + half, standard_error, int(array.size), confidence
    )


def paired_difference(
    values: Sequence[float],
    baseline: Sequence[float],
    confidence: float = CONFIDENCE,
) -> Interval:
    """The mean of the per-seed differences `values[i] − baseline[i]` and its interval.

    Both sequences hold one value per seed, in the same seed order; the interval is
    `mean_interval` of the differences (the paired t-interval).

    Raises:
        ValueError: the sequences differ in length.
    """
    a = _values("values", values)
    b = _values("baseline", baseline)
    if a.shape != b.shape:
        raise ValueError(
            "Arguments `values` and `baseline` must hold one value per seed each, "
            f"in the same order. Received: {a.size} and {b.size} values"
        )
    return mean_interval(a - b, confidence)


def finite_interval(
    values: Sequence[float], baseline: Sequence[float] | None = None
) -> Interval | None:
    """`mean_interval` of the finite per-seed values, or `None` when none is finite.

    With `baseline`, of the finite per-seed differences `values[i] − baseline[i]`
    (paired by seed, as `paired_difference`; a pair with a diverged run is left
    out). The reports use it so that one diverged seed does not void a run's row.
    """
    values = list(values)
    if baseline is not None:
        values = [a - b for a, b in zip(values, baseline)]
    finite = [v for v in values if math.isfinite(v)]
    return mean_interval(finite) if finite else None


# --------------------------------------------------------------------------------------
# Splits and seeds.


@dataclass(frozen=True, eq=False)
class DevelopmentSplit:
    """What training and tuning may see: the training and validation splits.

    It has no test split by construction; `Arm.train` and the scores that choose
    settings receive only this.

    Attributes:
        x_train, y_train: the training split.
        x_val, y_val: the validation split (choices, early stopping).
        num_classes: number of classes.
        name: the dataset's name.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample."""
        return tuple(self.x_train.shape[1:])


@dataclass(frozen=True, eq=False)
class ThreeWaySplit:
    """Three disjoint splits: `development` (training, validation) and the test split.

    Attributes:
        development: a `DevelopmentSplit`, all that training and tuning see.
        x_test, y_test: the test split, only for the report.
    """

    development: DevelopmentSplit
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def name(self) -> str:
        return self.development.name

    @property
    def num_classes(self) -> int:
        return self.development.num_classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.development.input_shape

    def sizes(self) -> dict[str, int]:
        """`{"train": n, "validation": n, "test": n}`."""
        return {
            "train": len(self.development.x_train),
            "validation": len(self.development.x_val),
            "test": len(self.x_test),
        }


def three_way_split(
    split: Split, *, validation_fraction: float = 0.2, seed: int = 0
) -> ThreeWaySplit:
    """Training, validation and test splits from a loader's `Split`.

    The loader's validation set becomes the test split, untouched; the validation
    split is the last `validation_fraction` of the loader's training set after a
    shuffle with `seed`, and the rest is the training split. The three are disjoint
    because the loader's two are and the second cut is a permutation's two ends.

    Args:
        split: from `keras_optnotes.data.load` (its validation part becomes the test).
        validation_fraction: share of the loader's training samples held out for
            validation, in (0, 1).
        seed: seed of the shuffle that decides the validation split, ≥ 0.

    Returns:
        A `ThreeWaySplit`.

    Example:

    >>> from keras_optnotes import data  # doctest: +SKIP
    >>> three_way_split(data.load("digits")).sizes()  # doctest: +SKIP
    {'train': 1150, 'validation': 288, 'test': 359}
    """
    validation_fraction = check_in_range(
        "validation_fraction",
        validation_fraction,
        0.0,
        1.0,
        low_inclusive=False,
        high_inclusive=False,
    )
    seed = check_integer("seed", seed, 0)
    count = len(split.x_train)
    num_val = max(1, int(round(validation_fraction * count)))
    if num_val >= count:
        raise ValueError(
            f"Argument `validation_fraction` leaves no training samples out of "
            f"{count}. Received: validation_fraction={validation_fraction!r}"
        )
    order = np.random.default_rng(seed).permutation(count)
    train, val = order[:-num_val], order[-num_val:]
    development = DevelopmentSplit(
        x_train=split.x_train[train],
        y_train=split.y_train[train],
        x_val=split.x_train[val],
        y_val=split.y_train[val],
        num_classes=split.num_classes,
        name=split.name,
    )
    return ThreeWaySplit(development, split.x_val, split.y_val)


@dataclass(frozen=True)
class Seeds:
    """Tuning seeds and report seeds, disjoint.

    Attributes:
        tuning: the seeds the grid search trains with.
        report: the fresh seeds the chosen settings are reported on.
    """

    tuning: tuple[int, ...]
    report: tuple[int, ...]

    def __post_init__(self):
        if not self.tuning or not self.report:
            raise ValueError(
                "`Seeds` needs at least one tuning and one report seed. Received: "
                f"tuning={self.tuning!r}, report={self.report!r}"
            )
        shared = sorted(set(self.tuning) & set(self.report))
        if shared:
            raise ValueError(
                "Tuning and report seeds must be disjoint; shared: "
                f"{shared}. Received: tuning={self.tuning!r}, report={self.report!r}"
            )


def make_seeds(report: int, tuning: int = 2) -> Seeds:
    """`Seeds` with report seeds 0 … report − 1 and tuning seeds 1000 … 999 + tuning.

    Args:
        report: number of report seeds, ≥ 1 (8 or more for a full run).
        tuning: number of tuning seeds, ≥ 1.
    """
    report = check_integer("report", report, 1)
    tuning = check_integer("tuning", tuning, 1)
    return Seeds(
        tuning=tuple(range(TUNING_SEED_OFFSET, TUNING_SEED_OFFSET + tuning)),
        report=tuple(range(report)),
    )


def log_grid(center: float, count: int = 3, factor: float = math.sqrt(10.0)):
    """`count` log-spaced values around `center`, each `factor` times the previous.

    For odd `count` the middle value is `center`; for even `count` the values sit
    symmetrically around it. `log_grid(1e-3)` is (3.16e-4, 1e-3, 3.16e-3).

    Args:
        center: the method's conventional value, > 0.
        count: number of values, ≥ 1 (3 or more to tune).
        factor: ratio of neighbours, > 1.

    Returns:
        A tuple of floats, increasing.
    """
    center = check_positive("center", center)
    count = check_integer("count", count, 1)
    factor = check_in_range("factor", factor, 1.0, None, low_inclusive=False)
    offsets = np.arange(count) - (count - 1) / 2.0
    return tuple(float(center * factor**k) for k in offsets)


# --------------------------------------------------------------------------------------
# The budget.


@dataclass(frozen=True)
class Budget:
    """How long each method trains: the same optimizer steps, or the same epochs.

    Attributes:
        kind: "steps" (every method takes `amount` optimizer steps, whatever its
            batch size: Shallue et al.'s comparison) or "epochs" (every method sees
            the training set `amount` times: fewer steps for larger batches).
        amount: the number of steps or epochs, ≥ 1.
    """

    kind: str
    amount: int

    def __post_init__(self):
        if self.kind not in BUDGET_KINDS:
            raise ValueError(
                f"Argument `kind` must be one of {', '.join(BUDGET_KINDS)}. "
                f"Received: kind={self.kind!r}"
            )
        check_integer("amount", self.amount, 1)

    def steps(self, batch_size: int, train_samples: int) -> int:
        """Optimizer steps at `batch_size` (the last, partial batch of an epoch is a
        step, as in `model.fit`)."""
        if self.kind == "steps":
            return self.amount
        return self.amount * math.ceil(train_samples / batch_size)

    def epochs(self, batch_size: int, train_samples: int) -> int:
        """Epochs `fit` must run to take `steps(...)` steps (the last one stopped
        early by `StopAfterSteps` when the steps end inside it)."""
        if self.kind == "epochs":
            return self.amount
        return math.ceil(self.amount / math.ceil(train_samples / batch_size))

    def describe(self) -> str:
        """ "equal steps (1000 per method)" or "equal epochs (30 per method)"."""
        return f"equal {self.kind} ({self.amount} per method)"

    def to_dict(self, batch_sizes: Mapping[str, int], train_samples: int) -> dict:
        """The budget for JSON, with each run's steps and epochs at its batch size."""
        return {
            "kind": self.kind,
            "amount": self.amount,
            "description": self.describe(),
            "steps": {
                name: self.steps(b, train_samples) for name, b in batch_sizes.items()
            },
            "epochs": {
                name: self.steps(b, train_samples) / math.ceil(train_samples / b)
                for name, b in batch_sizes.items()
            },
        }


def stop_after_steps(steps: int):
    """A Keras callback that ends `fit` after exactly `steps` optimizer steps."""
    import keras

    steps = check_integer("steps", steps, 1)

    class StopAfterSteps(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.taken = 0

        def on_train_batch_end(self, batch, logs=None):
            self.taken += 1
            if self.taken >= steps:
                self.model.stop_training = True

    return StopAfterSteps()


def fit_for_budget(
    trainer: Any,
    development: DevelopmentSplit,
    *,
    batch_size: int,
    budget: Budget,
    seed: int,
    callbacks: Sequence[Any] = (),
    verbose: int | str = 0,
) -> Any:
    """Fits a compiled `trainer` on the training split for exactly the budget.

    Resets the global seed to `seed` first (the batch order), runs
    `budget.epochs(...)` epochs and stops after `budget.steps(...)` steps. Only
    `development.x_train` reaches `fit`: nothing here can see a test split.

    Returns:
        Keras' `History`.
    """
    import keras

    train_samples = len(development.x_train)
    keras.utils.set_random_seed(seed)
    return trainer.fit(
        development.x_train,
        development.y_train,
        batch_size=batch_size,
        epochs=budget.epochs(batch_size, train_samples),
        verbose=verbose,
        callbacks=[
            *callbacks,
            stop_after_steps(budget.steps(batch_size, train_samples)),
        ],
    )


# --------------------------------------------------------------------------------------
# Scores, the choice on validation, the report on fresh seeds.


def classification_scores(model: Any, x: np.ndarray, y: np.ndarray) -> dict:
    """`{"loss", "accuracy"}` of a probability-output classifier on `(x, y)`.

    Loss: the mean of −log p_{y}, with p clipped to [ε, 1 − ε] (ε =
    `keras.config.epsilon()`, as Keras' cross-entropy), computed in float64 from the
    model's `training=False` outputs. Accuracy: the share of argmax p = y.
    """
    import keras

    probabilities = np.asarray(
        keras.ops.convert_to_numpy(model(x, training=False)), dtype=np.float64
    )
    epsilon = keras.config.epsilon()
    picked = np.clip(probabilities[np.arange(len(y)), y], epsilon, 1.0 - epsilon)
    if not np.all(np.isfinite(probabilities)):
        return {"loss": float("nan"), "accuracy": 0.0}
    return {
        "loss": float(-np.mean(np.log(picked))),
        "accuracy": float(np.mean(np.argmax(probabilities, axis=-1) == y)),
    }


def validation_accuracy(model: Any, development: DevelopmentSplit) -> float:
    """The model's accuracy on the validation split: the default tuning score."""
    return classification_scores(model, development.x_val, development.y_val)[
        "accuracy"
    ]


@dataclass(frozen=True)
class GridSearch:
    """The choice of one method's setting on validation.

    Attributes:
        candidates: the settings tried, in the order tried: the grid, then the
            values of each extension past an edge (each a mapping of
            hyper-parameters, e.g. `{"learning_rate": 0.01}`).
        seeds: the tuning seeds.
        scores: `scores[i][j]`, the validation score of candidate i on seed j.
        best_index: the index of the candidate with the best mean score (the first
            of equal ones).
        maximize: whether a higher score is better.
        extensions: how many times the grid was extended past an edge.
    """

    candidates: tuple[Mapping[str, Any], ...]
    seeds: tuple[int, ...]
    scores: tuple[tuple[float, ...], ...]
    best_index: int
    maximize: bool = True
    extensions: int = 0

    @property
    def mean_scores(self) -> tuple[float, ...]:
        """The mean score of each candidate over the tuning seeds."""
        return tuple(float(np.mean(row)) if row else math.nan for row in self.scores)

    @property
    def best(self) -> Mapping[str, Any]:
        """The chosen candidate."""
        return self.candidates[self.best_index]

    def on_edge(self, key: str) -> bool:
        """Whether the chosen value of `key` is the smallest or largest in the grid
        (the grid may not bracket the best value)."""
        values = sorted({c[key] for c in self.candidates if key in c})
        return len(values) > 1 and self.best.get(key) in (values[0], values[-1])

    def to_dict(self) -> dict:
        return {
            "candidates": [dict(c) for c in self.candidates],
            "seeds": list(self.seeds),
            "validation_scores": [list(row) for row in self.scores],
            "mean_validation_scores": list(self.mean_scores),
            "chosen": dict(self.best),
            "edge_extensions": self.extensions,
        }


def _best_index(means: Sequence[float], maximize: bool) -> int:
    # NaN (a diverged run) is never chosen unless every candidate is NaN.
    keyed = [(-m if maximize else m) if math.isfinite(m) else math.inf for m in means]
    return int(np.argmin(keyed))


def _past_the_edge(
    candidates: Sequence[Mapping[str, Any]], best: Mapping[str, Any], key: str
) -> list[Mapping[str, Any]]:
    """The winner one grid step past the edge where `best[key]` lies (its `key`
    multiplied by the ratio of the two outermost values on that side, the other
    hyper-parameters kept); none where `best[key]` is inside the grid."""
    values = sorted({c[key] for c in candidates if key in c})
    if len(values) < 2 or key not in best or values[0] <= 0:
        return []
    if best[key] == values[-1]:
        new = values[-1] * (values[-1] / values[-2])
    elif best[key] == values[0]:
        new = values[0] * (values[0] / values[1])
    else:
        return []
    return [MappingProxyType({**best, key: new})]


def choose_on_validation(
    score: Callable[[Mapping[str, Any], int, DevelopmentSplit], float],
    candidates: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    development: DevelopmentSplit,
    *,
    maximize: bool = True,
    progress: Progress | None = None,
    extend: str = "learning_rate",
    max_extensions: int = 0,
) -> GridSearch:
    """Scores every candidate on every tuning seed and picks the best mean.

    `score(candidate, seed, development)` trains with that setting and seed and
    returns its validation score (for instance `validation_accuracy` of the trained
    model). It receives the `DevelopmentSplit` only: there is no test split to see.

    With `max_extensions` > 0, a winner whose `extend` value is the grid's smallest
    or largest (a positive, log-spaced value such as the learning rate) makes the
    grid one step longer past that edge: the winner is tried again with that value
    multiplied by the ratio of the two outermost values there (its other
    hyper-parameters kept; a grid 0.01, 0.03, 0.1 whose winner is 0.1 tries
    0.333…), on the same tuning seeds; this repeats while the winner is on an edge, at most `max_extensions`
    times. The values tried are in `GridSearch.candidates`, the count in
    `GridSearch.extensions`; `GridSearch.on_edge` still tells a winner on the edge
    after the last extension.

    Args:
        score: trains and scores one candidate on one seed.
        candidates: the grid, each a mapping of hyper-parameters; non-empty.
        seeds: tuning seeds, non-empty.
        development: the training and validation splits.
        maximize: a higher score is better (accuracy); `False` for a loss or a
            number of steps.
        progress: called with one line before each training run.
        extend: the hyper-parameter whose grid may be extended past an edge.
        max_extensions: how many times at most (0: never).

    Returns:
        A `GridSearch`; its `best` is the candidate with the best mean score.
    """
    max_extensions = check_integer("max_extensions", max_extensions, 0)
    candidates = tuple(MappingProxyType(dict(c)) for c in candidates)
    seeds = tuple(int(s) for s in seeds)
    if not candidates or not seeds:
        raise ValueError(
            "Arguments `candidates` and `seeds` must be non-empty. Received: "
            f"{len(candidates)} candidates, seeds={seeds!r}"
        )
    if not isinstance(development, DevelopmentSplit):
        raise ValueError(
            "Argument `development` must be a `DevelopmentSplit` (training and "
            "validation only). Received: development of type "
            f"{type(development).__name__}"
        )

    def scored(candidate: Mapping[str, Any]) -> tuple[float, ...]:
        row = []
        for seed in seeds:
            if progress is not None:
                progress(f"tune {describe_setting(candidate)} seed {seed}")
            row.append(float(score(candidate, seed, development)))
        return tuple(row)

    tried = list(candidates)
    scores = [scored(c) for c in tried]
    best = _best_index([float(np.mean(row)) for row in scores], maximize)
    extensions = 0
    while extensions < max_extensions and math.isfinite(float(np.mean(scores[best]))):
        beyond = _past_the_edge(tried, tried[best], extend)
        if not beyond:
            break
        tried.extend(beyond)
        scores.extend(scored(c) for c in beyond)
        best = _best_index([float(np.mean(row)) for row in scores], maximize)
        extensions += 1
    return GridSearch(
        tuple(tried), seeds, tuple(scores), best, maximize, extensions=extensions
    )


def describe_setting(setting: Mapping[str, Any]) -> str:
    """ "k=v, …" of a setting's hyper-parameters, floats as `{:g}`
    (`learning_rate=0.01, rho=0.05`)."""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items()
    )


@dataclass(frozen=True)
class Arm:
    """One method of a comparison: its fixed settings, its grid, how it trains.

    Attributes:
        name: the method's name in the report.
        config: its fixed hyper-parameters (batch size, ρ, …), reported beside the
            chosen ones.
        candidates: the grid, each a mapping of the tuned hyper-parameters; or a
            function of the results of the arms run before it (a mapping from name
            to `ArmResult`) that returns the grid, for a method that takes another
            one's chosen setting. A grid of one candidate is not tuned: it trains on
            the report seeds only.
        train: `train(setting, seed, development)` returns a trained model; it sees
            the training and validation splits only.
    """

    name: str
    config: Mapping[str, Any]
    candidates: (
        tuple[Mapping[str, Any], ...]
        | Callable[[Mapping[str, ArmResult]], Sequence[Mapping[str, Any]]]
    )
    train: Callable[[Mapping[str, Any], int, DevelopmentSplit], Any]


@dataclass(frozen=True)
class ArmResult:
    """One method's tuning and per-seed results.

    Attributes:
        name: the method.
        config: every hyper-parameter it was reported with (fixed and chosen).
        search: the `GridSearch` that chose them.
        seeds: the report seeds, in the order of the per-seed values.
        per_seed: each measured quantity (`test_accuracy`, `test_loss`, …), one
            value per report seed.
    """

    name: str
    config: Mapping[str, Any]
    search: GridSearch
    seeds: tuple[int, ...]
    per_seed: Mapping[str, tuple[float, ...]]

    def interval(self, metric: str, confidence: float = CONFIDENCE) -> Interval:
        """The mean of `metric` over the report seeds with its t-interval."""
        return mean_interval(self.per_seed[metric], confidence)


@dataclass(frozen=True)
class ProtocolResult:
    """Every method's tuning and per-seed results on one three-way split.

    Attributes:
        dataset: the dataset's name.
        split_sizes: `{"train": n, "validation": n, "test": n}`.
        seeds: the tuning and report `Seeds`.
        budget: the `Budget` every method trained for.
        arms: one `ArmResult` per method, in the order run.
        baseline: the name of the arm differences are taken against.
        confidence: the intervals' coverage.
    """

    dataset: str
    split_sizes: Mapping[str, int]
    seeds: Seeds
    budget: Budget
    arms: tuple[ArmResult, ...]
    baseline: str
    confidence: float = CONFIDENCE
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def get(self, name: str) -> ArmResult:
        """The arm called `name`; `KeyError` listing the arms otherwise."""
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(
            f"{name!r} was not run; runs: {', '.join(a.name for a in self.arms)}"
        )

    def difference(
        self, name: str, metric: str, baseline: str | None = None
    ) -> Interval:
        """`name`'s per-seed `metric` minus the baseline's, paired by seed."""
        other = self.get(baseline or self.baseline)
        return paired_difference(
            self.get(name).per_seed[metric], other.per_seed[metric], self.confidence
        )

    def to_dict(
        self,
        metrics: Sequence[str] = ("test_accuracy", "test_loss"),
        batch_sizes: Mapping[str, int] | None = None,
    ) -> dict:
        """The result as plain JSON-ready data (the commands' `*.json`).

        `{"protocol": {"dataset", "split", "seeds", "tuning_seeds", "budget",
        "confidence", "baseline"}, "runs": {name: {"config", "learning_rate_grid",
        "search", "per_seed", <metric>: {"mean", "ci95"}, "difference_vs_<baseline>":
        {<metric>: {"mean", "ci95"}}}}}`.
        """
        base = self.baseline
        budget = (
            self.budget.to_dict(batch_sizes, self.split_sizes["train"])
            if batch_sizes
            else {
                "kind": self.budget.kind,
                "amount": self.budget.amount,
                "description": self.budget.describe(),
            }
        )
        runs = {}
        for arm in self.arms:
            entry = {
                "config": dict(arm.config),
                "learning_rate_grid": sorted(
                    {
                        c["learning_rate"]
                        for c in arm.search.candidates
                        if "learning_rate" in c
                    }
                ),
                "search": arm.search.to_dict(),
                "per_seed": {k: list(v) for k, v in arm.per_seed.items()},
            }
            for metric in metrics:
                if metric in arm.per_seed:
                    entry[metric] = arm.interval(metric, self.confidence).to_dict()
            if any(a.name == base for a in self.arms):
                entry[f"difference_vs_{base}"] = {
                    metric: self.difference(arm.name, metric).to_dict()
                    for metric in metrics
                    if metric in arm.per_seed
                }
            runs[arm.name] = entry
        return {
            "protocol": {
                "dataset": self.dataset,
                "split": dict(self.split_sizes),
                "seeds": list(self.seeds.report),
                "tuning_seeds": list(self.seeds.tuning),
                "budget": budget,
                "confidence": self.confidence,
                "baseline": base,
                "choice": "each run's setting with the best mean validation accuracy "
                "over the tuning seeds; the test split is used for nothing else "
                "than the report",
                **dict(self.extra),
            },
            "runs": runs,
        }


def run_protocol(
    split: ThreeWaySplit,
    arms: Sequence[Arm],
    *,
    seeds: Seeds,
    budget: Budget,
    measure: Callable[[Any, ThreeWaySplit, int], Mapping[str, float]],
    baseline: str,
    score: Callable[[Any, DevelopmentSplit], float] = validation_accuracy,
    progress: Progress | None = None,
    on_arm: Callable[[ArmResult], None] | None = None,
    max_extensions: int = 0,
) -> ProtocolResult:
    """Tunes each arm on validation, then trains and measures it on fresh seeds.

    For each arm: `choose_on_validation` over `arm.candidates` on `seeds.tuning`,
    training with `arm.train(setting, seed, split.development)` and scoring with
    `score(model, split.development)`; then, with the chosen setting, one training
    per seed of `seeds.report` and `measure(model, split, seed)` (the only call that
    receives the test split), which returns the quantities reported per seed.

    Args:
        split: the three-way split.
        arms: the methods; names unique, `baseline` among them.
        seeds: tuning and report seeds (disjoint).
        budget: recorded in the result; the arms' `train` applies it.
        measure: the per-seed measurements of a trained model (`test_accuracy`,
            `test_loss`, …).
        baseline: the arm the paired differences are taken against.
        score: the tuning score of a trained model on the development split,
            higher is better (default: validation accuracy).
        progress: called with one line before each training run.
        on_arm: called with each arm's `ArmResult` as soon as it is complete (to
            save a long run's results as they come).
        max_extensions: how many times at most a learning-rate grid whose winner
            is on an edge is extended past it (`choose_on_validation`).

    Returns:
        A `ProtocolResult`.
    """
    names = [arm.name for arm in arms]
    if len(set(names)) != len(names) or baseline not in names:
        raise ValueError(
            "Argument `arms` must have unique names that include `baseline`. "
            f"Received: arms named {names}, baseline={baseline!r}"
        )
    results: list[ArmResult] = []
    for index, arm in enumerate(arms, start=1):

        def say(line: str, arm=arm, index=index) -> None:
            if progress is not None:
                progress(f"[{index}/{len(arms)}] {arm.name}: {line}")

        candidates = arm.candidates
        if callable(candidates):
            candidates = candidates(MappingProxyType({r.name: r for r in results}))
        candidates = tuple(MappingProxyType(dict(c)) for c in candidates)
        if len(candidates) == 1:  # nothing to choose: no tuning runs
            search = GridSearch(candidates, (), ((),), 0)
        else:
            search = choose_on_validation(
                lambda setting, seed, dev, arm=arm: score(
                    arm.train(setting, seed, dev), dev
                ),
                candidates,
                seeds.tuning,
                split.development,
                progress=say,
                max_extensions=max_extensions,
            )
        per_seed: dict[str, list[float]] = {}
        for seed in seeds.report:
            say(f"report {describe_setting(search.best)} seed {seed}")
            model = arm.train(search.best, seed, split.development)
            for key, value in measure(model, split, seed).items():
                per_seed.setdefault(key, []).append(float(value))
        results.append(
            ArmResult(
                name=arm.name,
                config=MappingProxyType({**arm.config, **search.best}),
                search=search,
                seeds=tuple(seeds.report),
                per_seed=MappingProxyType({k: tuple(v) for k, v in per_seed.items()}),
            )
        )
        if on_arm is not None:
            on_arm(results[-1])
    return ProtocolResult(
        dataset=split.name,
        split_sizes=MappingProxyType(split.sizes()),
        seeds=seeds,
        budget=budget,
        arms=tuple(results),
        baseline=baseline,
    )
