"""`keras-optnotes sharpness`: small-batch against large-batch solutions (Keskar et al.).

The same network (`keras_optnotes.models.build_classifier`) is trained twice from the
same initial weights with the same optimizer, once with a small batch for `--epochs`
epochs and once with a large batch until its training loss is as low as the
small-batch one (at most `--large-epochs` epochs): as in Keskar et al., the two
minima are compared at the same training loss, not after the same number of steps.
For each solution the command measures, on a fixed subset of the
training set and with `training=False`: the Hessian's top eigenvalue λ_max, its trace
(Hutchinson, with standard error) and Keskar's ε-sharpness; then it evaluates the
loss along the line f((1 − α) θ_small + α θ_large) on that subset and on the validation
set (Keskar's Figure 3). It writes `sharpness.md` (the table), `sharpness.csv` (the
same numbers), `interpolation.csv` and `interpolation.png` into `--out`.

Python use:

>>> from keras_optnotes import data  # doctest: +SKIP
>>> from keras_optnotes.commands.sharpness import compare_batch_sizes
>>> result = compare_batch_sizes(data.load("digits"), epochs=5)
>>> result.rows
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from keras_optnotes.cli import PROG, UsageError
from keras_optnotes.commands._common import (
    add_dataset_argument,
    add_output_arguments,
    add_seed_argument,
    checked_number,
    positive_float,
    positive_int,
)
from keras_optnotes.data import DatasetUnavailableError, Split
from keras_optnotes.report import markdown_table, output_folder, write_csv

NAME = "sharpness"
HELP = (
    "Train one network with a small and a large batch and compare the two minima: "
    "Hessian λ_max and trace, Keskar sharpness, and the loss on the line between them."
)

DEFAULT_SMALL_BATCH = 16
DEFAULT_LARGE_BATCH = 512
DEFAULT_EPOCHS = 30
DEFAULT_LEARNING_RATE = 0.003
DEFAULT_EPSILON = 1e-3
DEFAULT_MEASURE_SAMPLES = 512
DEFAULT_TRACE_SAMPLES = 20
DEFAULT_OUT = "optnotes-report"
QUICK_MAX_SAMPLES = 256
QUICK_EPOCHS = 2
QUICK_MEASURE_SAMPLES = 128
QUICK_TRACE_SAMPLES = 4
ALPHAS = tuple(-1.0 + 0.1 * i for i in range(31))  # −1 … 2, as in Keskar's Figure 3

TABLE_COLUMNS = (
    "solution",
    "batch size",
    "epochs",
    "train loss",
    "train accuracy",
    "val loss",
    "val accuracy",
    "λ_max",
    "λ_max converged",
    "Hessian trace",
    "trace std. error",
    "Keskar sharpness",
)


@dataclass(frozen=True)
class BatchSizeComparison:
    """What `compare_batch_sizes` measured.

    Attributes:
        rows: one row of `TABLE_COLUMNS` per solution (small batch, then large).
        alphas: the positions α of the interpolation.
        train_line: loss on the measurement subset at each α.
        val_line: loss on the validation set at each α.
        epsilon: the ε of Keskar's sharpness.
    """

    rows: tuple[tuple, ...]
    alphas: tuple[float, ...]
    train_line: tuple[float, ...]
    val_line: tuple[float, ...]
    epsilon: float


def _stop_at_loss(target: float):
    import keras

    class StopAtLoss(keras.callbacks.Callback):
        """Stops `fit` at the end of the first epoch whose training loss ≤ target."""

        def on_epoch_end(self, epoch, logs=None):
            if logs and logs.get("loss", float("inf")) <= target:
                self.model.stop_training = True

    return StopAtLoss()


def compare_batch_sizes(
    split: Split,
    *,
    small_batch: int = DEFAULT_SMALL_BATCH,
    large_batch: int = DEFAULT_LARGE_BATCH,
    epochs: int = DEFAULT_EPOCHS,
    large_epochs: int | None = None,
    learning_rate: float = DEFAULT_LEARNING_RATE,
    epsilon: float = DEFAULT_EPSILON,
    subspace_dim: int | None = None,
    measure_samples: int = DEFAULT_MEASURE_SAMPLES,
    trace_samples: int = DEFAULT_TRACE_SAMPLES,
    seed: int = 0,
    jit_compile: bool = True,
    verbose: int | str = 0,
) -> BatchSizeComparison:
    """Trains the small-batch and large-batch solutions and measures both.

    Both start from the weights of `build_classifier(..., seed=seed)` and use
    `keras_optnotes.optimizers.Adam(learning_rate)`, with the global seed reset to
    `seed` before each `fit`. The small batch trains for `epochs` epochs; the large
    batch until its epoch's training loss is at most the small batch's final one,
    for at most `large_epochs` epochs (default 10 · `epochs`). `jit_compile=False` turns XLA off
    for the train step and the optimizer, and keeps it off the Hessian-vector
    products, which otherwise use it on a GPU or TPU (`HessianOperator`).

    Returns:
        A `BatchSizeComparison`.
    """
    import keras

    from keras_optnotes import diagnostics, optimizers
    from keras_optnotes.diagnostics._backend import check_backend
    from keras_optnotes.diagnostics.sharpness import _import_scipy_optimize
    from keras_optnotes.models import build_classifier

    # What the measurements need, checked before any training.
    check_backend("keras-optnotes sharpness's measurements")
    _import_scipy_optimize()
    # `--jit` is XLA: on PyTorch (no XLA) the train step runs eagerly, not through
    # torch.compile.
    compile_jit = jit_compile and keras.backend.backend() != "torch"
    subset = (split.x_train[:measure_samples], split.y_train[:measure_samples])
    keras.utils.set_random_seed(seed)
    base = build_classifier(split.input_shape, split.num_classes, seed=seed)
    solutions, epochs_used, target = [], [], None
    for batch_size, budget in ((small_batch, epochs), (large_batch, large_epochs)):
        model = keras.models.clone_model(base)
        model.set_weights(base.get_weights())
        model.compile(
            optimizer=optimizers.Adam(
                learning_rate=learning_rate, jit_compile=jit_compile
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
            jit_compile=compile_jit,
        )
        keras.utils.set_random_seed(seed)
        history = model.fit(
            split.x_train,
            split.y_train,
            batch_size=batch_size,
            epochs=budget or 10 * epochs,
            verbose=verbose,
            callbacks=[] if target is None else [_stop_at_loss(target)],
        )
        target = history.history["loss"][-1]
        epochs_used.append(len(history.history["loss"]))
        solutions.append(model)

    rows = []
    for label, batch_size, used, model in zip(
        ("small batch", "large batch"),
        (small_batch, large_batch),
        epochs_used,
        solutions,
    ):
        train = model.evaluate(*subset, verbose=0, return_dict=True)
        val = model.evaluate(split.x_val, split.y_val, verbose=0, return_dict=True)
        jit = None if jit_compile else False
        eigen = diagnostics.hessian_top_eigenvalues(
            model, subset, max_iterations=20, jit_compile=jit
        )
        trace = diagnostics.hessian_trace(
            model, subset, samples=trace_samples, jit_compile=jit
        )
        keskar = diagnostics.keskar_sharpness(
            model, subset, epsilon=epsilon, subspace_dim=subspace_dim, seed=seed
        )
        rows.append(
            (
                label,
                batch_size,
                used,
                train["loss"],
                train["accuracy"],
                val["loss"],
                val["accuracy"],
                eigen.top,
                eigen.converged,
                trace.trace,
                trace.standard_error,
                keskar.sharpness,
            )
        )
    small, large = solutions
    train_line = diagnostics.loss_along_line(
        small, subset, other_weights=large, alphas=ALPHAS
    )
    val_line = diagnostics.loss_along_line(
        small, (split.x_val, split.y_val), other_weights=large, alphas=ALPHAS
    )
    return BatchSizeComparison(
        rows=tuple(rows),
        alphas=ALPHAS,
        train_line=tuple(float(v) for v in train_line.losses),
        val_line=tuple(float(v) for v in val_line.losses),
        epsilon=float(epsilon),
    )


def _trace_samples(text: str) -> int:
    return checked_number(text, int, lambda v: v >= 2, "an integer >= 2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the options of `keras-optnotes sharpness` to `parser`."""
    add_dataset_argument(parser)
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
        "training loss reaches the small-batch one (default: 10 x --epochs)",
    )
    parser.add_argument(
        "--learning-rate",
        type=positive_float,
        default=DEFAULT_LEARNING_RATE,
        metavar="η",
        help=f"Adam's learning rate for both runs (default: {DEFAULT_LEARNING_RATE})",
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


def run(args: argparse.Namespace) -> int:
    """Runs `keras-optnotes sharpness` with parsed arguments; returns the exit status."""
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
        )
        title = (
            f"{split.name}: {len(split.x_train)} training samples, Adam "
            f"η={args.learning_rate:g}, seed {args.seed}"
        )
        where = (
            "full space"
            if args.subspace_dim is None
            else f"{args.subspace_dim}-dim random subspace"
        )
        table = markdown_table(TABLE_COLUMNS, result.rows)
        notes = (
            f"Measured on the first {min(measure_samples, len(split.x_train))} "
            f"training samples with training=False. Keskar sharpness: ε={args.epsilon:g}, "
            f"{where}, L-BFGS-B (10 iterations), in percent. λ_max by power "
            f"iteration; trace by Hutchinson ({trace_samples} Rademacher vectors)."
        )
        (staging / "sharpness.md").write_text(
            f"# keras-optnotes sharpness\n\n{title}.\n\n{table}\n{notes}\n",
            encoding="utf-8",
        )
        write_csv(staging / "sharpness.csv", TABLE_COLUMNS, result.rows)
        write_csv(
            staging / "interpolation.csv",
            ["alpha", "train_loss", "val_loss"],
            list(zip(result.alphas, result.train_line, result.val_line)),
        )
        written = ["sharpness.md", "sharpness.csv", "interpolation.csv"]
        try:
            plot_interpolation(result, staging / "interpolation.png", title)
            written.append("interpolation.png")
        except ImportError as error:
            print(f"{PROG} {NAME}: plot skipped: {error}", file=sys.stderr)
    print(f"\n{title}.\n\n{table}\n{notes}")
    out = Path(args.out)
    print("Wrote " + ", ".join(str(out / name) for name in written))
    return 0
