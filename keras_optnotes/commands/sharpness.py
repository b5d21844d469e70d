"""`keras-optnotes sharpness`: small- against large-batch minima, and the remedies,
each tuned, over seeds.

The experiment is `keras_optnotes.experiments.sharpness.run_sharpness_study` on the
protocol of `keras_optnotes.experiments.protocol` (three disjoint splits, every
run's learning rate chosen on validation over tuning seeds, fresh report seeds,
95 % t-intervals, differences paired by seed). This command parses the options,
runs it, prints the table and writes into `--out`:

- `sharpness.json`: the protocol and, per run, its config, its grid and validation
  scores, its per-seed measurements, their means with 95 % intervals and the paired
  differences against the large batch (and against SAM for its cheaper modes);
- `sharpness.md` and `sharpness.csv`: the summary table; `sharpness_per_seed.csv`:
  every seed's measurements;
- `sharpness.png`: test accuracy with its interval beside λ_max, the Hessian's trace
  and Keskar's sharpness; `sharpness_differences.png`: the paired differences;
- when both `small` and `large` ran, `interpolation.csv` and `interpolation.png`
  (the loss on the line between the first seed's two solutions, Keskar's Figure 3).

Python use, without the command line:

    from keras_optnotes import data
    from keras_optnotes.experiments.sharpness import run_sharpness_study

    study = run_sharpness_study(data.load("digits"), seeds=8, verbose=1)
    print(study.difference("sam", "test_accuracy").format(100))
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from keras_optnotes._usage import PROG, UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_edge_extensions_argument,
    add_output_arguments,
    checked_number,
    edge_extensions,
    load_dataset,
    positive_float,
    positive_int,
)
from keras_optnotes.experiments.sharpness import (
    CHEAP_SAM_RUNS,
    DEFAULT_BUDGET,
    DEFAULT_EPSILON,
    DEFAULT_LARGE_BATCH,
    DEFAULT_MEASURE_SAMPLES,
    DEFAULT_SEEDS,
    DEFAULT_SLICE_SIZE,
    DEFAULT_SMALL_BATCH,
    DEFAULT_TRACE_SAMPLES,
    DEFAULT_TUNING_SEEDS,
    PER_SEED_COLUMNS,
    RUNS,
    SAM_RHOS,
    STUDY_COLUMNS,
    STUDY_RUNS,
    SharpnessStudy,
    run_sharpness_study,
    sam_supports_interval,
)
from keras_optnotes.report import (
    finish_figure,
    markdown_table,
    output_folder,
    panels,
    print_report,
    write_csv,
    write_json,
)

NAME = "sharpness"
HELP = (
    "Train one network with a small and a large batch, and with the large batch under "
    "SAM (m-sharpness), ASAM, LARS, SWA and Lookahead, each tuned on validation, over "
    "seeds; report test accuracy with 95%% intervals, paired differences and the "
    "sharpness of each minimum."
)

DEFAULT_OUT = "optnotes-report"
QUICK_MAX_SAMPLES = 256
QUICK_BUDGET = ("epochs", 2)
QUICK_TUNING_SEEDS = 1
QUICK_MEASURE_SAMPLES = 64
QUICK_TRACE_SAMPLES = 2
QUICK_LARGE_BATCH = 128  # 4 SAM slices of 32: a quick run traces SAM's step faster
INTERPOLATION_COLUMNS = ("alpha", "train_loss", "test_loss")


def available_runs() -> tuple[str, ...]:
    """`STUDY_RUNS`, or `RUNS` when this package's SAM has no `interval`."""
    return STUDY_RUNS if sam_supports_interval() else RUNS


def parse_runs(text: str | None) -> tuple[str, ...]:
    """The runs named by `--runs` ("all" or a comma-separated list)."""
    accepted = available_runs()
    if text is None or text.strip().lower() == "all":
        return accepted
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in accepted]
    if unknown or not names:
        raise UsageError(
            f"--runs {text!r}: "
            + (f"unknown run {unknown[0]!r}" if unknown else "no run named")
            + f"; accepted: all, or a comma-separated list of {', '.join(accepted)}"
        )
    if "large" not in names:
        raise UsageError(
            f"--runs {text!r}: must include large (the baseline of the differences)"
        )
    if any(name in CHEAP_SAM_RUNS for name in names) and "sam" not in names:
        raise UsageError(
            f"--runs {text!r}: sam_interval and looksam take SAM's chosen setting; "
            "add sam"
        )
    return tuple(name for name in accepted if name in names)


