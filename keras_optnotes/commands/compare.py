"""`keras-optnotes compare`: the notes' update rules ranked on one network and one
dataset, over seeds.

By default the experiment is `keras_optnotes.experiments.compare.rank_rules`, on the
protocol of `keras_optnotes.experiments.protocol`: each rule's learning rate is
chosen on a validation split (a grid of 3 around its own scale, mean validation
accuracy over tuning seeds), then every rule trains on `--seeds` fresh seeds and is
measured on a held-out test split. This command writes `compare.json` (protocol,
per-seed values, means with 95 % t-intervals, differences against the first-ranked
rule paired by seed), `compare.md` (the ranking table), `compare.csv` (per seed) and
`compare.png` (the ranking with its intervals) into `--out`.

`--curves` runs the older single-seed race instead
(`keras_optnotes.experiments.compare.run_comparison`: every rule from the same
initial weights at its default or `--learning-rate` rate, per-epoch loss curves and
time per step): a look at the curves, not evidence for a ranking.

Python use, without the command line:

    from keras_optnotes import data
    from keras_optnotes.experiments.compare import rank_rules

    ranking = rank_rules(data.load("digits"), ["Adam", "Momentum"], seeds=8)
    print(ranking.ranked(), ranking.difference("Momentum", "test_accuracy"))
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Sequence
from typing import Any

from keras_optnotes._usage import UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_edge_extensions_argument,
    add_output_arguments,
    add_seed_argument,
    checked_number,
    edge_extensions,
    load_dataset,
    positive_int,
)
from keras_optnotes.experiments.compare import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATES,
    DEFAULT_SEEDS,
    DEFAULT_TUNING_SEEDS,
    HISTORY_COLUMNS,
    RANKING_COLUMNS,
    RANKING_SEED_COLUMNS,
    RULES,
    TABLE_COLUMNS,
    Comparison,
    Ranking,
    rank_rules,
    rule_name,
    run_comparison,
)
from keras_optnotes.report import (
    finish_figure,
    markdown_table,
    output_folder,
    panels,
    print_report,
    write_json,
    write_report,
)

NAME = "compare"
HELP = (
    "Rank the notes' update rules on one small network: each rule's learning rate "
    "chosen on validation, then test loss and accuracy over seeds with 95%% "
    "intervals (--curves: the single-seed loss curves)."
)

DEFAULT_OUT = "optnotes-report"
# --quick: a smoke run of a few steps (tests, first try after installing).
QUICK_EPOCHS = 2
QUICK_MAX_SAMPLES = 256
QUICK_OPTIMIZERS = ("GradientDescent", "Adam")
QUICK_SEEDS = 2
QUICK_TUNING_SEEDS = 1


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
    parser.add_argument(
        "--seeds",
        type=_at_least_two,
        default=None,
        metavar="N",
        help=f"report seeds 0..N-1 of the ranking (default: {DEFAULT_SEEDS}; "
        f"--quick: {QUICK_SEEDS})",
    )
    parser.add_argument(
        "--tuning-seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="seeds of each rule's learning-rate search (default: "
        f"{DEFAULT_TUNING_SEEDS}; --quick: {QUICK_TUNING_SEEDS})",
    )
    add_edge_extensions_argument(parser)
    parser.add_argument(
        "--curves",
        action="store_true",
        help="the single-seed race instead: loss curves at each rule's default or "
        "--learning-rate rate (--seed)",
    )
    add_seed_argument(parser, "the weights, the split and the batch order of --curves")
    add_output_arguments(
        parser,
        DEFAULT_OUT,
        f"{QUICK_MAX_SAMPLES} training samples, {QUICK_EPOCHS} epochs, "
        f"{' and '.join(QUICK_OPTIMIZERS)} unless given",
    )


def _at_least_two(text: str) -> int:
    return checked_number(text, int, lambda v: v >= 2, "an integer >= 2")


def plot_ranking(
    ranking: Ranking,
    path: str | os.PathLike | None = None,
    *,
    axes: Any = None,
    title: str | None = None,
):
    """Each rule's test accuracy and loss, mean and 95 % t-interval, dots per seed,
    best-ranked first.

    Args:
        ranking: `rank_rules`' result.
        path: where to write the figure as a PNG; nothing is written when `None`.
        axes: two matplotlib `Axes` (accuracy, loss); a new figure when `None`.
        title: the figure's title, if any.

    Returns:
        The matplotlib `Figure` (the axes' figure when `axes` are given).
    """
    figure, axes_row = panels(axes, 2, figsize=(11, 4.2))
    names = ranking.ranked()
    for panel, (metric, label, scale) in zip(
        axes_row,
        [
            ("test_accuracy", "test accuracy (%)", 100.0),
            ("test_loss", "test loss", 1.0),
        ],
    ):
        for position, rule in enumerate(names):
            values = [
                v * scale
                for v in ranking.protocol.get(rule).per_seed[metric]
                if math.isfinite(v)
            ]
            panel.scatter([position] * len(values), values, s=8, alpha=0.35)
            interval = ranking.interval(rule, metric)
            if interval is None or interval.low != interval.low:
                continue
            panel.errorbar(
                position,
                interval.mean * scale,
                yerr=[[(interval.mean - interval.low) * scale],
                      [(interval.high - interval.mean) * scale]],
                fmt="o", color="black", capsize=4,
            )  # fmt: skip
        panel.set_xticks(range(len(names)), names, rotation=30, ha="right")
        panel.set_title(label)
        panel.grid(True, axis="y", alpha=0.3)
    axes_row[0].set_ylabel("mean over seeds, 95 % t-interval (dots: seeds)")
    return finish_figure(figure, path, title)


def plot_losses(
    comparison: Comparison,
    path: str | os.PathLike | None = None,
    *,
    axes: Any = None,
    title: str | None = None,
):
    """Train and validation loss per epoch, one line per optimizer.

    Args:
        comparison: `run_comparison`'s result (`compare --curves`).
        path: where to write the figure as a PNG; nothing is written when `None`.
        axes: two matplotlib `Axes` (training, validation); a new figure when `None`.
        title: the figure's title, if any.

    Returns:
        The matplotlib `Figure` (the axes' figure when `axes` are given).
    """
    figure, (train_axes, val_axes) = panels(axes, 2, figsize=(10, 4.2), sharey=True)
    for run in comparison.runs:
        epochs = range(1, len(run.history["loss"]) + 1)
        label = f"{run.optimizer} (η={run.learning_rate:g})"
        train_axes.plot(epochs, run.history["loss"], marker=".", label=label)
        val_axes.plot(epochs, run.history["val_loss"], marker=".", label=label)
    for panel, what in ((train_axes, "training"), (val_axes, "validation")):
        panel.set_title(f"{what} loss")
        panel.set_xlabel("epoch")
        panel.set_yscale("log")
        panel.grid(True, which="both", alpha=0.3)
    train_axes.set_ylabel("cross-entropy loss (log scale)")
    val_axes.legend(fontsize="small")
    return finish_figure(figure, path, title)


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes compare` with parsed arguments; returns the exit status."""
    if args.curves:
        return run_curves(args)
    if args.learning_rate:
        raise UsageError(
            "--learning-rate: only with --curves (the ranking chooses each rule's "
            "learning rate on validation)"
        )
    rules = parse_optimizers(args.optimizers, quick=args.quick)
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    seeds = args.seeds or (QUICK_SEEDS if args.quick else DEFAULT_SEEDS)
    tuning_seeds = args.tuning_seeds or (
        QUICK_TUNING_SEEDS if args.quick else DEFAULT_TUNING_SEEDS
    )
    with output_folder(args.out) as staging:
        split = load_dataset(
            args.dataset, max_samples=QUICK_MAX_SAMPLES if args.quick else None
        )
        ranking = rank_rules(
            split,
            rules,
            seeds=seeds,
            tuning_seeds=tuning_seeds,
            edge_extensions=edge_extensions(args),
            epochs=epochs,
            batch_size=args.batch_size,
            jit_compile=args.jit,
            verbose=1,
        )
        sizes = ranking.protocol.split_sizes
        title = (
            f"{split.name}: batch {ranking.batch_size}, {epochs} epochs, {seeds} seeds"
        )
        summary = (
            f"{split.name}: {sizes['train']} training, {sizes['validation']} "
            f"validation, {sizes['test']} test samples (the test split is used only "
            f"for this report); batch {ranking.batch_size}, {epochs} epochs per "
            "run. Each rule's learning rate chosen by mean validation accuracy over "
            f"tuning seeds {list(ranking.protocol.seeds.tuning)} on a grid of 3 "
            "log-spaced values around its default; reported on seeds "
            f"{list(ranking.protocol.seeds.report)}: mean and 95 % t-interval; Δ: "
            "paired by seed against the first-ranked rule. Wall-clock time: "
            f"{ranking.seconds:.0f} s."
        )
        table = markdown_table(RANKING_COLUMNS, ranking.table_rows())
        write_json(staging / "compare.json", ranking.to_dict())
        written = [
            "compare.json",
            *write_report(
                staging,
                NAME,
                summary=summary,
                table=table,
                columns=RANKING_SEED_COLUMNS,
                rows=ranking.per_seed_rows(),
                plot=lambda path: plot_ranking(ranking, path, title=title),
            ),
        ]
    print_report(args.out, summary, table, written)
    return 0


def run_curves(args: argparse.Namespace) -> int:
    """`keras-optnotes compare --curves`: the single-seed race of loss curves."""
    rules = parse_optimizers(args.optimizers, quick=args.quick)
    overrides = parse_learning_rates(args.learning_rate)
    learning_rates = {
        rule: overrides.get(rule, DEFAULT_LEARNING_RATES[rule]) for rule in rules
    }
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)

    with output_folder(args.out) as staging:
        split = load_dataset(
            args.dataset,
            seed=args.seed,
            max_samples=QUICK_MAX_SAMPLES if args.quick else None,
        )
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
            plot=lambda path: plot_losses(comparison, path, title=title),
        )
    print_report(args.out, summary, table, written)
    return 0
