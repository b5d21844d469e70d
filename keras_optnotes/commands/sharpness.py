"""`keras-optnotes sharpness`: small-batch against large-batch minima, and the remedies.

The experiment is `keras_optnotes.experiments.sharpness.compare_batch_sizes` (its
docstring describes the runs, their stopping rule and the measurements). This command
parses the options, runs it, prints the table and writes into `--out`:
`sharpness.md` (the table), `sharpness.csv` (the same numbers), `remedies.png` (the
generalization gap and λ_max of every run) and, when both `small` and `large` ran,
`interpolation.csv` and `interpolation.png` (the loss on the line between them,
Keskar's Figure 3).

Python use, without the command line:

    from keras_optnotes import data
    from keras_optnotes.experiments.sharpness import compare_batch_sizes

    result = compare_batch_sizes(data.load("digits"), runs=("small", "large", "sam"))
    print(result.get("sam").lambda_max, result.get("large").loss_gap)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_optnotes._usage import PROG, UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_output_arguments,
    add_seed_argument,
    checked_number,
    positive_float,
    positive_int,
)
from keras_optnotes.data import DatasetUnavailableError
from keras_optnotes.experiments.sharpness import (
    DEFAULT_EPOCHS,
    DEFAULT_EPSILON,
    DEFAULT_LARGE_BATCH,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MEASURE_SAMPLES,
    DEFAULT_SMALL_BATCH,
    DEFAULT_TRACE_SAMPLES,
    INTERPOLATION_COLUMNS,
    RUNS,
    TABLE_COLUMNS,
    BatchSizeComparison,
    compare_batch_sizes,
)
from keras_optnotes.report import (
    markdown_table,
    new_figure,
    output_folder,
    print_report,
    write_csv,
)

NAME = "sharpness"
HELP = (
    "Train one network with a small and a large batch, and with the large batch under "
    "SAM, ASAM, LARS, SWA and Lookahead; compare the minima: generalization gap, "
    "Hessian λ_max and trace, Keskar sharpness, the loss between small and large."
)

DEFAULT_OUT = "optnotes-report"
QUICK_MAX_SAMPLES = 256
QUICK_EPOCHS = 2
QUICK_MEASURE_SAMPLES = 128
QUICK_TRACE_SAMPLES = 4


def parse_runs(text: str | None) -> tuple[str, ...]:
    """The runs named by `--runs` ("all" or a comma-separated list of `RUNS`)."""
    if text is None or text.strip().lower() == "all":
        return RUNS
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in RUNS]
    if unknown or not names:
        raise UsageError(
            f"--runs {text!r}: "
            + (f"unknown run {unknown[0]!r}" if unknown else "no run named")
            + f"; accepted: all, or a comma-separated list of {', '.join(RUNS)}"
        )
    return tuple(name for name in RUNS if name in names)


def _trace_samples(text: str) -> int:
    return checked_number(text, int, lambda v: v >= 2, "an integer >= 2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `keras-optnotes sharpness` to `parser`."""
    add_dataset_argument(parser)
    parser.add_argument(
        "--runs",
        default=None,
        metavar="all|NAME,...",
        help="'all' (default) or a comma-separated list of " + ", ".join(RUNS),
    )
    parser.add_argument(
        "--small-batch",
        type=positive_int,
        default=DEFAULT_SMALL_BATCH,
        metavar="B",
        help=f"the small batch size (default: {DEFAULT_SMALL_BATCH})",
    )
    parser.add_argument(
        "--large-batch",
        type=positive_int,
        default=DEFAULT_LARGE_BATCH,
        metavar="B",
        help=f"the large batch size (default: {DEFAULT_LARGE_BATCH})",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"epochs of the small-batch run (default: {DEFAULT_EPOCHS}; --quick: "
        f"{QUICK_EPOCHS})",
    )
    parser.add_argument(
        "--large-epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help="at most this many epochs of the large-batch run, which stops once its "
        "training loss reaches the small-batch one (default: 10 x --epochs); the "
        "remedies train as many epochs as it did",
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=DEFAULT_LEARNING_RATE,
        metavar="η",
        help="Adam's learning rate, and LARS' before the linear scaling (default: "
        f"{DEFAULT_LEARNING_RATE})",
    )
    parser.add_argument(
        "--epsilon",
        type=positive_float,
        default=DEFAULT_EPSILON,
        metavar="ε",
        help=f"box size of Keskar's sharpness (default: {DEFAULT_EPSILON})",
    )
    parser.add_argument(
        "--subspace-dim",
        type=positive_int,
        default=None,
        metavar="P",
        help="measure Keskar's sharpness in a random P-dimensional subspace "
        "(default: the full space)",
    )
    parser.add_argument(
        "--measure-samples",
        type=positive_int,
        default=None,
        metavar="N",
        help="training samples the measurements use (default: "
        f"{DEFAULT_MEASURE_SAMPLES}; --quick: {QUICK_MEASURE_SAMPLES})",
    )
    parser.add_argument(
        "--trace-samples",
        type=_trace_samples,
        default=None,
        metavar="M",
        help="Rademacher vectors for the Hessian trace (default: "
        f"{DEFAULT_TRACE_SAMPLES}; --quick: {QUICK_TRACE_SAMPLES})",
    )
    parser.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="XLA-compile the train step and the optimizer, and on a GPU or TPU the "
        "Hessian-vector products (default: --jit)",
    )
    add_seed_argument(parser, "the weights, the split, the batch order and the draws")
    add_output_arguments(
        parser,
        DEFAULT_OUT,
        f"{QUICK_MAX_SAMPLES} training samples, {QUICK_EPOCHS} epochs, "
        "fewer measurement samples",
    )