def _at_least(minimum: int):
    def parse(text: str) -> int:
        return checked_number(
            text, int, lambda v: v >= minimum, f"an integer >= {minimum}"
        )

    return parse


def _slice_size(text: str) -> int:
    return checked_number(text, int, lambda v: 1 <= v <= 32, "an integer in [1, 32]")


def _rhos(text: str) -> tuple[float, ...]:
    return tuple(positive_float(part) for part in text.split(",") if part.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `keras-optnotes sharpness` to `parser`."""
    add_dataset_argument(parser)
    parser.add_argument(
        "--runs",
        default=None,
        metavar="all|NAME,...",
        help="'all' (default) or a comma-separated list of " + ", ".join(STUDY_RUNS),
    )
    parser.add_argument(
        "--seeds",
        type=_at_least(2),
        default=None,
        metavar="N",
        help=f"report seeds 0..N-1 (default: {DEFAULT_SEEDS}; --quick: 3)",
    )
    parser.add_argument(
        "--tuning-seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help="seeds of the learning-rate search, 1000..999+N (default: "
        f"{DEFAULT_TUNING_SEEDS}; --quick: {QUICK_TUNING_SEEDS})",
    )
    parser.add_argument(
        "--budget",
        choices=("epochs", "steps"),
        default=None,
        help="equal epochs for every run (fewer steps for the large batch) or equal "
        f"optimizer steps (default: {DEFAULT_BUDGET[0]})",
    )
    parser.add_argument(
        "--length",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"epochs or steps of the budget (default: {DEFAULT_BUDGET[1]} epochs, or "
        f"1000 steps; --quick: {QUICK_BUDGET[1]} epochs)",
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
        default=None,
        metavar="B",
        help=f"the large batch size (default: {DEFAULT_LARGE_BATCH}; --quick: "
        f"{QUICK_LARGE_BATCH})",
    )
    parser.add_argument(
        "--slice-size",
        type=_slice_size,
        default=DEFAULT_SLICE_SIZE,
        metavar="M",
        help="samples per m-sharpness slice of SAM and ASAM, at most 32 (default: "
        f"{DEFAULT_SLICE_SIZE})",
    )
    parser.add_argument(
        "--grid-size",
        type=_at_least(3),
        default=3,
        metavar="K",
        help="learning rates per grid, log-spaced by sqrt(10) (default: 3)",
    )
    add_edge_extensions_argument(parser)
    parser.add_argument(
        "--sam-rhos",
        type=_rhos,
        default=SAM_RHOS,
        metavar="ρ,...",
        help="SAM's rho grid (default: " + ",".join(f"{r:g}" for r in SAM_RHOS) + ")",
    )
    parser.add_argument(
        "--epsilon",
        type=positive_float,
        default=DEFAULT_EPSILON,
        metavar="ε",
        help=f"box size of Keskar's sharpness (default: {DEFAULT_EPSILON})",
    )
    parser.add_argument(
        "--keskar",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure Keskar's sharpness (an L-BFGS-B maximization per solution; "
        "default: --keskar)",
    )
    parser.add_argument(
        "--measure-samples",
        type=positive_int,
        default=None,
        metavar="N",
        help="training samples the curvature measurements use (default: "
        f"{DEFAULT_MEASURE_SAMPLES}; --quick: {QUICK_MEASURE_SAMPLES})",
    )
    parser.add_argument(
        "--trace-samples",
        type=_at_least(2),
        default=None,
        metavar="M",
        help="Rademacher vectors for the Hessian trace (default: "
        f"{DEFAULT_TRACE_SAMPLES}; --quick: {QUICK_TRACE_SAMPLES})",
    )
    parser.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="XLA-compile the train step and the optimizer, and on a GPU or TPU the "
        "Hessian-vector products (default: --jit; --quick on TensorFlow and JAX: "
        "--no-jit, as XLA's compilation of each fresh model costs more than a few "
        "steps save)",
    )
    parser.add_argument(
        "--verbose",
        type=int,
        choices=(0, 1),
        default=1,
        help="1: one line per training run (default); 0: only the report",
    )
    parser.add_argument(
        "--partial",
        default=None,
        metavar="FILE",
        help="also write each run's results to FILE (JSON) as soon as the run is "
        "complete, for long runs (default: none)",
    )
    add_output_arguments(
        parser,
        DEFAULT_OUT,
        f"{QUICK_MAX_SAMPLES} samples, {QUICK_BUDGET[1]} epochs, 3 seeds, "
        f"{QUICK_TUNING_SEEDS} tuning seed, large batch {QUICK_LARGE_BATCH}, fewer "
        "measurement samples",
    )


def plot_summary(
    study: SharpnessStudy,
    path: str | os.PathLike | None = None,
    *,
    axes: Any = None,
    title: str | None = None,
):
    """Test accuracy with its 95 % interval beside λ_max, the trace and Keskar's
    sharpness (each a mean over seeds with its interval), one point per run.

    Args:
        study: `run_sharpness_study`'s result.
        path: where to write the figure as a PNG; nothing is written when `None`.
        axes: one matplotlib `Axes` per panel (3, or 4 when Keskar's sharpness was
            measured); a new figure when `None`.
        title: the figure's title, if any.

    Returns:
        The matplotlib `Figure` (the axes' figure when `axes` are given).
    """
    metrics = [
        ("test_accuracy", "test accuracy (%)", 100.0),
        ("lambda_max", "Hessian λ_max", 1.0),
        ("hessian_trace", "Hessian trace", 1.0),
    ]
    if study.settings.keskar:
        metrics.append(("keskar_sharpness", "Keskar sharpness (%)", 1.0))
    figure, axes_row = panels(axes, len(metrics), figsize=(13, 4.2))
    names = list(study.runs)
    for panel, (metric, label, scale) in zip(axes_row, metrics):
        for position, name in enumerate(names):
            interval = study.interval(name, metric)
            if interval is None:
                continue
            color = "tab:blue" if name == "small" else "tab:orange"
            values = [v * scale for v in study.protocol.get(name).per_seed[metric]]
            panel.scatter(
                [position] * len(values), values, s=8, color=color, alpha=0.35
            )
            low, high = interval.low, interval.high
            error = (
                None
                if low != low
                else [[(interval.mean - low) * scale], [(high - interval.mean) * scale]]
            )
            panel.errorbar(
                position, interval.mean * scale, yerr=error, fmt="o", color=color,
                capsize=4,
            )  # fmt: skip
        panel.set_xticks(range(len(names)), names, rotation=40, ha="right")
        panel.set_title(label)
        panel.grid(True, axis="y", alpha=0.3)
    axes_row[0].set_ylabel("mean over seeds, 95 % t-interval (dots: seeds)")
    return finish_figure(figure, path, title)


def plot_differences(
    study: SharpnessStudy,
    path: str | os.PathLike | None = None,
    *,
    axes: Any = None,
    title: str | None = None,
):
    """Each run's test accuracy and loss minus the large batch's, paired by seed
    (cheaper SAM modes: minus SAM's), mean and 95 % interval; green where the
    interval excludes 0.

    Args:
        study: `run_sharpness_study`'s result.
        path: where to write the figure as a PNG; nothing is written when `None`.
        axes: two matplotlib `Axes` (accuracy, loss); a new figure when `None`.
        title: the figure's title, if any.

    Returns:
        The matplotlib `Figure` (the axes' figure when `axes` are given).
    """
    figure, axes_row = panels(axes, 2, figsize=(11, 4.2))
    names = [name for name in study.runs if name != "large"]
    for panel, (metric, label, scale) in zip(
        axes_row,
        [("test_accuracy", "Δ test accuracy (points)", 100.0),
         ("test_loss", "Δ test loss", 1.0)],
    ):  # fmt: skip
        labels = []
        for position, name in enumerate(names):
            baseline = study.baseline_of(name)
            labels.append(f"{name} − {baseline}")
            interval = study.difference(name, metric, baseline)
            if interval is None:
                continue
            color = "tab:green" if interval.significant else "tab:gray"
            panel.errorbar(
                position,
                interval.mean * scale,
                yerr=[[(interval.mean - interval.low) * scale],
                      [(interval.high - interval.mean) * scale]],
                fmt="o", color=color, capsize=4,
            )  # fmt: skip
        panel.axhline(0.0, color="black", linewidth=0.8)
        panel.set_xticks(range(len(names)), labels, rotation=40, ha="right")
        panel.set_title(label)
        panel.grid(True, axis="y", alpha=0.3)
    axes_row[0].set_ylabel("paired by seed: mean, 95 % t-interval")
    return finish_figure(
        figure, path, title and f"{title} (green: interval excludes 0)"
    )


def plot_interpolation(
    study: SharpnessStudy,
    path: str | os.PathLike | None = None,
    *,
    ax: Any = None,
    title: str | None = None,
):
    """The loss along (1 − α) θ_small + α θ_large on training and test data.

    Args:
        study: `run_sharpness_study`'s result (with `small` and `large` runs).
        path: where to write the figure as a PNG; nothing is written when `None`.
        ax: a matplotlib `Axes` to draw into; a new figure when `None`.
        title: the axes' title, if any.

    Returns:
        The matplotlib `Figure` (`ax.figure` when `ax` is given).
    """
    import numpy as np

    from keras_optnotes.diagnostics import LossLine, plot_loss_lines

    alphas = np.asarray(study.alphas)
    return plot_loss_lines(
        {
            "training subset": LossLine(alphas, np.asarray(study.train_line)),
            "test": LossLine(alphas, np.asarray(study.test_line)),
        },
        path,
        ax=ax,
        xlabel="α  (0: small-batch solution, 1: large-batch solution)",
        title=title,
    )


def summary_text(study: SharpnessStudy, dataset: str) -> str:
    """The paragraph above the table: data, protocol, budget, verdicts."""
    result = study.protocol
    sizes = result.split_sizes
    lines = [
        f"{dataset}: {sizes['train']} training, {sizes['validation']} validation, "
        f"{sizes['test']} test samples (the test split is used only for this "
        f"report). Budget: {result.budget.describe()}. Each run's learning rate "
        f"(SAM's rho too) chosen by mean validation accuracy over tuning seeds "
        f"{list(result.seeds.tuning)}; reported on seeds {list(result.seeds.report)}: "
        "mean and 95 % t-interval; Δ: paired by seed, against large (cheaper SAM "
        f"modes: against sam). Wall-clock time: {study.seconds:.0f} s.",
        "",
        "Significant at 95 % (the paired interval of Δ test accuracy excludes 0): "
        + _verdicts(study, significant=True),
        "Not significant: " + _verdicts(study, significant=False),
    ]
    return "\n".join(lines)


def _verdicts(study: SharpnessStudy, significant: bool) -> str:
    parts = []
    for name in study.runs:
        if name == "large":
            continue
        baseline = study.baseline_of(name)
        interval = study.difference(name, "test_accuracy", baseline)
        if interval is None or interval.significant != significant:
            continue
        parts.append(f"{name} − {baseline} {interval.format(100)} points")
    return "; ".join(parts) or "none"


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes sharpness` with parsed arguments; returns the exit status."""
    runs = parse_runs(args.runs)
    if args.large_batch is None:
        args.large_batch = QUICK_LARGE_BATCH if args.quick else DEFAULT_LARGE_BATCH
    if args.large_batch <= args.small_batch:
        raise UsageError(
            f"--large-batch {args.large_batch}: must be larger than --small-batch "
            f"({args.small_batch})"
        )
    if args.length is not None and args.budget is None:
        args.budget = DEFAULT_BUDGET[0]
    if args.budget is None:
        budget = QUICK_BUDGET if args.quick else DEFAULT_BUDGET
    else:
        default_length = (
            QUICK_BUDGET[1] if args.quick else {"epochs": DEFAULT_BUDGET[1]}.get(
                args.budget, 1000
            )
        )  # fmt: skip
        budget = (args.budget, args.length or default_length)
    seeds = args.seeds or (3 if args.quick else DEFAULT_SEEDS)
    tuning_seeds = args.tuning_seeds or (
        QUICK_TUNING_SEEDS if args.quick else DEFAULT_TUNING_SEEDS
    )
    measure_samples = args.measure_samples or (
        QUICK_MEASURE_SAMPLES if args.quick else DEFAULT_MEASURE_SAMPLES
    )
    trace_samples = args.trace_samples or (
        QUICK_TRACE_SAMPLES if args.quick else DEFAULT_TRACE_SAMPLES
    )
    if args.jit is None:
        import keras

        args.jit = not (args.quick and keras.backend.backend() in ("tensorflow", "jax"))
    if not args.sam_rhos:
        raise UsageError("--sam-rhos: expected a comma-separated list of numbers > 0")
    with output_folder(args.out) as staging:
        split = load_dataset(
            args.dataset, max_samples=QUICK_MAX_SAMPLES if args.quick else None
        )
        study = run_sharpness_study(
            split,
            runs=runs,
            seeds=seeds,
            tuning_seeds=tuning_seeds,
            budget=budget,
            small_batch=args.small_batch,
            large_batch=args.large_batch,
            slice_size=args.slice_size,
            grid_size=args.grid_size,
            edge_extensions=edge_extensions(args),
            sam_rhos=args.sam_rhos,
            measure_samples=measure_samples,
            trace_samples=trace_samples,
            keskar=args.keskar,
            epsilon=args.epsilon,
            jit_compile=args.jit,
            verbose=args.verbose,
            on_run=None if args.partial is None else _partial_writer(args.partial),
        )
        written = write_study(study, staging, split.name)
    summary = summary_text(study, split.name)
    print_report(args.out, summary, markdown_table(STUDY_COLUMNS, study.table_rows()),
                 written)  # fmt: skip
    return 0


def write_study(study: SharpnessStudy, folder: Path, dataset: str) -> list[str]:
    """Writes the JSON, tables and figures of `study` into `folder`."""
    summary = summary_text(study, dataset)
    table = markdown_table(STUDY_COLUMNS, study.table_rows())
    per_seed = study.per_seed_rows()
    write_json(folder / "sharpness.json", study.to_dict())
    (folder / "sharpness.md").write_text(
        f"# {PROG} {NAME}\n\n{summary}\n\n{table}\n\n## Per seed\n\n"
        + markdown_table(PER_SEED_COLUMNS, per_seed),
        encoding="utf-8",
    )
    write_csv(folder / "sharpness.csv", STUDY_COLUMNS, study.table_rows())
    write_csv(folder / "sharpness_per_seed.csv", PER_SEED_COLUMNS, per_seed)
    written = ["sharpness.json", "sharpness.md", "sharpness.csv",
               "sharpness_per_seed.csv"]  # fmt: skip
    title = (
        f"{dataset}: {study.protocol.budget.describe()}, "
        f"{len(study.protocol.seeds.report)} seeds"
    )
    plots = [
        ("sharpness.png", plot_summary),
        ("sharpness_differences.png", plot_differences),
    ]
    if study.alphas:
        write_csv(
            folder / "interpolation.csv",
            INTERPOLATION_COLUMNS,
            list(zip(study.alphas, study.train_line, study.test_line)),
        )
        written.append("interpolation.csv")
        plots.append(("interpolation.png", plot_interpolation))
    for name, plot in plots:
        try:
            plot(study, folder / name, title=title)
            written.append(name)
        except ImportError as error:
            print(f"{PROG} {NAME}: plot skipped: {error}", file=sys.stderr)
            break
    return written


def _partial_writer(path: str):
    """Rewrites `path` with every run completed so far (config, grid search,
    per-seed values)."""
    done = {}

    def write(arm) -> None:
        done[arm.name] = {
            "config": dict(arm.config),
            "search": arm.search.to_dict(),
            "seeds": list(arm.seeds),
            "per_seed": {k: list(v) for k, v in arm.per_seed.items()},
        }
        write_json(path, done)

    return write
