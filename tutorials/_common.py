"""What every numbered tutorial shares: its options, its output folder, its summary.

A tutorial is run as `python tutorials/NN_name.py [--quick] [--out DIR] [--seeds N]`
and follows one pattern:

    import _common

    OPTIONS = {"default_seeds": 5, "quick_seeds": 2}
    if __name__ == "__main__":  # bad options fail at once, before TensorFlow loads
        _common.parse_options(None, __file__, __doc__, **OPTIONS)
    _common.import_backend_quietly()  # TensorFlow's log lines stay off stderr

    import keras  # noqa: E402

    def main(argv=None) -> dict:
        args = _common.parse_options(argv, __file__, __doc__, **OPTIONS)
        with _common.output(args, "01 — the question") as (staging, summary):
            ...  # figures into `staging`, text and tables into `summary`
        return {...}  # the measured numbers, for tests/test_tutorials.py

    if __name__ == "__main__":
        main()

Bad options are handled as the `keras-optnotes` commands handle them: one line on
stderr, exit status 2, before any work is done (an unwritable `--out` included). The
summary is a Markdown file named after the script, written beside its figures, and
ends with the run's wall-clock time and the machine it ran on. `spread`, `mean_band`
and `binomial_interval` give the mean ± spread over seeds in the tables and the error
bars in the figures, the same way in every tutorial.

This module imports no deep-learning backend when it is imported (the package's
modules import Keras, so they are imported inside the functions that need them).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import platform
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

DEFAULT_OUT = "./optnotes-report/tutorials"
_dpi = 110  # of the PNGs `save` writes; `parse_options` lowers it for --quick


def positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 ("expected a positive integer, received ...")."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer, received {text!r}"
        )
    return value


def import_backend_quietly() -> None:
    """Imports Keras (and TensorFlow) with file descriptor 2 silenced.

    TensorFlow's C++ runtime writes log lines to stderr when it is imported and when it
    first lists its devices, whatever `TF_CPP_MIN_LOG_LEVEL` says; a tutorial's
    argument error must stay one line, as the commands' do.
    """
    from keras_optnotes.cli import native_stderr_silenced

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with native_stderr_silenced():
        import keras

        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            tf.config.list_physical_devices()


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):  # noqa: D401 - argparse's signature
        fail(self.prog, message)


def fail(prog: str, message: str):
    """Ends the program as the commands do: one line on stderr, exit status 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(2)


def parse_options(
    argv: Sequence[str] | None,
    script: str,
    doc: str | None,
    *,
    default_seeds: int,
    quick_seeds: int | None = None,
) -> argparse.Namespace:
    """The options every tutorial takes: `--quick`, `--out DIR`, `--seeds N`.

    Args:
        argv: the arguments (`None`: `sys.argv[1:]`).
        script: the tutorial's `__file__`; names the program in messages and the
            summary file.
        doc: the tutorial's module docstring; its first line is the `--help` text.
        default_seeds: seeds of the default run.
        quick_seeds: seeds of the `--quick` run (default: `default_seeds`).

    Returns:
        A namespace with `quick` (bool), `out` (str), `seeds` (int ≥ 1: the seeds
        are 0, 1, …, seeds − 1), `name` (the script's stem) and `prog`.

    Raises:
        SystemExit: with status 2 after one line on stderr, for a bad option.
    """
    prog = f"python tutorials/{Path(script).name}"
    parser = _OneLineParser(
        prog=prog,
        description=(doc or "").strip().splitlines()[0] if doc else None,
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run of seconds (for CI)"
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder for the figures and the summary (default: {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"number of seeds 0..N-1 (default: {default_seeds}; "
        f"{quick_seeds or default_seeds} with --quick)",
    )
    args = parser.parse_args(argv)
    if args.seeds is None:
        args.seeds = quick_seeds if (args.quick and quick_seeds) else default_seeds
    args.prog, args.name = prog, Path(script).stem
    global _dpi
    _dpi = 50 if args.quick else 110
    return args


class Summary:
    """The Markdown summary of one run, written beside its figures.

    Example:

    >>> summary = Summary("01 — batch size")
    >>> summary.text("Loss after 10 epochs:")
    >>> summary.table(["mode", "loss"], [["SGD", 0.25]])
    >>> summary.figure("01_loss.png", "loss against epochs")
    """

    def __init__(self, title: str):
        self.title = title
        self._parts: list[str] = []

    def text(self, paragraph: str) -> None:
        """A paragraph (or a heading: start it with `#`)."""
        self._parts.append(paragraph.strip() + "\n")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence]) -> None:
        """A Markdown table; floats to 4 significant digits."""
        from keras_optnotes.report import markdown_table

        self._parts.append(markdown_table(columns, rows))

    def figure(self, filename: str, caption: str) -> None:
        """An image written into the same folder as the summary."""
        self._parts.append(f"![{caption}]({filename})\n")

    def render(self, seconds: float | None = None) -> str:
        parts = [f"# {self.title}\n", *self._parts]
        if seconds is not None:
            parts.append(f"_{run_description(seconds)}_\n")
        return "\n".join(parts)