def plot_interpolation(result: BatchSizeComparison, path: Path, title: str) -> None:
    """The loss along (1 − α) θ_small + α θ_large on training and validation data."""
    import numpy as np

    from keras_optnotes.diagnostics import LossLine, plot_loss_lines

    alphas = np.asarray(result.alphas)
    plot_loss_lines(
        {
            "training subset": LossLine(alphas, np.asarray(result.train_line)),
            "validation": LossLine(alphas, np.asarray(result.val_line)),
        },
        path,
        xlabel="α  (0: small-batch solution, 1: large-batch solution)",
        title=title,
    )


def plot_remedies(result: BatchSizeComparison, path: Path, title: str) -> None:
    """Bars of each run's generalization gap and λ_max, saved to `path`."""
    figure = new_figure(figsize=(10, 4.2), layout="constrained")
    gap_axes, lambda_axes = figure.subplots(1, 2)
    names = [run.name for run in result.runs]
    positions = range(len(names))
    colors = [
        "tab:blue" if run.batch_size == result.small_batch else "tab:orange"
        for run in result.runs
    ]
    for axes, values, what in (
        (gap_axes, [run.loss_gap for run in result.runs], "validation - training loss"),
        (lambda_axes, [run.lambda_max for run in result.runs], "Hessian λ_max"),
    ):
        axes.bar(positions, values, color=colors)
        axes.set_xticks(list(positions), names, rotation=30)
        axes.set_ylabel(what)
        axes.set_title(what)
        axes.grid(True, axis="y", alpha=0.3)
    gap_axes.set_xlabel(
        f"run (blue: batch {result.small_batch}, orange: batch {result.large_batch})"
    )
    lambda_axes.set_xlabel("run")
    figure.suptitle(title)
    figure.savefig(path, dpi=110)


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes sharpness` with parsed arguments; returns the exit status."""
    runs = parse_runs(args.runs)
    if args.large_batch <= args.small_batch:
        raise UsageError(
            f"--large-batch {args.large_batch}: must be larger than --small-batch "
            f"({args.small_batch})"
        )
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    measure_samples = args.measure_samples or (
        QUICK_MEASURE_SAMPLES if args.quick else DEFAULT_MEASURE_SAMPLES
    )
    trace_samples = args.trace_samples or (
        QUICK_TRACE_SAMPLES if args.quick else DEFAULT_TRACE_SAMPLES
    )
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
        result = compare_batch_sizes(
            split,
            runs=runs,
            small_batch=args.small_batch,
            large_batch=args.large_batch,
            epochs=epochs,
            large_epochs=args.large_epochs,
            learning_rate=args.learning_rate,
            epsilon=args.epsilon,
            subspace_dim=args.subspace_dim,
            measure_samples=measure_samples,
            trace_samples=trace_samples,
            seed=args.seed,
            jit_compile=args.jit,
            progress=lambda line: print(line, flush=True),
        )
        title = (
            f"{split.name}: {len(split.x_train)} training samples, "
            f"η={args.learning_rate:g}, seed {args.seed}"
        )
        where = (
            "full space"
            if args.subspace_dim is None
            else f"{args.subspace_dim}-dim random subspace"
        )
        table = markdown_table(TABLE_COLUMNS, result.table_rows())
        summary = (
            f"{title}. Measured on the first {result.measure_samples} training "
            f"samples with training=False. Keskar sharpness: ε={args.epsilon:g}, "
            f"{where}, L-BFGS-B (10 iterations), in percent. λ_max by power "
            f"iteration; trace by Hutchinson ({trace_samples} Rademacher vectors). "
            "The remedies train with the large batch for as many epochs as the "
            "large run took to reach the small batch's training loss."
        )
        (staging / "sharpness.md").write_text(
            f"# {PROG} {NAME}\n\n{summary}\n\n{table}", encoding="utf-8"
        )
        write_csv(staging / "sharpness.csv", TABLE_COLUMNS, result.table_rows())
        written = ["sharpness.md", "sharpness.csv"]
        plots = [("remedies.png", plot_remedies)]
        if result.alphas:
            write_csv(
                staging / "interpolation.csv",
                INTERPOLATION_COLUMNS,
                result.interpolation_rows(),
            )
            written.append("interpolation.csv")
            plots.insert(0, ("interpolation.png", plot_interpolation))
        for name, plot in plots:
            try:
                plot(result, staging / name, title)
                written.append(name)
            except ImportError as error:
                print(f"{PROG} {NAME}: plot skipped: {error}", file=sys.stderr)
                break
    print_report(args.out, summary, table, written)
    return 0
