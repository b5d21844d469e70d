"""`keras-optnotes compare`: the notes' update rules racing on one network and one dataset.

The experiment is `keras_optnotes.experiments.compare.run_comparison`: every optimizer
trains a copy of the same small network from the same initial weights, on the same
data, in the same batch order. This command parses the options, runs it, prints a
table and writes `compare.md` (the table), `compare.csv` (the per-epoch history) and
`compare.png` (train and validation loss curves) into `--out`.

Python use, without the command line:

    from keras_optnotes import data
    from keras_optnotes.experiments.compare import run_comparison

    comparison = run_comparison(data.load("digits"), {"Adam": 0.01, "Momentum": 0.1})
    adam = comparison.get("Adam")
    print(adam.history["val_accuracy"], adam.steady_ms_per_step())
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

from keras_optnotes._usage import UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_output_arguments,
    add_seed_argument,
    positive_int,
)
from keras_optnotes.experiments.compare import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATES,
    HISTORY_COLUMNS,
    RULES,
    TABLE_COLUMNS,
    Comparison,
    rule_name,
    run_comparison,
)
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

DEFAULT_OUT = "optnotes-report"
# --quick: a smoke run of a few steps (tests, first try after installing).
QUICK_EPOCHS = 2
QUICK_MAX_SAMPLES = 256
QUICK_OPTIMIZERS = ("GradientDescent", "Adam")


def _rule_name(text: str, option: str) -> str:
    """The class name for `text` ("adam", "nesterov_momentum", "RMSprop", ...)."""
    try:
        return rule_name(text)
    except ValueError:
        raise UsageError(
            f"{option}: unknown optimizer {text.strip()!r}; accepted: "
            f"{', '.join(RULES)} (any case, or snake_case such as nesterov_momentum)"
        ) from None


def parse_optimizers(text: str | None, quick: bool = False) -> tuple[str, ...]:
    """The rules named by `--optimizers` ("all" or a comma-separated list)."""
    if text is None:
        return QUICK_OPTIMIZERS if quick else RULES
    if text.strip().lower() == "all":
        return RULES
    names = [part for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(
            f"--optimizers: received {text!r}; accepted: all, or a comma-separated "
            f"list of {', '.join(RULES)}"
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


def plot_losses(comparison: Comparison, path: Path, title: str) -> None:
    """Train and validation loss per epoch, one line per optimizer, saved to `path`."""
    figure = new_figure(figsize=(10, 4.2), layout="constrained")
    train_axes, val_axes = figure.subplots(1, 2, sharey=True)
    for run in comparison.runs:
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
        except (ImportError, data.DatasetUnavailableError) as error:
            raise UsageError(f"--dataset {args.dataset}: {error}") from error
        comparison = run_comparison(
            split,
            learning_rates,
            epochs=epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            jit_compile=args.jit,
            verbose="auto",
            progress=lambda line: print(line, flush=True),
        )
        title = (
            f"{comparison.dataset}: {comparison.train_samples} training samples, "
            f"batch {comparison.batch_size}, seed {comparison.seed}, "
            f"jit_compile={comparison.jit_compile}"
        )
        table = markdown_table(TABLE_COLUMNS, comparison.table_rows())
        summary = f"{title}, {comparison.epochs} epochs."
        written = write_report(
            staging,
            NAME,
            summary=summary,
            table=table,
            columns=HISTORY_COLUMNS,
            rows=comparison.history_rows(),
            plot=lambda path: plot_losses(comparison, path, title),
        )
    print_report(args.out, summary, table, written)
    return 0
