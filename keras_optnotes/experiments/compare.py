"""The notes' update rules racing on one network and one dataset.

Every optimizer trains a copy of the same small network (`keras_optnotes.models`)
from the same initial weights, on the same data, in the same batch order, and the
result holds each rule's per-epoch curves, its time per step and one summary row.
`keras-optnotes compare` is this experiment with a command line, a table, a CSV file
and a figure.

Example:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.experiments.compare import run_comparison
>>> comparison = run_comparison(data.load("digits"), {"Adam": 0.01, "Momentum": 0.1})
>>> adam = comparison.get("Adam")
>>> adam.history["val_accuracy"], adam.steady_ms_per_step()
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from keras_optnotes.checks import check_bool, check_integer, check_positive
from keras_optnotes.experiments._common import Progress, RunsResult, op_determinism
from keras_optnotes.experiments.protocol import EDGE_EXTENSIONS

if TYPE_CHECKING:
    from keras_optnotes.data import Split

# Default learning rate of each rule, for `build_classifier` on `digits` (batch 32).
# Chosen by a sweep on a grid of about 3x steps per rule, extended until the best value
# was inside it (10 epochs, seed 0, the value with the lowest best validation loss;
# the full sweep is in the README's "compare" section). A step 3x larger diverges or
# is worse for every rule (RMSprop: about the same), so these sit near each rule's
# edge of stability, where a comparison is fair. Adadelta's 10 is far from the paper's η = 1:
# its steps start near √ε · g and grow slowly, and a larger η shortens that start.
DEFAULT_LEARNING_RATES: dict[str, float] = {
    "GradientDescent": 1.0,
    "Momentum": 0.1,
    "NesterovMomentum": 0.1,
    "Adagrad": 0.1,
    "Adadelta": 10.0,
    "RMSprop": 0.01,
    "Adam": 0.01,
}
# The table above lists every rule of `keras_optnotes.optimizers.list_rules()` in the
# same order (a test checks it); reading it here keeps this module free of TensorFlow
# until an experiment runs.
RULES: tuple[str, ...] = tuple(DEFAULT_LEARNING_RATES)

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32

TABLE_COLUMNS = (
    "optimizer",
    "learning rate",
    "final train loss",
    "best val accuracy",
    "epoch of best val loss",
    "ms/step (median of epochs 2+)",
    "1st epoch s (incl. compile)",
)
HISTORY_COLUMNS = (
    "optimizer",
    "learning_rate",
    "epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "ms_per_step",
)


def rule_name(text: str) -> str:
    """The class name of the rule `text` names ("adam", "nesterov_momentum", ...).

    Raises:
        ValueError: `text` names none of `RULES`.
    """
    by_key = {rule.lower(): rule for rule in RULES}
    key = (
        text.strip().replace("_", "").replace("-", "").lower()
        if isinstance(text, str)
        else None
    )
    if key not in by_key:
        raise ValueError(
            f"Unknown update rule {text!r}; accepted: {', '.join(RULES)} (any case, "
            "or snake_case such as nesterov_momentum)."
        )
    return by_key[key]


@dataclass(frozen=True)
class OptimizerRun:
    """One optimizer's training run.

    Attributes:
        optimizer: the rule's class name.
        learning_rate: the learning rate it used.
        history: Keras' `History.history` as tuples, one value per epoch: `loss`,
            `accuracy` (training batches, training mode), `val_loss`, `val_accuracy`.
        ms_per_step: wall time per training step in each epoch, in milliseconds,
            from the first step's start to the last step's end (validation
            excluded); epoch 1 includes tracing and compiling the train step.
        steps_per_epoch: training steps in one epoch.
    """

    optimizer: str
    learning_rate: float
    history: Mapping[str, tuple[float, ...]]
    ms_per_step: tuple[float, ...]
    steps_per_epoch: int

    def steady_ms_per_step(self) -> float | None:
        """Median ms per step over epochs 2+, `None` after a single epoch."""
        steady = self.ms_per_step[1:]
        return statistics.median(steady) if steady else None

    def best_val_loss_epoch(self) -> int | None:
        """The epoch (from 1) of the lowest finite validation loss, `None` if none."""
        val_loss = self.history["val_loss"]
        finite = [i for i, v in enumerate(val_loss) if math.isfinite(v)]
        return min(finite, key=val_loss.__getitem__) + 1 if finite else None

    def table_row(self) -> list:
        """The row of `TABLE_COLUMNS` for this run."""
        first_epoch_s = (
            self.ms_per_step[0] * self.steps_per_epoch / 1000.0
            if self.ms_per_step
            else None
        )
        return [
            self.optimizer,
            self.learning_rate,
            self.history["loss"][-1],
            max(self.history["val_accuracy"]),
            self.best_val_loss_epoch(),
            self.steady_ms_per_step(),
            first_epoch_s,
        ]

    def history_rows(self) -> list[list]:
        """One row of `HISTORY_COLUMNS` per epoch."""
        return [
            [self.optimizer, self.learning_rate, epoch + 1]
            + [self.history[key][epoch] for key in HISTORY_COLUMNS[3:7]]
            + [ms]
            for epoch, ms in enumerate(self.ms_per_step)
        ]


@dataclass(frozen=True)
class Comparison(RunsResult):
    """The result of `run_comparison`: the settings and one run per rule.

    Attributes:
        dataset: the split's name.
        train_samples: training samples.
        epochs: epochs per rule.
        batch_size: batch size.
        seed: seed of the initial weights and the batch order.
        jit_compile: the optimizers' `jit_compile`.
        runs: one `OptimizerRun` per rule, in the order run.

    `get(name)` is the run of one rule, `table_rows()` the rows of `TABLE_COLUMNS`.
    """

    dataset: str
    train_samples: int
    epochs: int
    batch_size: int
    seed: int
    jit_compile: bool
    runs: tuple[OptimizerRun, ...]
    _run_name: ClassVar[str] = "optimizer"

    def get(self, optimizer: str) -> OptimizerRun:
        """The run of `optimizer` (any name `rule_name` accepts)."""
        return super().get(rule_name(optimizer))

    def history_rows(self) -> list[list]:
        """One row of `HISTORY_COLUMNS` per rule and epoch."""
        return [row for run in self.runs for row in run.history_rows()]


def _step_timer(ms_per_step: list[float], steps: list[int]):
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Records the training time per step of each epoch (validation excluded)."""

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()
            self._end = self._start
            self._steps = 0

        def on_train_batch_end(self, batch, logs=None):
            self._steps += 1
            self._end = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            count = max(self._steps, 1)
            steps.append(count)
            ms_per_step.append(1000.0 * (self._end - self._start) / count)

    return StepTimer()


