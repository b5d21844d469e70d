"""What a notebook user expects: every `plot_*` function returns its Figure, draws into
a given `ax=`, writes a file only when given a path; the long-running diagnostics show
a `keras.utils.Progbar` on stdout as `fit` does, and nothing with `verbose=0`."""

import os

import keras
import numpy as np
import pytest

from keras_optnotes.diagnostics import (
    LearningRateRange,
    LossLine,
    LossSurface,
    hessian_top_eigenvalues,
    hessian_trace,
    hutchinson,
    keskar_sharpness,
    loss_along_line,
    loss_surface,
    lr_range_test,
    plot_loss_lines,
    plot_loss_surface,
    plot_lr_range,
    power_iteration,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def matplotlib_figure():
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    return Figure


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """The working directory is an empty folder: a file written by mistake shows."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lines_by_label(axes):
    return {line.get_label(): line for line in axes.get_lines()}


# --- plot_* -------------------------------------------------------------------------


def test_plot_loss_lines_returns_the_figure_and_writes_nothing(
    matplotlib_figure, empty_cwd
):
    alphas = np.linspace(-1.0, 2.0, 7)
    first = LossLine(alphas, 1.0 + (alphas - 0.5) ** 2)
    second = LossLine(alphas, 2.0 + alphas**2)
    figure = plot_loss_lines({"train": first, "val": second}, xlabel="α (0: A, 1: B)")
    assert isinstance(figure, matplotlib_figure)
    (axes,) = figure.axes
    drawn = lines_by_label(axes)
    assert sorted(drawn) == ["train", "val"]
    np.testing.assert_array_equal(drawn["train"].get_xdata(), alphas)
    np.testing.assert_array_equal(drawn["train"].get_ydata(), 1.0 + (alphas - 0.5) ** 2)
    np.testing.assert_array_equal(drawn["val"].get_ydata(), 2.0 + alphas**2)
    assert axes.get_yscale() == "log"  # every loss is positive
    assert axes.get_xlabel() == "α (0: A, 1: B)"
    assert [t.get_text() for t in axes.get_legend().get_texts()] == ["train", "val"]
    assert os.listdir(empty_cwd) == []


def test_a_returned_figure_shows_inline_in_a_notebook_without_pyplot(
    matplotlib_figure,
):
    # IPython displays an object through its `_repr_png_` when no formatter for its
    # type is registered (pyplot's inline backend registers one for Figure).
    figure = plot_loss_lines(LossLine(np.array([0.0, 1.0]), np.array([3.0, 5.0])))
    png = figure._repr_png_()
    assert png[:8] == PNG_MAGIC
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (600, 400)  # 6 × 4 inches at 100 dpi


def test_plot_loss_lines_single_line_with_a_zero_loss_is_linear(matplotlib_figure):
    line = LossLine(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 4.0]))
    figure = plot_loss_lines(line, title="one line")
    (axes,) = figure.axes
    assert axes.get_yscale() == "linear"
    assert axes.get_legend() is None
    assert axes.get_title() == "one line"
    np.testing.assert_array_equal(lines_by_label(axes)["loss"].get_ydata(), [0, 1, 4])


def test_plot_loss_lines_draws_into_the_given_axes(matplotlib_figure):
    outer = matplotlib_figure()
    left, right = outer.subplots(1, 2)
    line = LossLine(np.array([0.0, 1.0]), np.array([3.0, 5.0]))
    figure = plot_loss_lines(line, ax=right)
    assert figure is outer
    assert left.get_lines() == []
    np.testing.assert_array_equal(right.get_lines()[0].get_ydata(), [3.0, 5.0])
    assert len(outer.axes) == 2  # no axes added


def test_plot_loss_lines_writes_a_png_when_given_a_path(matplotlib_figure, tmp_path):
    line = LossLine(np.array([0.0, 1.0]), np.array([3.0, 5.0]))
    figure = plot_loss_lines(line, tmp_path / "line.png")
    assert isinstance(figure, matplotlib_figure)
    assert (tmp_path / "line.png").read_bytes()[:8] == PNG_MAGIC
    assert os.listdir(tmp_path) == ["line.png"]


def surface_of(f):
    alphas, betas = np.linspace(-1.0, 1.0, 5), np.linspace(-0.5, 0.5, 3)
    losses = f(alphas[:, None], betas[None, :])
    return LossSurface(alphas, betas, losses)


def contour_set(axes):
    from matplotlib.contour import ContourSet

    (contours,) = [c for c in axes.collections if isinstance(c, ContourSet)]
    return contours


def test_plot_loss_surface_returns_the_figure(matplotlib_figure, empty_cwd):
    surface = surface_of(lambda a, b: 1.0 + a**2 + 3.0 * b**2)
    figure = plot_loss_surface(surface, levels=5)
    assert isinstance(figure, matplotlib_figure)
    axes, colorbar = figure.axes
    contours = contour_set(axes)
    # The contoured data are the surface's losses, indexed [alpha, beta].
    assert contours.zmin == surface.losses.min() == 1.0
    assert contours.zmax == surface.losses.max() == 1.0 + 1.0 + 3.0 * 0.25
    assert colorbar.get_ylabel() == "loss"
    marker = [line for line in axes.get_lines() if line.get_marker() == "+"]
    np.testing.assert_array_equal(marker[0].get_xydata(), [[0.0, 0.0]])
    assert os.listdir(empty_cwd) == []


def test_plot_loss_surface_into_given_axes_and_to_a_file(matplotlib_figure, tmp_path):
    surface = surface_of(lambda a, b: a * b)
    outer = matplotlib_figure()
    given = outer.add_subplot()
    figure = plot_loss_surface(surface, tmp_path / "s.png", ax=given)
    assert figure is outer
    assert contour_set(given).zmin == surface.losses.min() == -0.5
    assert len(outer.axes) == 2  # the given axes and its colour bar
    assert (tmp_path / "s.png").read_bytes()[:8] == PNG_MAGIC


def range_result():
    rates = 1e-4 * 10.0 ** np.arange(6)
    losses = np.array([2.0, 1.9, 1.2, 0.7, 1.5, 9.0])
    smoothed = np.array([2.0, 1.95, 1.7, 1.4, 1.45, 2.9])
    return LearningRateRange(rates, losses, smoothed, 1e-2, True, 6)


def test_plot_lr_range_returns_the_figure(matplotlib_figure, empty_cwd):
    result = range_result()
    figure = plot_lr_range(result)
    (axes,) = figure.axes
    drawn = lines_by_label(axes)
    np.testing.assert_array_equal(drawn["loss"].get_xdata(), result.learning_rates)
    np.testing.assert_array_equal(drawn["loss"].get_ydata(), result.losses)
    np.testing.assert_array_equal(drawn["smoothed"].get_ydata(), result.smoothed_losses)
    np.testing.assert_array_equal(drawn["suggested η = 0.01"].get_xdata(), [1e-2, 1e-2])
    assert axes.get_xscale() == "log"
    assert os.listdir(empty_cwd) == []


def test_plot_lr_range_into_given_axes_and_to_a_file(matplotlib_figure, tmp_path):
    outer = matplotlib_figure()
    top, bottom = outer.subplots(2, 1)
    figure = plot_lr_range(range_result(), tmp_path / "lr.png", ax=top)
    assert figure is outer
    assert len(top.get_lines()) == 3 and bottom.get_lines() == []
    assert (tmp_path / "lr.png").read_bytes()[:8] == PNG_MAGIC


# --- verbose ------------------------------------------------------------------------

H = np.diag([5.0, -2.0, 1.0, 0.5])


def test_power_iteration_progress_bar_shows_each_eigenvalue(capsys):
    result = power_iteration(lambda v: H @ v, 4, k=2, tolerance=1e-10, verbose=1)
    out = capsys.readouterr().out
    assert "Eigenvalue 1/2" in out and "Eigenvalue 2/2" in out
    # The bar's last value is the estimate returned (Progbar prints 4 decimals).
    np.testing.assert_allclose(result.eigenvalues, [5.0, -2.0], atol=1e-6)
    assert "eigenvalue: 5.0000" in out and "eigenvalue: -2.0000" in out
    assert f"{result.iterations[0]}/100" in out  # iterations used, of the budget


def test_power_iteration_and_hutchinson_are_quiet_by_default(capsys):
    power_iteration(lambda v: H @ v, 4)
    hutchinson(lambda v: H @ v, 4, samples=4)
    assert capsys.readouterr().out == ""


def test_hutchinson_progress_bar_shows_the_running_estimate(capsys):
    result = hutchinson(lambda v: H @ v, 4, samples=6, verbose=1)
    out = capsys.readouterr().out
    # With a diagonal H, zᵀHz = tr(H) exactly for every Rademacher z.
    assert result.trace == pytest.approx(4.5, abs=1e-12)
    assert "6/6" in out and "trace: 4.5000" in out


def float64_linear_model():
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.EinsumDense("ab,bc->ac", output_shape=1, dtype="float64"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss=keras.losses.MeanSquaredError(dtype="float64"),
    )
    return model


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    return float64_linear_model(), x, y


def run_quiet_and_loud(capsys, measure):
    """stdout of `measure(verbose)` at 0, 1 and "auto"."""
    outputs = {}
    for verbose in (0, 1, "auto"):
        measure(verbose)
        outputs[verbose] = capsys.readouterr().out
    return outputs


def test_hessian_functions_progress(capsys, regression):
    model, x, y = regression
    top = run_quiet_and_loud(
        capsys,
        lambda v: hessian_top_eigenvalues(
            model, (x, y), max_iterations=500, tolerance=1e-12, verbose=v
        ),
    )
    trace = run_quiet_and_loud(
        capsys, lambda v: hessian_trace(model, (x, y), samples=3, verbose=v)
    )
    lam_max = np.linalg.eigvalsh(2.0 / 32 * x.T @ x).max()
    assert top[0] == "" and trace[0] == ""
    assert f"eigenvalue: {lam_max:.4f}" in top[1]
    assert f"eigenvalue: {lam_max:.4f}" in top["auto"]
    assert "3/3" in trace[1] and "standard_error" in trace[1]
    assert "3/3" in trace["auto"]


def test_keskar_sharpness_progress(capsys, regression):
    pytest.importorskip("scipy")
    model, x, y = regression
    out = run_quiet_and_loud(
        capsys,
        lambda v: keskar_sharpness(model, (x, y), max_iterations=3, verbose=v),
    )
    assert out[0] == ""
    assert "max_loss" in out[1] and "/3" in out[1] and "max_loss" in out["auto"]


def test_loss_surface_progress(capsys, regression):
    model, x, y = regression
    directions = ([np.eye(3)[:, :1]], [np.eye(3)[:, 1:2]])
    out = run_quiet_and_loud(
        capsys,
        lambda v: loss_surface(model, (x, y), directions, [-1.0, 0.0, 1.0], verbose=v),
    )
    assert out[0] == ""
    assert "9/9" in out[1] and "9/9" in out["auto"]


def test_loss_along_line_progress(capsys, regression):
    model, x, y = regression
    direction = [np.eye(3)[:, :1]]
    out = run_quiet_and_loud(
        capsys,
        lambda v: loss_along_line(
            model, (x, y), direction, [-1.0, -0.5, 0.0, 0.5, 1.0], verbose=v
        ),
    )
    assert out[0] == ""
    assert "5/5" in out[1] and "5/5" in out["auto"]


def test_lr_range_test_progress_and_verbose_2(capsys, regression):
    model, x, y = regression
    out = run_quiet_and_loud(
        capsys,
        lambda v: lr_range_test(model, (x, y), steps=5, end=1e-3, verbose=v),
    )
    assert out[0] == ""
    assert "5/5" in out[1] and "learning_rate: 1.0000e-03" in out[1]
    lr_range_test(model, (x, y), steps=5, end=1e-3, verbose=2)
    once = capsys.readouterr().out
    assert once.strip().count("\n") == 0 and "smoothed_loss" in once


@pytest.mark.parametrize("bad", [3, -1, "yes", 1.5, None])
def test_bad_verbose_names_the_argument(bad, regression):
    model, x, y = regression
    with pytest.raises(ValueError, match=r"`verbose`.*Received: verbose="):
        hessian_trace(model, (x, y), samples=2, verbose=bad)
    with pytest.raises(ValueError, match=r"`verbose`"):
        lr_range_test(model, (x, y), steps=2, verbose=bad)
    with pytest.raises(ValueError, match=r"`verbose`"):
        power_iteration(lambda v: H @ v, 4, verbose=bad)
