"""`keras-optnotes regularize`: what each of the notes' regularizers does to the gap.

The experiment, and why it is designed as it is, is
`keras_optnotes.experiments.regularize.run_ablation`: the same network trained from
the same initial weights on the same small training subset (20 % of its labels
wrong), once with no regularization and once with each technique alone, every model
scored on clean data in inference mode. This command parses the options, runs it,
prints the table and writes `regularize.md`, `regularize.csv` and `regularize.png`
(both gaps per technique) into `--out`.

Python use, without the command line:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.experiments.regularize import VALIDATION_FRACTION, run_ablation
>>> split = data.load("digits", validation_fraction=VALIDATION_FRACTION)
>>> ablation = run_ablation(split, ["none", "dropout"], epochs=20)
>>> none = ablation.get("none")
>>> none.val_accuracy, none.accuracy_gap, none.loss_gap
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from keras_optnotes._usage import UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_output_arguments,
    add_seed_argument,
    fraction,
    load_dataset,
    positive_int,
)
from keras_optnotes.experiments.regularize import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LABEL_NOISE,
    DEFAULT_TRAIN_SIZE,
    TABLE_COLUMNS,
    TECHNIQUE_NAMES,
    TECHNIQUES,
    VALIDATION_FRACTION,
    Ablation,
    run_ablation,
)
from keras_optnotes.report import (
    finish_figure,
    markdown_table,
    output_folder,
    panels,
    print_report,
    write_report,
)

NAME = "regularize"
HELP = (
    "Train the same network with no regularization and with each of the notes' "
    "regularizers alone, and compare their generalization gaps."
)

DEFAULT_OUT = "optnotes-report"
QUICK_EPOCHS = 2
QUICK_TRAIN_SIZE = 64
# --quick without --techniques: one technique of each code path (a callback, a
# penalty, a layer, a data pipeline), since every run pays its own compilation.
QUICK_TECHNIQUES = ("none", "early_stopping", "l2_penalty", "dropout", "mixup")
_BY_NAME = {t.name: t for t in TECHNIQUES}


def parse_techniques(text: str | None, images: bool = True) -> tuple[str, ...]:
    """The techniques named by `--techniques` ("all" or a comma-separated list).

    With `images=False` (samples that are not (H, W, C) images) "all" leaves out the
    image-only techniques (augmentation, MixUp, CutMix) and naming one is an error.
    """
    if text is None or text.strip().lower() == "all":
        return tuple(t.name for t in TECHNIQUES if images or not t.images_only)
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise UsageError(
            f"--techniques: received {text!r}; accepted: all, or a comma-separated "
            f"list of {', '.join(TECHNIQUE_NAMES)}"
        )
    for name in names:
        if name not in _BY_NAME:
            raise UsageError(
                f"--techniques: unknown technique {name!r}; accepted: all, or a "
                f"comma-separated list of {', '.join(TECHNIQUE_NAMES)}"
            )
        if _BY_NAME[name].images_only and not images:
            raise UsageError(
                f"--techniques: {name} needs image samples (H, W, C); this dataset's "
                "samples are not images"
            )
    return tuple(dict.fromkeys(names))


def plot_gaps(
    ablation: Ablation,
    path: str | os.PathLike | None = None,
    *,
    axes: Any = None,
    title: str | None = None,
):
    """Bar charts of the loss gap and the error gap per technique, baseline in grey.

    Args:
        ablation: `run_ablation`'s result.
        path: where to write the figure as a PNG; nothing is written when `None`.
        axes: two matplotlib `Axes` (loss gap, error gap); a new figure when `None`.
        title: the figure's title, if any.

    Returns:
        The matplotlib `Figure` (the axes' figure when `axes` are given).
    """
    results = ablation.runs
    figure, panels_row = panels(
        axes, 2, figsize=(10, 0.42 * len(results) + 1.6), sharey=True
    )
    names = [r.technique for r in results]
    colors = ["0.55" if r.technique == "none" else "tab:blue" for r in results]
    for panel, gaps, label, fmt in (
        (
            panels_row[0],
            [r.loss_gap for r in results],
            "loss gap: validation - train cross-entropy",
            "{:.3f}",
        ),
        (
            panels_row[1],
            [100.0 * r.accuracy_gap for r in results],
            "error gap: train - validation accuracy (points)",
            "{:.1f}",
        ),
    ):
        panel.barh(names, gaps, color=colors)
        panel.axvline(0.0, color="black", linewidth=0.8)
        for row, gap in enumerate(gaps):
            panel.annotate(
                " " + fmt.format(gap),
                (max(gap, 0.0), row),
                va="center",
                fontsize="small",
            )
        panel.set_xlabel(label)
        panel.grid(True, axis="x", alpha=0.3)
        panel.margins(x=0.15)
    panels_row[0].invert_yaxis()
    return finish_figure(figure, path, title)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `keras-optnotes regularize` to `parser`."""
    add_dataset_argument(parser)
    parser.add_argument(
        "--techniques",
        default=None,
        metavar="all|NAME,...",
        help=f"'all' (default) or a comma-separated list of: "
        f"{', '.join(TECHNIQUE_NAMES)}",
    )
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"epochs per run (default: {DEFAULT_EPOCHS}; --quick: {QUICK_EPOCHS})",
    )
    parser.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"training samples used, few enough to overfit (default: "
        f"{DEFAULT_TRAIN_SIZE}; --quick: {QUICK_TRAIN_SIZE})",
    )
    parser.add_argument(
        "--label-noise",
        type=fraction,
        default=DEFAULT_LABEL_NOISE,
        metavar="F",
        help="share of the training labels replaced by a wrong class, the noise "
        f"there is to overfit; 0 for clean labels (default: {DEFAULT_LABEL_NOISE})",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=DEFAULT_BATCH_SIZE,
        metavar="B",
        help=f"batch size (default: {DEFAULT_BATCH_SIZE})",
    )
    add_seed_argument(parser, "the weights, the split, the noise and the batch order")
    add_output_arguments(
        parser,
        DEFAULT_OUT,
        f"{QUICK_TRAIN_SIZE} training samples, {QUICK_EPOCHS} epochs, techniques "
        f"{','.join(QUICK_TECHNIQUES)} unless --techniques is given",
    )


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes regularize` with parsed arguments; returns exit status."""
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else DEFAULT_EPOCHS)
    train_size = args.train_size or (
        QUICK_TRAIN_SIZE if args.quick else DEFAULT_TRAIN_SIZE
    )
    parse_techniques(args.techniques)  # unknown names fail before any work
    with output_folder(args.out) as staging:
        split = load_dataset(
            args.dataset, validation_fraction=VALIDATION_FRACTION, seed=args.seed
        )
        images = len(split.input_shape) == 3
        techniques = parse_techniques(args.techniques, images=images)
        if args.quick and args.techniques is None:
            techniques = tuple(t for t in QUICK_TECHNIQUES if t in techniques)
        ablation = run_ablation(
            split,
            techniques,
            epochs=epochs,
            train_size=train_size,
            batch_size=args.batch_size,
            label_noise=args.label_noise,
            seed=args.seed,
            progress=lambda line: print(line, flush=True),
        )
        title = (
            f"{ablation.dataset}: {ablation.train_samples} training samples "
            f"({ablation.label_noise:.0%} of their labels wrong) and "
            f"{ablation.val_samples} validation samples, {ablation.epochs} epochs, "
            f"batch {ablation.batch_size}, seed {ablation.seed}"
        )
        rows = ablation.table_rows()
        table = markdown_table(TABLE_COLUMNS, rows)
        summary = f"{title}."
        written = write_report(
            staging,
            NAME,
            summary=summary,
            table=table,
            columns=TABLE_COLUMNS,
            rows=rows,
            plot=lambda path: plot_gaps(ablation, path, title=title),
        )
    print_report(args.out, summary, table, written)
    return 0
