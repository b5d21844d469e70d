"""PNG figures of the diagnostics, with matplotlib (the `plot` extra).

The figures are drawn on a `matplotlib.figure.Figure` directly, never through
`pyplot`, so no global backend or figure state is touched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from keras_optnotes.diagnostics.results import LearningRateRange, LossLine, LossSurface


def _figure(width: float = 6.0, height: float = 4.0):
    from keras_optnotes.report import new_figure  # names the extra if missing

    return new_figure(figsize=(width, height), dpi=100)


def _save(figure, path: str | os.PathLike) -> str:
    path = os.fspath(path)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def plot_loss_lines(
    lines: LossLine | Mapping[str, LossLine],
    path: str | os.PathLike,
    *,
    xlabel: str = "α",
    title: str | None = None,
) -> str:
    """Write the loss along one or several lines (a mapping label → `LossLine`) as PNG.

    For an interpolation f((1 − α) θ_A + α θ_B), pass `xlabel` naming A and B, e.g.
    "α (0: small batch, 1: large batch)". Returns the path written.
    """
    if isinstance(lines, LossLine):
        lines = {"loss": lines}
    figure = _figure()
    axes = figure.add_subplot()
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
    return _save(figure, path)


def plot_loss_surface(
    surface: LossSurface, path: str | os.PathLike, *, levels: int = 30
) -> str:
    """Write a contour plot of a `LossSurface` as PNG; returns the path written."""
    figure = _figure(5.0, 4.5)
    axes = figure.add_subplot()
    betas, alphas = np.meshgrid(surface.betas, surface.alphas)
    contours = axes.contour(alphas, betas, surface.losses, levels=levels)
    figure.colorbar(contours, ax=axes, label="loss")
    axes.plot([0.0], [0.0], "k+")
    axes.set_xlabel("α (direction 1)")
    axes.set_ylabel("β (direction 2)")
    return _save(figure, path)


def plot_lr_range(result: LearningRateRange, path: str | os.PathLike) -> str:
    """Write the curve of `lr_range_test` (loss against log η) as PNG; returns the
    path written. The suggested learning rate is marked."""
    figure = _figure()
    axes = figure.add_subplot()
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
    return _save(figure, path)