def run_description(seconds: float) -> str:
    """'Run in 42 s (61 s of CPU time) on 2 CPU cores (load average 3.1 …), …'.

    The CPU time (all threads of this process) does not grow when other jobs share
    the cores; the wall-clock time does, and the load average says by how much.
    """
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cores = cores or os.cpu_count()
    shared = (
        "the cores were shared with other jobs, so the wall-clock times are inflated"
        if load > cores
        else "the cores were not oversubscribed"
    )
    return (
        f"Run in {seconds:.0f} s ({time.process_time():.0f} s of CPU time) on "
        f"{cores} CPU cores; load average {load:.1f} at the end: {shared}. "
        f"Python {platform.python_version()}."
    )


@contextlib.contextmanager
def output(args: argparse.Namespace, title: str) -> Iterator[tuple[Path, Summary]]:
    """The tutorial's output folder, all or nothing, and its summary.

    Checks that `args.out` is (or can become) a writable folder before the block runs
    (one line on stderr and exit status 2 if not); the block writes its figures into
    the staging folder it is given and its text into the `Summary`; when it ends, the
    summary is written as `<script>.md` and every file moves into `args.out`. On an
    exception nothing is written.

    Args:
        args: the namespace of `parse_options`.
        title: the summary's heading.

    Yields:
        `(staging folder, Summary)`.
    """
    from keras_optnotes.cli import UsageError
    from keras_optnotes.report import output_folder

    name = args.name
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        try:
            staging = stack.enter_context(output_folder(args.out))
        except UsageError as error:
            fail(args.prog, str(error))
        summary = Summary(title)
        yield staging, summary
        (staging / f"{name}.md").write_text(
            summary.render(time.perf_counter() - start), encoding="utf-8"
        )
    print(f"Wrote {Path(args.out) / (name + '.md')} and its figures")


@dataclasses.dataclass(frozen=True)
class Spread:
    """The mean of a measurement over seeds and how far the seeds spread around it.

    Attributes:
        mean: the mean over seeds.
        std: the sample standard deviation (ddof = 1; 0 for one seed).
        low, high: the smallest and the largest value.
        n: the number of seeds.
    """

    mean: float
    std: float
    low: float
    high: float
    n: int

    def __str__(self) -> str:
        if self.n == 1:
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} ± {self.std:.2g}"


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Per-seed values, their mean and its 95 % Student-t interval; printed
    "m [lo, hi]" (`keras_optnotes.experiments.protocol.mean_interval`)."""

    values: tuple[float, ...]

    @property
    def interval(self):
        from keras_optnotes.experiments.protocol import mean_interval

        return mean_interval(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    def __str__(self) -> str:
        i = self.interval
        if i.count < 2:
            return f"{i.mean:.4g}"
        return f"{i.mean:.4g} [{i.low:.3g}, {i.high:.3g}]"


def estimate(values) -> Estimate:
    """`Estimate` of `values`, one per seed."""
    return Estimate(tuple(float(v) for v in np.ravel(values)))


def difference(a: Estimate, b: Estimate) -> str:
    """The difference a − b paired by seed, "d [lo, hi], significant" (95 %
    t-interval of the per-seed differences; significant when it excludes 0)."""
    from keras_optnotes.experiments.protocol import paired_difference

    if len(a.values) < 2:
        return f"{a.mean - b.mean:+.3g} (one seed: no interval)"
    d = paired_difference(a.values, b.values)
    mark = "significant" if d.significant else "not significant"
    return f"{d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}], {mark}"


def significant_difference(a: Estimate, b: Estimate) -> int:
    """+1 if a − b is significantly above 0 at 95 % (paired by seed), −1 if below,
    0 otherwise (or with one seed)."""
    from keras_optnotes.experiments.protocol import paired_difference

    if len(a.values) < 2:
        return 0
    d = paired_difference(a.values, b.values)
    return 1 if d.low > 0 else -1 if d.high < 0 else 0


def spread(values: Sequence[float]) -> Spread:
    """`Spread` of `values` (one per seed); `nan`s count as they are."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("`values` is empty: there is nothing to summarise.")
    std = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    return Spread(
        float(np.mean(values)),
        std,
        float(values.min()),
        float(values.max()),
        values.size,
    )


