"""Writing a command's results: an all-or-nothing output folder, tables, CSV, figures.

The commands (`compare`, `regularize`, `sharpness`, ...) write their files through
`output_folder`, so a failed run never leaves half of a report behind, and format their
tables with `markdown_table` and their per-epoch histories with `write_csv`.

Example:

>>> with output_folder("optnotes-report") as staging:  # doctest: +SKIP
...     write_csv(staging / "runs.csv", ["epoch", "loss"], [[1, 0.5], [2, 0.25]])
...     (staging / "runs.md").write_text(markdown_table(["epoch"], [[1], [2]]))
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np

from keras_optnotes._usage import PROG, UsageError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


@contextlib.contextmanager
def output_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Stages a command's files and moves them into `path` only if the block succeeds.

    Before the block runs, checks that `path` is (or can become) a writable folder;
    otherwise raises `keras_optnotes.cli.UsageError` naming it, before any work is
    done. The block writes into a fresh staging folder created beside `path`; on
    success each file is moved into `path` (created if needed, files of the same name
    replaced, other files left alone); on any exception the staging folder is deleted
    and `path` is exactly as it was.

    Args:
        path: the output folder.

    Yields:
        The staging folder, a `pathlib.Path`.

    Raises:
        keras_optnotes.cli.UsageError: `path` is not a folder or is not writable.
    """
    target = Path(path).expanduser().absolute()
    if target.exists() and not target.is_dir():
        raise UsageError(f"output folder {path}: exists and is not a folder")
    if target.is_dir():
        try:
            with tempfile.TemporaryFile(dir=target):
                pass
        except OSError as error:
            raise UsageError(
                f"output folder {path}: not writable ({error.strerror})"
            ) from error
    anchor = target.parent if target.parent.is_dir() else _nearest_existing(target)
    if not anchor.is_dir():
        raise UsageError(f"output folder {path}: {anchor} is not a folder")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-", dir=anchor))
    except OSError as error:
        raise UsageError(
            f"output folder {path}: cannot write in {anchor} ({error.strerror})"
        ) from error
    try:
        yield staging
        target.mkdir(parents=True, exist_ok=True)
        for item in sorted(staging.iterdir()):
            destination = target / item.name
            if destination.is_dir() and item.is_dir():
                shutil.rmtree(destination)
            os.replace(item, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def json_ready(value: Any) -> Any:
    """`value` as plain JSON types, so that `json.dumps(..., allow_nan=False)` writes it.

    NaN and infinities become `None` (JSON has neither); tuples, lists and NumPy
    arrays become lists, NumPy scalars Python numbers, mappings dicts with string
    keys; an object with a `to_dict()` method (the experiments' results) becomes what
    it returns, and any other dataclass a dict of its fields.

    Example:
        >>> json_ready({"mean": float("nan"), "ci95": (0.1, 0.2)})
        {'mean': None, 'ci95': [0.1, 0.2]}
        >>> json_ready(np.array([1.5, np.inf]))
        [1.5, None]
    """
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if callable(getattr(value, "to_dict", None)):
        return json_ready(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: json_ready(getattr(value, field.name))
            for field in dataclasses.fields(value)
        }
    if hasattr(value, "items"):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def write_json(path: str | os.PathLike, value: Any) -> Path:
    """Writes `json_ready(value)` to `path` as indented UTF-8 JSON; returns the path.

    The commands write their `.json` files with it, and the tutorials their numbers.

    Raises:
        TypeError: `value` holds something JSON cannot represent (after
            `json_ready`), e.g. an arbitrary object.
    """
    import json

    path = Path(path)
    path.write_text(
        json.dumps(json_ready(value), indent=1, allow_nan=False),
        encoding="utf-8",
    )
    return path


def format_cell(value: Any) -> str:
    """Text for a table cell: floats to 4 significant digits, `None` empty."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        value = float(value)
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, (bool, np.bool_))


def _check_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    for index, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(
                f"Row {index} has {len(row)} cells; expected {len(columns)} "
                f"(one per column: {', '.join(map(str, columns))})."
            )


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; number columns are right-aligned.

    Args:
        columns: the header cells.
        rows: one sequence of cells per row, as many cells as columns. Floats are
            written with 4 significant digits, `None` as an empty cell.

    Returns:
        The table, one line per row, ending with a newline.

    Example:

    >>> print(markdown_table(["rule", "loss"], [["Adam", 0.12345]]), end="")
    | rule | loss |
    |:-----|-----:|
    | Adam | 0.1235 |
    """
    _check_rows(columns, rows)
    numeric = [
        bool(rows) and all(_is_number(row[i]) or row[i] is None for row in rows)
        for i in range(len(columns))
    ]
    header = "| " + " | ".join(format_cell(c) for c in columns) + " |"
    rule = (
        "|"
        + "|".join(
            ("-" * (len(format_cell(c)) + 1) + ":")
            if right
            else (":" + "-" * (len(format_cell(c)) + 1))
            for c, right in zip(columns, numeric, strict=True)
        )
        + "|"
    )
    body = ["| " + " | ".join(format_cell(cell) for cell in row) + " |" for row in rows]
    return "\n".join([header, rule, *body]) + "\n"


def write_csv(
    path: str | os.PathLike, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Path:
    """Writes rows to a CSV file with a header; floats keep full precision.

    Args:
        path: the file to write.
        columns: the header cells.
        rows: one sequence of cells per row, as many cells as columns; `None` is
            written as an empty cell.

    Returns:
        The path written.
    """
    _check_rows(columns, rows)
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(
                [
                    ""
                    if cell is None
                    else repr(float(cell))
                    if isinstance(cell, (float, np.floating))
                    else cell
                    for cell in row
                ]
            )
    return path


def new_figure(**kwargs: Any):
    """A matplotlib `Figure` that is not registered with pyplot.

    It is drawn by the file-only Agg canvas, so it works without a display, changes no
    global backend and is freed when dropped. Save it with `figure.savefig(path)`; a
    notebook shows it inline when a cell returns it (it answers IPython's
    `_repr_png_`, with or without pyplot's inline backend).

    Args:
        **kwargs: passed to `matplotlib.figure.Figure` (`figsize=`, `layout=`, ...).

    Returns:
        The figure.

    Raises:
        ImportError: matplotlib is not installed; the message names the extra.
    """
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError as error:
        raise ImportError(
            'matplotlib is not installed: pip install "keras-optnotes[plot]"'
        ) from error
    from keras_optnotes._notebook_figure import NotebookFigure

    return NotebookFigure(**kwargs)


def panels(axes: Any, count: int, *, figsize: tuple[float, float], **kwargs: Any):
    """The figure and the `count` axes a `plot_*` function draws into.

    With `axes=None` a new figure (`new_figure`) of `count` panels side by side
    (`kwargs` go to `Figure.subplots`, e.g. `sharey=True`); otherwise the given
    axes, which must be `count` matplotlib `Axes` (one `Axes` where `count` is 1),
    and their figure.

    Returns:
        `(figure, [axes, ...])`.

    Raises:
        ValueError: `axes` is not `count` axes.
    """
    if axes is None:
        figure = new_figure(figsize=figsize, layout="constrained")
        made = figure.subplots(1, count, squeeze=False, **kwargs)[0]
        return figure, list(made)
    given = [axes] if hasattr(axes, "figure") else list(axes)
    if len(given) != count or not all(hasattr(a, "figure") for a in given):
        raise ValueError(
            f"Argument `axes` must be {count} matplotlib Axes. Received: axes={axes!r}"
        )
    return given[0].figure, given


def finish_figure(figure: Any, path: str | os.PathLike | None, title: str | None):
    """Sets the figure's title (when given), saves it as a PNG at `path` (when
    given) and returns it."""
    if title:
        figure.suptitle(title)
    if path is not None:
        figure.savefig(os.fspath(path), dpi=110)
    return figure


def mean_band(
    axes: Any,
    x: Any,
    runs: Any,
    *,
    label: str,
    band: str = "std",
    log: bool = False,
    **line: Any,
):
    """Draws the mean of runs over seeds against `x`, with a shaded band.

    The band is mean ± one sample standard deviation (`band="std"`) or the range
    from the smallest to the largest run (`band="range"`); with `log=True` both are
    taken of log₁₀ of the runs (a geometric mean, for quantities on a log axis). One
    run draws the line alone.

    Args:
        axes: a matplotlib `Axes`.
        x: the shared x values (points,), or one row per run (averaged).
        runs: the values, one row per seed (seeds, points), or one run (points,).
        label: the legend entry; " (n=seeds)" is appended.
        band: "std" or "range".
        log: average log₁₀(runs) instead of the runs.
        **line: passed to `Axes.plot` (`color=`, `ls=`, ...).

    Returns:
        The drawn `Line2D`.

    Raises:
        ValueError: an unknown `band`.

    Example:

    >>> figure = new_figure()
    >>> line = mean_band(figure.subplots(), [1, 2], [[1.0, 2.0], [3.0, 4.0]], label="a")
    >>> line.get_ydata().tolist(), line.get_label()
    ([2.0, 3.0], 'a (n=2)')
    """
    if band not in ("std", "range"):
        raise ValueError(
            f"Argument `band` must be 'std' or 'range'. Received: band={band!r}"
        )
    runs = np.atleast_2d(np.asarray(runs, dtype=np.float64))
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


def label_axes(
    axes: Any,
    xlabel: str,
    ylabel: str | None = None,
    title: str | None = None,
    *,
    log: str = "",
    legend: str | float | None = "small",
    grid: bool = False,
) -> Any:
    """Names an `Axes`' axes and title, sets log scales, draws its legend and grid.

    Args:
        axes: a matplotlib `Axes`.
        xlabel: the x axis' label.
        ylabel: the y axis' label (`None`: leave it).
        title: the title (`None`: leave it).
        log: "x", "y" or "xy": which axes are on a log scale ("": none).
        legend: the legend's font size, or `None` for no legend.
        grid: draw a light grid (major and minor lines).

    Returns:
        `axes`.
    """
    if not set(log) <= {"x", "y"}:
        raise ValueError(
            f"Argument `log` must be '', 'x', 'y' or 'xy'. Received: log={log!r}"
        )
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
    return axes


def show_markdown(text: str) -> None:
    """Shows Markdown (a table, a verdict) rendered in a notebook, printed elsewhere.

    In IPython (Jupyter, Colab) the text is displayed as rendered Markdown; run as a
    script, or where IPython is not installed, it is printed as it is.

    Args:
        text: the Markdown, e.g. from `markdown_table`.
    """
    shell = sys.modules.get("IPython")
    if shell is not None and shell.get_ipython() is not None:
        from IPython.display import Markdown, display

        display(Markdown(text))
    else:
        print(text)


def write_report(
    staging: str | os.PathLike,
    command: str,
    *,
    summary: str,
    table: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    plot: Callable[[Path], None] | None = None,
    stem: str | None = None,
) -> list[str]:
    """Writes a command's usual trio into the staging folder of `output_folder`.

    `<stem>.md` holds a heading, `summary` and `table`; `<stem>.csv` holds
    `columns` and `rows`; `<stem>.png` is drawn by `plot(path)`. Without
    matplotlib the figure is skipped with one line on stderr that names the extra,
    and the rest is still written.

    Args:
        staging: the folder to write into.
        command: the sub-command's name, used for the file names and the heading.
        summary: one sentence on the data and settings, printed above the table.
        table: the Markdown table (`markdown_table`).
        columns: the CSV header.
        rows: the CSV rows.
        plot: draws and saves the figure at the path it is given, or `None`.
        stem: the file names' stem, if not `command` (`critical_batch` for the
            `critical-batch` command).

    Returns:
        The names of the files written.
    """
    staging = Path(staging)
    stem = command if stem is None else stem
    (staging / f"{stem}.md").write_text(
        f"# {PROG} {command}\n\n{summary}\n\n{table}", encoding="utf-8"
    )
    write_csv(staging / f"{stem}.csv", columns, rows)
    written = [f"{stem}.md", f"{stem}.csv"]
    if plot is not None:
        try:
            plot(staging / f"{stem}.png")
            written.append(f"{stem}.png")
        except ImportError as error:
            print(f"{PROG} {command}: plot skipped: {error}", file=sys.stderr)
    return written


def print_report(
    out: str | os.PathLike, summary: str, table: str, written: Sequence[str]
) -> None:
    """Prints `summary`, `table` and the files written into `out` (after the move)."""
    print(f"\n{summary}\n\n{table}")
    print("Wrote " + ", ".join(str(Path(out) / name) for name in written))