def run_comparison(
    split: Split,
    learning_rates: Mapping[str, float] | None = None,
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    jit_compile: bool = True,
    verbose: int | str = 0,
    progress: Progress | None = None,
) -> Comparison:
    """Trains one copy of `build_classifier` per rule, all from the same weights.

    The network is built once with `seed` and every optimizer starts from a copy of
    its weights; before each `fit` the global seed is reset to `seed`, so every
    optimizer sees the batches in the same order. TensorFlow's op determinism is
    switched on for the run (and back off after it, if it was off), so the same
    arguments give the same numbers on the same machine. The global random seed is
    left set to `seed`.

    Args:
        split: the data (`keras_optnotes.data.load`).
        learning_rates: rule name (any name `rule_name` accepts) to its learning
            rate, in the order the rules should run; `None`: every rule at its
            `DEFAULT_LEARNING_RATES` value.
        epochs: epochs per rule, ≥ 1.
        batch_size: batch size, ≥ 1.
        seed: seed of the initial weights and the batch order, ≥ 0.
        jit_compile: the optimizers' `jit_compile`.
        verbose: passed to `model.fit` (0: silent; "auto": Keras' progress bar).
        progress: called with one line as each rule's run starts.

    Returns:
        A `Comparison` with one `OptimizerRun` per rule, in order.

    Raises:
        ValueError: an unknown rule, a learning rate that is not a finite number
            > 0, or `epochs`, `batch_size`, `seed` or `jit_compile` out of range;
            before any training.
    """
    if learning_rates is None:
        learning_rates = DEFAULT_LEARNING_RATES
    if not isinstance(learning_rates, Mapping) or not learning_rates:
        raise ValueError(
            "Argument `learning_rates` must be a non-empty mapping of rule name to "
            f"learning rate, e.g. {{'Adam': 0.01}}. Received: "
            f"learning_rates={learning_rates!r}"
        )
    rates: dict[str, float] = {}
    for name, rate in learning_rates.items():
        rule = rule_name(name)
        rates[rule] = check_positive(f"learning_rates[{name!r}]", rate)
    epochs = check_integer("epochs", epochs, 1)
    batch_size = check_integer("batch_size", batch_size, 1)
    seed = check_integer("seed", seed, 0)
    jit_compile = check_bool("jit_compile", jit_compile)
    with op_determinism():
        runs = _train_each(
            split, rates, epochs, batch_size, seed, jit_compile, verbose, progress
        )
    return Comparison(
        dataset=split.name,
        train_samples=len(split.x_train),
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        jit_compile=jit_compile,
        runs=tuple(runs),
    )


