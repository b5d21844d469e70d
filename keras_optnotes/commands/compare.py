"""`keras-optnotes compare`: the notes' update rules racing on one network and one dataset.

Every optimizer trains a copy of the same small network (`keras_optnotes.models`)
from the same initial weights, on the same data, in the same batch order; then the
command prints a table and writes `compare.md` (the table), `compare.csv` (the
per-epoch history) and `compare.png` (train and validation loss curves) into `--out`.

Python use, without the command line:

    from keras_optnotes import data
    from keras_optnotes.commands.compare import run_comparison

    runs = run_comparison(data.load("digits"), {"Adam": 0.01, "Momentum": 0.1})
    print(runs[0].history["val_accuracy"], runs[0].steady_ms_per_step())
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from keras_optnotes.cli import UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_output_arguments,
    add_seed_argument,
    op_determinism,
    positive_int,
)
from keras_optnotes.data import DatasetUnavailableError, Split
from keras_optnotes.report import (
    markdown_table,
    new_figure,
    output_folder,
    print_report,
    write_report,
)

NAME = "compare"
HELP = (
    "Train the same small network from the same initial weights with each of the "
    "notes' update rules and compare their loss curves."
)

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

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32
DEFAULT_OUT = "optnotes-report"
# --quick: a smoke run of a few steps (tests, first try after installing).
QUICK_EPOCHS = 2
QUICK_MAX_SAMPLES = 256
QUICK_OPTIMIZERS = ("GradientDescent", "Adam")

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


def _rules() -> tuple[str, ...]:
    # The table above lists every rule of `keras_optnotes.optimizers.list_rules()` in
    # the same order (a test checks it); reading it here keeps checking the command
    # line free of importing TensorFlow.
    return tuple(DEFAULT_LEARNING_RATES)


def _rule_name(text: str, option: str) -> str:
    """The class name for `text` ("adam", "nesterov_momentum", "RMSprop", ...)."""
    rules = _rules()
    by_key = {rule.lower(): rule for rule in rules}
    key = text.strip().replace("_", "").replace("-", "").lower()
    if key not in by_key:
        raise UsageError(
            f"{option}: unknown optimizer {text.strip()!r}; accepted: "
            f"{', '.join(rules)} (any case, or snake_case such as nesterov_momentum)"
        )
    return by_key[key]


def parse_optimizers(text: str | None, quick: bool = False) -> tuple[str, ...]:
    """The rules named by `--optimizers` ("all" or a comma-separated list)."""
    if text is None:
        return QUICK_OPTIMIZERS if quick else _rules()
    if text.strip().lower() == "all":
        return _rules()
    names = [part for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(
            f"--optimizers: received {text!r}; accepted: all, or a comma-separated "
            f"list of {', '.join(_rules())}"
        )
    return tuple(dict.fromkeys(_rule_name(name, "--optimizers") for name in names))


def parse_learning_rates(items: Sequence[str] | None) -> dict[str, float]:
    """`--learning-rate NAME=VALUE` overrides, keyed by class name."""
    overrides: dict[str, float] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(
                f"--learning-rate {item!r}: expected NAME=VALUE, e.g. adam=0.003"
            )
        rule = _rule_name(name, "--learning-rate")
        try:
            rate = float(value)
        except ValueError:
            rate = math.nan
        if not (math.isfinite(rate) and rate > 0):
            raise UsageError(
                f"--learning-rate {item!r}: the value must be a finite number > 0"
            )
        overrides[rule] = rate
    return overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `keras-optnotes compare` to `parser`."""
    add_dataset_argument(parser)
    parser.add_argument(
        "--optimizers",
        default=None,
        metavar="all|NAME,...",
        help="'all' (default) or a comma-separated list of update rules",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"epochs per optimizer (default: {DEFAULT_EPOCHS}; --quick: "
        f"{QUICK_EPOCHS})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="B",
        help=f"batch size (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--learning-rate",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="override one rule's learning rate; repeat for several",
    )
    parser.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="XLA-compile each optimizer's update (default: --jit)",
    )
    add_seed_argument(parser, "the weights, the split and the batch order")
    add_output_arguments(
        parser,
        DEFAULT_OUT,
        f"{QUICK_MAX_SAMPLES} training samples, {QUICK_EPOCHS} epochs, "
        f"{' and '.join(QUICK_OPTIMIZERS)} unless given",
    )


@dataclass
class Run:
    """One optimizer's training run.

    Attributes:
        optimizer: the rule's class name.
        learning_rate: the learning rate it used.
        history: Keras' `History.history` (`loss`, `accuracy`, `val_loss`,
            `val_accuracy`, one value per epoch).
        ms_per_step: wall time per training step in each epoch, in milliseconds,
            from the first step's start to the last step's end (validation
            excluded); epoch 1 includes tracing and compiling the train step.
        steps_per_epoch: training steps in one epoch.
    """

    optimizer: str
    learning_rate: float
    history: dict[str, list[float]]
    ms_per_step: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0

    def steady_ms_per_step(self) -> float | None:
        """Median ms per step over epochs 2+, `None` after a single epoch."""
        steady = self.ms_per_step[1:]
        return statistics.median(steady) if steady else None

    def table_row(self) -> list:
        """The row of `TABLE_COLUMNS` for this run."""
        val_loss = self.history["val_loss"]
        finite = [i for i, v in enumerate(val_loss) if math.isfinite(v)]
        best_epoch = min(finite, key=val_loss.__getitem__) + 1 if finite else None
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
            best_epoch,
            self.steady_ms_per_step(),
            first_epoch_s,
        ]


