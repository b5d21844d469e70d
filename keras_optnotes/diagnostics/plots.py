"""Figures of the diagnostics, with matplotlib (the `plot` extra).

Every `plot_*` function returns the matplotlib `Figure` it drew on (a notebook shows
it inline), draws into a given `ax=` when one is passed, and writes a PNG only when
given a `path`. A figure made here is a `matplotlib.figure.Figure` created directly,
never through `pyplot`, so no global backend or figure state is touched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from keras_optnotes.diagnostics.results import LearningRateRange, LossLine, LossSurface

if TYPE_CHECKING:  # matplotlib is an extra; imported when a figure is drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _axes(ax: Axes | None, width: float, height: float) -> tuple[Figure, Axes]:
    """The given axes and their figure, or a new figure of one axes."""
    if ax is not None:
        return ax.figure, ax
    from keras_optnotes.report import new_figure  # names the extra if missing

    figure = new_figure(figsize=(width, height), dpi=100, layout="tight")
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | os.PathLike | None) -> None:
    if path is not None:
        figure.savefig(os.fspath(path), format="png")


def plot_loss_lines(
    lines: LossLine | Mapping[str, LossLine],
    path: str | os.PathLike | None = None,
    *,
    ax: Axes | None = None,
    xlabel: str = "α",
    title: str | None = None,
) -> Figure:
    """Plot the loss along one or several lines (`loss_along_line`'s results).

    One curve per line, loss against α; the y axis is logarithmic when every loss is
    positive. For an interpolation f((1 − α) θ_A + α θ_B), pass an `xlabel` naming
    A and B, e.g. "α (0: small batch, 1: large batch)".

    Args:
      lines: a `LossLine`, or a mapping label → `LossLine` (one curve each, with a
        legend when there are several).
      path: where to write the figure as a PNG; nothing is written when `None`.
      ax: a matplotlib `Axes` to draw into; a new figure when `None`.
      xlabel: the label of the α axis.
      title: the axes' title, if any.

    Returns:
      The matplotlib `Figure` holding the plot (`ax.figure` when `ax` is given).

    Example:
      >>> line = loss_along_line(small, (x, y), other_weights=large,
      ...                        alphas=np.linspace(-1, 2, 31))
      >>> figure = plot_loss_lines({"training": line}, xlabel="α (0: small, 1: large)")
    """
    if isinstance(lines, LossLine):
        lines = {"loss": lines}
    figure, axes = _axes(ax, 6.0, 4.0)
    for label, line in lines.items():
        axes.plot(line.alphas, line.losses, marker=".", label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("loss")
    axes.set_yscale(
        "log" if all(np.all(line.losses > 0) for line in lines.values()) else "linear"
    )
    if len(lines) > 1:
        axes.legend()
    if title:
        axes.set_title(title)
    axes.grid(alpha=0.3)
    _save(figure, path)
    return figure


def plot_loss_surface(
    surface: LossSurface,
    path: str | os.PathLike | None = None,
    *,
    ax: Axes | None = None,
    levels: int = 30,
) -> Figure:
    """Plot a `LossSurface` (`loss_surface`'s result) as contour lines.

    The contours of f(θ + α d1 + β d2) over the grid, with a colour bar and the
    model's own weights (α = β = 0) marked by a cross.

    Args:
      surface: the `LossSurface` to draw.
      path: where to write the figure as a PNG; nothing is written when `None`.
      ax: a matplotlib `Axes` to draw into; a new figure when `None`. The colour
        bar is added beside it, in its figure.
      levels: the number of contour levels.

    Returns:
      The matplotlib `Figure` holding the plot (`ax.figure` when `ax` is given).

    Example:
      >>> surface = loss_surface(model, (x, y), (d1, d2), grid=np.linspace(-1, 1, 21))
      >>> figure = plot_loss_surface(surface, "surface.png")
    """
    figure, axes = _axes(ax, 5.0, 4.5)
    betas, alphas = np.meshgrid(surface.betas, surface.alphas)
    contours = axes.contour(alphas, betas, surface.losses, levels=levels)
    figure.colorbar(contours, ax=axes, label="loss")
    axes.plot([0.0], [0.0], "k+")
    axes.set_xlabel("α (direction 1)")
    axes.set_ylabel("β (direction 2)")
    _save(figure, path)
    return figure


def plot_lr_range(
    result: LearningRateRange,
    path: str | os.PathLike | None = None,
    *,
    ax: Axes | None = None,
) -> Figure:
    """Plot the curve of `lr_range_test`: the loss against the learning rate.

    The recorded and the smoothed loss against η on a logarithmic axis, the
    suggested learning rate marked by a dashed vertical line.

    Args:
      result: the `LearningRateRange` to draw.
      path: where to write the figure as a PNG; nothing is written when `None`.
      ax: a matplotlib `Axes` to draw into; a new figure when `None`.

    Returns:
      The matplotlib `Figure` holding the plot (`ax.figure` when `ax` is given).

    Example:
      >>> result = lr_range_test(model, (x, y), verbose=0)
      >>> figure = plot_lr_range(result)
    """
    figure, axes = _axes(ax, 6.0, 4.0)
    axes.plot(result.learning_rates, result.losses, alpha=0.3, label="loss")
    axes.plot(result.learning_rates, result.smoothed_losses, label="smoothed")
    axes.axvline(
        result.suggested_learning_rate,
        color="k",
        linestyle="--",
        label=f"suggested η = {result.suggested_learning_rate:.2g}",
    )
    axes.set_xscale("log")
    axes.set_xlabel("learning rate η")
    axes.set_ylabel("loss")
    axes.legend()
    axes.grid(alpha=0.3)
    _save(figure, path)
    return figure


__all__ = ["plot_loss_lines", "plot_loss_surface", "plot_lr_range"]