def _train_each(
    split, learning_rates, epochs, batch_size, seed, jit_compile, verbose, progress
) -> list[OptimizerRun]:
    import keras

    from keras_optnotes import optimizers
    from keras_optnotes.models import build_classifier

    keras.utils.set_random_seed(seed)
    base = build_classifier(split.input_shape, split.num_classes, seed=seed)
    initial_weights = base.get_weights()
    runs = []
    for index, (rule, learning_rate) in enumerate(learning_rates.items(), start=1):
        if progress is not None:
            progress(
                f"[{index}/{len(learning_rates)}] {rule} "
                f"(learning_rate={learning_rate:g})"
            )
        model = keras.models.clone_model(base)
        model.set_weights(initial_weights)
        model.compile(
            optimizer=optimizers.get(
                rule, learning_rate=learning_rate, jit_compile=jit_compile
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        ms_per_step: list[float] = []
        steps: list[int] = []
        keras.utils.set_random_seed(seed)
        history = model.fit(
            split.x_train,
            split.y_train,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(split.x_val, split.y_val),
            callbacks=[_step_timer(ms_per_step, steps)],
            verbose=verbose,
        )
        runs.append(
            OptimizerRun(
                optimizer=rule,
                learning_rate=learning_rate,
                history={
                    key: tuple(float(v) for v in values)
                    for key, values in history.history.items()
                },
                ms_per_step=tuple(ms_per_step),
                steps_per_epoch=steps[-1] if steps else 0,
            )
        )
    return runs


# ======================================================================================
# The rules ranked on the evidence protocol (`keras_optnotes.experiments.protocol`).

DEFAULT_SEEDS = 8
DEFAULT_TUNING_SEEDS = 2
DEFAULT_GRID_SIZE = 3
RANKING_METRICS = ("test_accuracy", "test_loss", "train_loss")
RANKING_COLUMNS = (
    "rank",
    "optimizer",
    "learning rate (chosen)",
    "grid",
    "test accuracy % [95% CI]",
    "test loss [95% CI]",
    "Δ test accuracy vs #1, points [95% CI]",
    "Δ test loss vs #1 [95% CI]",
    "differs from #1 at 95%",
)
RANKING_SEED_COLUMNS = ("optimizer", "seed", *RANKING_METRICS)


@dataclass(frozen=True)
class Ranking:
    """The result of `rank_rules`: every rule tuned, then measured over seeds.

    Attributes:
        protocol: the `protocol.ProtocolResult` (per rule its grid search on
            validation, its chosen learning rate, its per-seed test loss and
            accuracy and final training loss).
        batch_size: the batch size of every rule.
        seconds: wall-clock time.

    `ranked()` orders the rules by mean test accuracy (then lower mean test loss);
    `difference(rule, metric)` is a rule minus the first-ranked one, paired by seed.
    """

    protocol: Any
    batch_size: int
    seconds: float = float("nan")

    def ranked(self) -> list[str]:
        def key(arm):
            accuracy = arm.per_seed["test_accuracy"]
            loss = [v for v in arm.per_seed["test_loss"] if math.isfinite(v)]
            return (
                -statistics.fmean(accuracy),
                statistics.fmean(loss) if loss else math.inf,
            )

        return [arm.name for arm in sorted(self.protocol.arms, key=key)]

    def interval(self, rule: str, metric: str):
        """Mean and 95 % t-interval of `metric` over the finite per-seed values."""
        from keras_optnotes.experiments.protocol import finite_interval

        return finite_interval(self.protocol.get(rule).per_seed[metric])

    def difference(self, rule: str, metric: str, baseline: str | None = None):
        """`rule` minus `baseline` (default: the first-ranked rule), paired by seed
        over the seeds where both are finite."""
        from keras_optnotes.experiments.protocol import finite_interval

        baseline = baseline or self.ranked()[0]
        return finite_interval(
            self.protocol.get(rule).per_seed[metric],
            self.protocol.get(baseline).per_seed[metric],
        )

    def table_rows(self) -> list[list]:
        """One row of `RANKING_COLUMNS` per rule, best first."""

        def shown(interval, scale=1.0, digits=2):
            return "n/a" if interval is None else interval.format(scale, digits)

        rows = []
        for rank, rule in enumerate(self.ranked(), start=1):
            arm = self.protocol.get(rule)
            grid = sorted(c["learning_rate"] for c in arm.search.candidates)
            accuracy = self.difference(rule, "test_accuracy")
            rows.append(
                [
                    rank,
                    rule,
                    f"{arm.config['learning_rate']:.3g}"
                    + (" (grid edge)" if arm.search.on_edge("learning_rate") else ""),
                    ", ".join(f"{v:.3g}" for v in grid),
                    shown(self.interval(rule, "test_accuracy"), 100),
                    shown(self.interval(rule, "test_loss"), 1, 4),
                    "—" if rank == 1 else shown(accuracy, 100),
                    "—"
                    if rank == 1
                    else shown(self.difference(rule, "test_loss"), 1, 4),
                    "—"
                    if rank == 1
                    else (
                        "yes" if accuracy is not None and accuracy.significant else "no"
                    ),  # fmt: skip
                ]
            )
        return rows

    def per_seed_rows(self) -> list[list]:
        """One row of `RANKING_SEED_COLUMNS` per rule and report seed."""
        return [
            [arm.name, seed, *(arm.per_seed[m][i] for m in RANKING_METRICS)]
            for arm in self.protocol.arms
            for i, seed in enumerate(arm.seeds)
        ]

    def to_dict(self) -> dict:
        """`compare.json`: the protocol, and per rule its config, grid, per-seed
        values, means with 95 % intervals and differences against the first-ranked
        rule, paired by seed."""
        data = self.protocol.to_dict(metrics=())
        best = self.ranked()[0]
        data["protocol"].update(
            batch_size=self.batch_size,
            ranking="by mean test accuracy, then lower mean test loss",
            best=best,
            wall_clock_seconds=self.seconds,
        )
        data["ranking"] = self.ranked()
        for rule in self.ranked():
            entry = data["runs"][rule]
            entry.pop(f"difference_vs_{self.protocol.baseline}", None)
            for metric in RANKING_METRICS:
                interval = self.interval(rule, metric)
                entry[metric] = None if interval is None else interval.to_dict()
            entry["difference_vs_best"] = {}
            for metric in ("test_accuracy", "test_loss"):
                interval = self.difference(rule, metric)
                entry["difference_vs_best"][metric] = (
                    None if interval is None else interval.to_dict()
                )
            entry["grid_edge"] = self.protocol.get(rule).search.on_edge("learning_rate")
        return data


def rank_rules(
    split: Any,
    rules: Sequence[str] | None = None,
    *,
    seeds: int = DEFAULT_SEEDS,
    tuning_seeds: int = DEFAULT_TUNING_SEEDS,
    grid_size: int = DEFAULT_GRID_SIZE,
    edge_extensions: int = EDGE_EXTENSIONS,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    validation_fraction: float = 0.2,
    jit_compile: bool = True,
    verbose: int | str = 0,
    progress: Progress | None = None,
) -> Ranking:
    """Ranks the update rules by test accuracy over seeds, each rule's learning rate
    chosen on validation.

    The protocol is `keras_optnotes.experiments.protocol`'s: the loader's validation
    set is the held-out test split, a validation split is cut from its training
    set. Each rule's grid holds `grid_size` learning rates log-spaced by √10 around
    its `DEFAULT_LEARNING_RATES` value (its own scale: 1 for gradient descent, 0.01
    for Adam, …); the one with the best mean validation accuracy over the tuning
    seeds trains again on `seeds` fresh seeds (0 … seeds − 1), each for `epochs`
    epochs (the same budget for every rule), and the final model is measured on the
    test split. The differences against the first-ranked rule are paired by seed.

    Args:
        split: a loader's `Split` (its validation set becomes the test split) or a
            `protocol.ThreeWaySplit`.
        rules: rule names (`rule_name` accepts any case), default every rule.
        seeds: report seeds, ≥ 2.
        tuning_seeds: seeds of the grid search, ≥ 1.
        grid_size: learning rates per rule, ≥ 3.
        edge_extensions: how many times at most a rule's grid is extended by one
            learning rate past the edge its winner is on (0: never).
        epochs: epochs per run, ≥ 1.
        batch_size: batch size, ≥ 1.
        validation_fraction: share of the loader's training set held out for
            validation.
        jit_compile: the optimizers' and train step's XLA compilation.
        verbose: 0 quiet; 1 one line per training run.
        progress: called with each of those lines instead of `print`.

    Returns:
        A `Ranking`.

    Raises:
        ValueError: an unknown rule or an argument out of range, before training.

    Example:

    >>> from keras_optnotes import data  # doctest: +SKIP
    >>> ranking = rank_rules(data.load("digits"), ["Adam", "Momentum"])  # doctest: +SKIP
    >>> ranking.table_rows()  # doctest: +SKIP
    """
    import time

    from keras_optnotes.experiments import protocol

    start = time.monotonic()
    if rules is None:
        rules = RULES
    if isinstance(rules, str) or not isinstance(rules, Sequence) or not rules:
        raise ValueError(
            "Argument `rules` must be a non-empty sequence of rule names; accepted: "
            f"{', '.join(RULES)}. Received: rules={rules!r}"
        )
    rules = tuple(dict.fromkeys(rule_name(rule) for rule in rules))
    seeds = check_integer("seeds", seeds, 2)
    tuning_seeds = check_integer("tuning_seeds", tuning_seeds, 1)
    grid_size = check_integer("grid_size", grid_size, 3)
    edge_extensions = check_integer("edge_extensions", edge_extensions, 0)
    epochs = check_integer("epochs", epochs, 1)
    batch_size = check_integer("batch_size", batch_size, 1)
    jit_compile = check_bool("jit_compile", jit_compile)
    if not isinstance(split, protocol.ThreeWaySplit):
        split = protocol.three_way_split(split, validation_fraction=validation_fraction)
    budget = protocol.Budget("epochs", epochs)

    def arm(rule: str) -> protocol.Arm:
        def train(setting, seed, development):
            return _train_rule(
                rule, setting["learning_rate"], seed, development, budget,
                batch_size, jit_compile,
            )  # fmt: skip

        grid = protocol.log_grid(DEFAULT_LEARNING_RATES[rule], grid_size)
        return protocol.Arm(
            rule,
            {"optimizer": rule, "batch_size": batch_size, "epochs": epochs},
            tuple({"learning_rate": lr} for lr in grid),
            train,
        )

    printer = progress
    if printer is None and verbose not in (0, "0", False, None):
        printer = lambda line: print(line, flush=True)  # noqa: E731
    with op_determinism():
        result = protocol.run_protocol(
            split,
            [arm(rule) for rule in rules],
            seeds=protocol.make_seeds(seeds, tuning_seeds),
            budget=budget,
            measure=_measure_rule,
            baseline=rules[0],
            progress=printer,
            max_extensions=edge_extensions,
        )
    return Ranking(result, batch_size, time.monotonic() - start)


def _train_rule(rule, learning_rate, seed, development, budget, batch_size, jit):
    """One rule's training run from `build_classifier(..., seed=seed)`."""
    import keras

    from keras_optnotes import optimizers
    from keras_optnotes.experiments.protocol import fit_for_budget
    from keras_optnotes.models import build_classifier

    keras.utils.set_random_seed(seed)
    model = build_classifier(
        development.input_shape, development.num_classes, seed=seed
    )
    model.compile(
        optimizer=optimizers.get(rule, learning_rate=learning_rate, jit_compile=jit),
        loss="sparse_categorical_crossentropy",
    )
    fit_for_budget(model, development, batch_size=batch_size, budget=budget, seed=seed)
    return model


def _measure_rule(model, split, seed) -> dict:
    """Test loss and accuracy, and the loss on the whole training split."""
    from keras_optnotes.experiments.protocol import classification_scores

    test = classification_scores(model, split.x_test, split.y_test)
    train = classification_scores(
        model, split.development.x_train, split.development.y_train
    )
    return {
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "train_loss": train["loss"],
    }
