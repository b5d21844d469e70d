"""`keras-optnotes critical-batch`: how large a batch, measured as the field measures it.

The experiment, and why it is designed as it is, is
`keras_optnotes.experiments.critical_batch.run_critical_batch`: for each batch size,
the steps plain gradient descent needs to bring the training-set cross-entropy to a
target, with the learning rate tuned per batch size for the fewest steps; the fit of
McCandlish et al.'s S = S_min (1 + B_crit / B); and the gradient noise scale B_simple
measured where the runs reached the target. This command parses the options, runs
it, prints the table and writes `critical_batch.json`, `critical_batch.md`,
`critical_batch.csv` (one row per report run) and `critical_batch.png` into `--out`.

Python use, without the command line:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.experiments.critical_batch import run_critical_batch
>>> result = run_critical_batch(data.load("digits"), batch_sizes=(8, 64, 512))
>>> result.fit.critical_batch_size, result.noise_scale()
"""

from __future__ import annotations

import argparse
import json

from keras_optnotes._usage import UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_output_arguments,
    load_dataset,
    positive_float,
    positive_int,
)
from keras_optnotes.experiments.critical_batch import (
    DEFAULT_BATCH_SIZES,
    DEFAULT_LEARNING_RATES,
    DEFAULT_MAX_STEPS,
    DEFAULT_NOISE_MEASUREMENTS,
    DEFAULT_SEEDS,
    DEFAULT_TARGET_LOSS,
    DEFAULT_TUNING_SEEDS,
    TABLE_COLUMNS,
    CriticalBatchExperiment,
    plot_critical_batch,
    run_critical_batch,
)
from keras_optnotes.report import (
    markdown_table,
    output_folder,
    print_report,
    write_report,
)

NAME = "critical-batch"
HELP = (
    "Steps to a target training loss against the batch size (learning rate tuned per "
    "batch size), the fitted critical batch size and the gradient noise scale."
)

DEFAULT_OUT = "optnotes-report"
FILE_STEM = "critical_batch"
QUICK = {
    "batch_sizes": (8, 64, 512),
    "learning_rates": (0.2, 0.8),
    "target_loss": 0.5,
    "seeds": 2,
    "tuning_seeds": 1,
    "max_steps": 500,
    "noise_measurements": 2,
}
RUN_COLUMNS = (
    "batch_size",
    "learning_rate",
    "seed",
    "steps_to_target",
    "examples_to_target",
    "outcome",
    "final_train_loss",
    "gradient_noise_scale",
)