def _step_timer(run: Run):
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
            steps = max(self._steps, 1)
            run.steps_per_epoch = steps
            run.ms_per_step.append(1000.0 * (self._end - self._start) / steps)

    return StepTimer()


def run_comparison(
    split: Split,
    learning_rates: Mapping[str, float],
    *,
    epochs: int = DEFAULT_EPOCHS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    jit_compile: bool = True,
    verbose: int | str = "auto",
) -> list[Run]:
    """Trains one copy of `build_classifier` per rule, all from the same weights.

    The network is built once with `seed` and every optimizer starts from a copy of
    its weights; before each `fit` the global seed is reset to `seed`, so every
    optimizer sees the batches in the same order. TensorFlow's op determinism is
    switched on for the run (and back off after it, if it was off), so the same
    arguments give the same numbers on the same machine. The global random seed is
    left set to `seed`.

    Args:
        split: the data.
        learning_rates: rule name (as in `keras_optnotes.optimizers.get`) to its
            learning rate, in the order the rules should run.
        epochs: epochs per rule.
        batch_size: batch size.
        seed: seed of the initial weights and the batch order.
        jit_compile: the optimizers' `jit_compile`.
        verbose: passed to `model.fit` (Keras' progress bar).

    Returns:
        One `Run` per rule, in order.
    """
    with op_determinism():
        return _train_each(
            split, learning_rates, epochs, batch_size, seed, jit_compile, verbose
        )


def _train_each(split, learning_rates, epochs, batch_size, seed, jit_compile, verbose):
    import keras

    from keras_optnotes import optimizers
    from keras_optnotes.models import build_classifier

    keras.utils.set_random_seed(seed)
    base = build_classifier(split.input_shape, split.num_classes, seed=seed)
    initial_weights = base.get_weights()
    runs = []
    for index, (rule, learning_rate) in enumerate(learning_rates.items(), start=1):
        if verbose:
            print(
                f"[{index}/{len(learning_rates)}] {rule} "
                f"(learning_rate={learning_rate:g})",
                flush=True,
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
        run = Run(rule, float(learning_rate), {})
        keras.utils.set_random_seed(seed)
        history = model.fit(
            split.x_train,
            split.y_train,
            batch_size=batch_size,
            epochs=epochs,
            validation_data=(split.x_val, split.y_val),
            callbacks=[_step_timer(run)],
            verbose=verbose,
        )
        run.history = {
            key: [float(v) for v in values] for key, values in history.history.items()
        }
        runs.append(run)
    return runs


def history_rows(runs: Sequence[Run]) -> list[list]:
    """One row of `HISTORY_COLUMNS` per optimizer and epoch."""
    rows = []
    for run in runs:
        for epoch, ms in enumerate(run.ms_per_step):
            rows.append(
                [run.optimizer, run.learning_rate, epoch + 1]
                + [run.history[key][epoch] for key in HISTORY_COLUMNS[3:7]]
                + [ms]
            )
    return rows


def plot_losses(runs: Sequence[Run], path: Path, title: str) -> None:
    """Train and validation loss per epoch, one line per optimizer, saved to `path`."""
    figure = new_figure(figsize=(10, 4.2), layout="constrained")
    train_axes, val_axes = figure.subplots(1, 2, sharey=True)
    for run in runs:
        epochs = range(1, len(run.history["loss"]) + 1)
        label = f"{run.optimizer} (η={run.learning_rate:g})"
        train_axes.plot(epochs, run.history["loss"], marker=".", label=label)
        val_axes.plot(epochs, run.history["val_loss"], marker=".", label=label)
    for axes, what in ((train_axes, "training"), (val_axes, "validation")):
        axes.set_title(f"{what} loss")
        axes.set_xlabel("epoch")
        axes.set_yscale("log")
        axes.grid(True, which="both", alpha=0.3)
    train_axes.set_ylabel("cross-entropy loss (log scale)")
    val_axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes compare` with parsed arguments; returns the exit status."""
    rules = parse_optimizers(args.optimizers, quick=args.quick)
    overrides = parse_learning_rates(args.learning_rate)
    learning_rates = {
        rule: overrides.get(rule, DEFAULT_LEARNING_RATES[rule]) for rule in rules
    }
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)

    from keras_optnotes import data

    with output_folder(args.out) as staging:
        try:
            split = data.load(
                args.dataset,
                seed=args.seed,
                max_samples=QUICK_MAX_SAMPLES if args.quick else None,
            )
        except (ImportError, DatasetUnavailableError) as error:
            raise UsageError(f"--dataset {args.dataset}: {error}") from error
        title = (
            f"{split.name}: {len(split.x_train)} training samples, batch "
            f"{args.batch_size}, seed {args.seed}, jit_compile={args.jit}"
        )
        runs = run_comparison(
            split,
            learning_rates,
            epochs=epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            jit_compile=args.jit,
        )
        table = markdown_table(TABLE_COLUMNS, [r.table_row() for r in runs])
        summary = f"{title}, {epochs} epochs."
        written = write_report(
            staging,
            NAME,
            summary=summary,
            table=table,
            columns=HISTORY_COLUMNS,
            rows=history_rows(runs),
            plot=lambda path: plot_losses(runs, path, title),
        )
    print_report(args.out, summary, table, written)
    return 0
