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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from keras_optnotes.checks import check_bool, check_integer, check_positive
from keras_optnotes.experiments._common import Progress, RunsResult, op_determinism

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