def mean_band(
    axes, x, runs, *, label: str, band: str = "std", log: bool = False, **line
):
    """Plots the mean of `runs` (seeds × points) against `x` with a shaded band.

    Args:
        axes: a matplotlib `Axes`.
        x: the shared x values (or seeds × points, averaged like the runs).
        runs: one row per seed.
        label: the legend entry; the number of seeds is appended.
        band: "std" (mean ± one standard deviation) or "range" (min to max).
        log: average log10(runs) (a geometric mean), for quantities on a log axis.
        **line: passed to `axes.plot`.

    Returns:
        The line.
    """
    runs = np.asarray(runs, dtype=np.float64)
    runs = np.atleast_2d(runs)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=0)
    values = np.log10(runs) if log else runs
    mean = values.mean(axis=0)
    if band == "range":
        low, high = values.min(axis=0), values.max(axis=0)
    else:
        std = values.std(axis=0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
        low, high = mean - std, mean + std
    if log:
        mean, low, high = 10**mean, 10**low, 10**high
    (drawn,) = axes.plot(x, mean, label=f"{label} (n={len(runs)})", **line)
    if len(runs) > 1:
        axes.fill_between(x, low, high, color=drawn.get_color(), alpha=0.18, lw=0)
    return drawn


def paired_change(axes, row: dict, x_key: str, y_key: str, *, color, label: str):
    """One arm's change from its baseline of the same seed, on two measures.

    `row[key]` is the `Spread` of a change over the seeds and `row[key + "_values"]`
    its per-seed values: the mean is drawn with ± one standard deviation as error
    bars, each seed as a small dot.
    """
    axes.errorbar(
        row[x_key].mean,
        row[y_key].mean,
        xerr=row[x_key].std,
        yerr=row[y_key].std,
        fmt="o",
        color=color,
        capsize=3,
        label=label,
    )
    axes.plot(
        row[f"{x_key}_values"], row[f"{y_key}_values"], ".", color=color, alpha=0.5
    )


def binomial_interval(successes: int, trials: int, z: float = 1.96):
    """Wilson's 95 % interval of a proportion: `(low, high)`."""
    if trials <= 0:
        return math.nan, math.nan
    p = successes / trials
    denominator = 1 + z**2 / trials
    centre = (p + z**2 / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def digits_as_vectors(seed: int = 0, max_samples: int | None = None):
    """The 8×8 digits (`data.load("digits")`) flattened to 64 inputs, for an MLP."""
    from keras_optnotes import data

    split = data.load("digits", seed=seed, max_samples=max_samples)
    return dataclasses.replace(
        split,
        x_train=split.x_train.reshape(len(split.x_train), -1),
        x_val=split.x_val.reshape(len(split.x_val), -1),
    )


def label(
    axes,
    xlabel: str,
    ylabel: str | None = None,
    title: str | None = None,
    *,
    log: str = "",
    legend: str | None = "small",
    grid: bool = False,
):
    """Names an `Axes`' axes and title, sets log scales, draws its legend and grid.

    Args:
        axes: a matplotlib `Axes`.
        xlabel, ylabel, title: the texts (`None`: leave as is).
        log: "x", "y" or "xy": the axes on a log scale.
        legend: the legend's font size, or `None` for no legend.
        grid: draw a light grid (major and minor lines).
    """
    axes.set_xlabel(xlabel)
    if ylabel is not None:
        axes.set_ylabel(ylabel)
    if title is not None:
        axes.set_title(title)
    if "x" in log:
        axes.set_xscale("log")
    if "y" in log:
        axes.set_yscale("log")
    if grid:
        axes.grid(True, which="both", alpha=0.3)
    if legend is not None:
        axes.legend(fontsize=legend)


def save(figure, staging: Path, filename: str) -> Path:
    """Saves a figure of `keras_optnotes.report.new_figure` as a PNG (110 dpi; 50
    after `parse_options` saw `--quick`, where the figure only has to exist)."""
    path = Path(staging) / filename
    figure.savefig(path, dpi=_dpi)
    return path


def descend(optimizer, gradient, start, steps: int, record=None):
    """Runs `optimizer` on a 2-D test function from `start`; returns the path.

    Every row of `start` is its own run (the rules are element-wise, so one variable of
    shape (runs, 2) holds independent runs that share the hyper-parameters), and each
    step is one `optimizer.apply` on the gradient computed by `gradient` in NumPy,
    float64.

    Args:
        optimizer: a `keras.optimizers.Optimizer`, not yet built.
        gradient: maps an array of points (runs, 2) to their gradients.
        start: the starting points, (runs, 2).
        steps: the number of steps.
        record: optional `record(optimizer) -> array`, called after each step; its
            values are returned too (e.g. an optimizer slot).

    Returns:
        The points, (steps + 1, runs, 2), starting with `start`; with `record`, the
        pair `(points, recorded)`.
    """
    import keras

    start = np.asarray(start, dtype=np.float64)
    variable = keras.Variable(start, dtype="float64", name="point")
    path, recorded = [start], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            g = gradient(np.asarray(variable.numpy()))
            optimizer.apply([keras.ops.convert_to_tensor(g, "float64")], [variable])
            path.append(np.asarray(variable.numpy()))
            if record is not None:
                recorded.append(np.asarray(record(optimizer), dtype=np.float64))
    path = np.stack(path)
    return (path, np.stack(recorded)) if record is not None else path