def _numbers(convert, accepted: str):
    def parse(text: str) -> tuple:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        try:
            values = tuple(convert(part) for part in parts)
        except argparse.ArgumentTypeError:
            values = ()
        if not values:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {accepted}, received {text!r}"
            )
        return values

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `keras-optnotes critical-batch` to `parser`."""
    add_dataset_argument(parser)
    parser.add_argument(
        "--batch-sizes",
        type=_numbers(positive_int, "positive integers"),
        default=None,
        metavar="B,...",
        help="batch sizes, at least two (default: "
        f"{','.join(map(str, DEFAULT_BATCH_SIZES))})",
    )
    parser.add_argument(
        "--learning-rates",
        type=_numbers(positive_float, "numbers > 0"),
        default=None,
        metavar="LR,...",
        help="the grid every batch size is tuned on (default: "
        f"{','.join(f'{r:g}' for r in DEFAULT_LEARNING_RATES)})",
    )
    parser.add_argument(
        "--target-loss",
        type=positive_float,
        default=None,
        metavar="L",
        help="training-set cross-entropy to reach (default: "
        f"{DEFAULT_TARGET_LOSS}; --quick: {QUICK['target_loss']})",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"report seeds (default: {DEFAULT_SEEDS}; --quick: {QUICK['seeds']})",
    )
    parser.add_argument(
        "--tuning-seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="seeds the learning rate is chosen on, disjoint from the report seeds "
        f"(default: {DEFAULT_TUNING_SEEDS}; --quick: {QUICK['tuning_seeds']})",
    )
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"step budget of one run (default: {DEFAULT_MAX_STEPS}; --quick: "
        f"{QUICK['max_steps']})",
    )
    add_output_arguments(
        parser,
        DEFAULT_OUT,
        f"batch sizes {','.join(map(str, QUICK['batch_sizes']))}, learning rates "
        f"{','.join(map(str, QUICK['learning_rates']))}, target loss "
        f"{QUICK['target_loss']}, {QUICK['seeds']} seeds (options given still apply)",
    )


def settings(args: argparse.Namespace) -> dict:
    """The keyword arguments of `run_critical_batch` that the options ask for."""
    defaults = (
        QUICK
        if args.quick
        else {
            "batch_sizes": DEFAULT_BATCH_SIZES,
            "learning_rates": DEFAULT_LEARNING_RATES,
            "target_loss": DEFAULT_TARGET_LOSS,
            "seeds": DEFAULT_SEEDS,
            "tuning_seeds": DEFAULT_TUNING_SEEDS,
            "max_steps": DEFAULT_MAX_STEPS,
            "noise_measurements": DEFAULT_NOISE_MEASUREMENTS,
        }
    )
    chosen = dict(defaults)
    for key in (
        "batch_sizes",
        "learning_rates",
        "target_loss",
        "seeds",
        "tuning_seeds",
        "max_steps",
    ):
        if getattr(args, key) is not None:
            chosen[key] = getattr(args, key)
    if len(set(chosen["batch_sizes"])) < 2:
        raise UsageError(
            f"--batch-sizes: received {','.join(map(str, chosen['batch_sizes']))}; "
            "accepted: at least two distinct batch sizes"
        )
    return chosen


def summary_line(result: CriticalBatchExperiment) -> str:
    """One paragraph: the settings, B_crit and B_simple."""
    sizes = [b.batch_size for b in result.batches]
    text = (
        f"{result.dataset} ({result.train_samples} training samples): steps of plain "
        f"SGD until the training-set cross-entropy is <= {result.target_loss}, batch "
        f"sizes {sizes[0]}..{sizes[-1]}, learning rate tuned per batch size for the "
        f"fewest mean steps on seeds {list(result.tuning_seeds)}, reported on seeds "
        f"{list(result.seeds)}; {result.seconds:.0f} s."
    )
    if result.fit is not None:
        spread = result.critical_batch_interval()
        text += (
            f" Fit S = S_min (1 + B_crit/B) (least squares in log space): S_min = "
            f"{result.fit.min_steps:.1f}, E_min = {result.fit.min_examples:.0f}, "
            f"B_crit = {result.fit.critical_batch_size:.1f}"
            + (
                ""
                if spread is None or spread.count < 2
                else f" (per-seed fits: mean [95% CI] {spread.format(digits=1)})"
            )
            + "."
        )
    noise = result.noise_scale()
    if noise is not None:
        text += f" B_simple at the target, mean [95% CI]: {noise.format(digits=1)}."
    return text


def run_rows(result: CriticalBatchExperiment) -> list[list]:
    """One row of `RUN_COLUMNS` per report run."""
    return [
        [
            run.batch_size,
            run.learning_rate,
            run.seed,
            run.steps,
            run.examples,
            run.outcome,
            run.final_loss,
            None if run.noise is None else run.noise.noise_scale,
        ]
        for batch in result.batches
        for run in batch.runs
    ]


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes critical-batch` with parsed arguments; returns status."""
    chosen = settings(args)
    with output_folder(args.out) as staging:
        split = load_dataset(args.dataset)
        if max(chosen["batch_sizes"]) > len(split.x_train):
            raise UsageError(
                f"--batch-sizes: {max(chosen['batch_sizes'])} exceeds the "
                f"{len(split.x_train)} training samples of {args.dataset}"
            )
        result = run_critical_batch(
            split, **chosen, progress=lambda line: print(line, flush=True)
        )
        summary = summary_line(result)
        table = markdown_table(TABLE_COLUMNS, result.table_rows())
        (staging / f"{FILE_STEM}.json").write_text(
            json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8"
        )
        written = [
            f"{FILE_STEM}.json",
            *write_report(
                staging,
                NAME,
                summary=summary,
                table=table,
                columns=RUN_COLUMNS,
                rows=run_rows(result),
                plot=lambda path: plot_critical_batch(result, path),
                stem=FILE_STEM,
            ),
        ]
    print_report(args.out, summary, table, written)
    return 0
