"""Keskar sharpness, loss landscapes and the learning-rate range test, against closed
forms of linear least squares worked out in NumPy, on every backend."""

import itertools

import keras
import numpy as np
import pytest

from keras_optnotes.diagnostics import (
    keskar_sharpness,
    loss_along_line,
    loss_surface,
    lr_range_test,
    plot_loss_lines,
    plot_loss_surface,
    random_direction,
)
from keras_optnotes.diagnostics.lr_range import _suggest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def squared_error(y_true, y_pred):
    """Per-entry squared error, averaged by the diagnostics with a sum: float64-exact
    on every backend (Keras 3.15's `ops.mean` is float32-precise off TensorFlow)."""
    return keras.ops.square(y_pred - y_true)


def weights_equal(before, after):
    return all(np.array_equal(a, b) for a, b in zip(before, after))


def linear_model(p, dtype="float64"):
    # EinsumDense, not Dense: Keras 3.15's torch matmul rounds float64 to float32.
    model = keras.Sequential(
        [
            keras.Input((p,), dtype=dtype),
            keras.layers.EinsumDense("ab,bc->ac", output_shape=1, dtype=dtype),
        ]
    )
    model.compile(loss=keras.losses.MeanSquaredError(dtype=dtype))
    return model


@pytest.fixture(scope="module")
def quadratic():
    """f(w) = mean((Xw − y)²) with orthogonal columns: H = 2/N XᵀX = diag(h)."""
    rng = np.random.default_rng(0)
    n, p = 128, 4
    q, _ = np.linalg.qr(rng.normal(size=(n, p)))
    scales = np.array([20.0, 8.0, 3.0, 1.0])
    x = q * scales
    y = x @ np.array([[1.5], [-0.7], [2.0], [0.3]]) + 0.4 * rng.normal(size=(n, 1))
    w_star = np.linalg.lstsq(x, y, rcond=None)[0]
    model = linear_model(p)
    model.set_weights([w_star])
    h = 2.0 / n * scales**2
    c = float(np.mean((x @ w_star - y) ** 2))
    return model, x, y, w_star.ravel(), h, c


def test_keskar_sharpness_at_quadratic_minimum_matches_closed_form(quadratic):
    model, x, y, w_star, h, c = quadratic
    before = [w.copy() for w in model.get_weights()]
    epsilon = 1e-3
    # `loss=` in float64: Keras rounds the compiled loss' value to floatx (float32),
    # too coarse for differences of 1e-5.
    result = keskar_sharpness(
        model, (x, y), epsilon=epsilon, max_iterations=10, loss=squared_error
    )
    # At the minimum f(w + δ) − f(w) = ½ Σ h_i δ_i², largest at any corner of the box.
    delta = epsilon * (np.abs(w_star) + 1.0)
    expected = 100.0 * 0.5 * np.sum(h * delta**2) / (1.0 + c)
    assert result.sharpness == pytest.approx(expected, rel=1e-6)
    assert result.loss == pytest.approx(c, rel=1e-12)
    assert result.epsilon == epsilon and result.subspace_dim is None
    assert 1 <= result.iterations <= 10
    assert weights_equal(before, model.get_weights())


def test_keskar_sharpness_in_a_subspace_matches_closed_form(quadratic):
    model, x, y, w_star, h, c = quadratic
    before = [w.copy() for w in model.get_weights()]
    epsilon, p, seed = 1e-3, 2, 3
    result = keskar_sharpness(
        model, (x, y), epsilon=epsilon, subspace_dim=p, seed=seed, loss=squared_error
    )
    # The same draw of A (n×p standard normal, first from the seeded generator).
    basis = np.random.default_rng(seed).standard_normal((w_star.size, p))
    center = np.linalg.pinv(basis) @ w_star  # A⁺x
    half_width = epsilon * (np.abs(center) + 1.0)
    # At the minimum f(x + Ay) − f(x) = ½ (Ay)ᵀ H (Ay), convex in y: its maximum over
    # the box is at one of the 2ᵖ corners.
    corners = [
        np.array(signs) * half_width
        for signs in itertools.product((-1.0, 1.0), repeat=p)
    ]
    rise = max(0.5 * np.sum(h * (basis @ y) ** 2) for y in corners)
    assert result.subspace_dim == p
    assert result.sharpness == pytest.approx(100.0 * rise / (1.0 + c), rel=1e-6)
    assert result.max_loss - result.loss == pytest.approx(rise, rel=1e-6)
    assert weights_equal(before, model.get_weights())


def test_keskar_sharpness_bad_epsilon(quadratic):
    model, x, y, *_ = quadratic
    for bad in (0.0, -1e-3):
        with pytest.raises(ValueError, match="`epsilon`"):
            keskar_sharpness(model, (x, y), epsilon=bad)
    with pytest.raises(ValueError, match="`subspace_dim`"):
        keskar_sharpness(model, (x, y), subspace_dim=0)


def test_loss_along_direction_and_interpolation_match_closed_forms(quadratic, tmp_path):
    model, x, y, w_star, *_ = quadratic
    before = [w.copy() for w in model.get_weights()]
    alphas = np.linspace(-1.0, 2.0, 7)

    def f(w):
        return np.mean((x @ w.reshape(-1, 1) - y) ** 2)

    d = np.array([0.3, -0.2, 0.1, 0.5])
    line = loss_along_line(
        model, (x, y), [d.reshape(4, 1)], alphas, batch_size=50, loss=squared_error
    )
    np.testing.assert_allclose(
        line.losses, [f(w_star + a * d) for a in alphas], rtol=1e-10
    )

    w_other = np.array([1.0, 1.0, -1.0, 0.0])
    other = linear_model(4)
    other.set_weights([w_other.reshape(4, 1)])
    line = loss_along_line(
        model, (x, y), other_weights=other, alphas=alphas, loss=squared_error
    )
    expected = [f((1 - a) * w_star + a * w_other) for a in alphas]
    np.testing.assert_allclose(line.losses, expected, rtol=1e-10)
    assert weights_equal(before, model.get_weights())
    plot_loss_lines({"A → B": line}, tmp_path / "line.png")
    assert open(tmp_path / "line.png", "rb").read(8) == PNG_MAGIC


def test_loss_surface_matches_closed_form(quadratic, tmp_path):
    model, x, y, w_star, *_ = quadratic
    before = [w.copy() for w in model.get_weights()]
    d1, d2 = np.eye(4)[0], np.eye(4)[2]
    grid = np.linspace(-0.5, 0.5, 3)
    surface = loss_surface(
        model,
        (x, y),
        ([d1.reshape(4, 1)], [d2.reshape(4, 1)]),
        (grid, grid[:2]),
        loss=squared_error,
    )
    assert surface.losses.shape == (3, 2)
    for i, a in enumerate(grid):
        for j, b in enumerate(grid[:2]):
            w = w_star + a * d1 + b * d2
            expected = np.mean((x @ w.reshape(-1, 1) - y) ** 2)
            assert surface.losses[i, j] == pytest.approx(expected, rel=1e-10)
    assert weights_equal(before, model.get_weights())
    plot_loss_surface(surface, tmp_path / "s.png")
    assert open(tmp_path / "s.png", "rb").read(8) == PNG_MAGIC


def test_line_bad_input(quadratic):
    model, x, y, *_ = quadratic
    with pytest.raises(ValueError, match="`alphas`"):
        loss_along_line(model, (x, y), [np.ones((4, 1))], [])
    with pytest.raises(ValueError, match="exactly one"):
        loss_along_line(model, (x, y), alphas=[0.0])
    with pytest.raises(ValueError, match="`direction`"):
        loss_along_line(model, (x, y), [np.ones((3, 1))], [0.0])
    with pytest.raises(ValueError, match="`grid`"):
        loss_surface(model, (x, y), ([np.ones((4, 1))], [np.ones((4, 1))]), [])


def test_filter_normalized_direction():
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(5, 3),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(4),
        ]
    )
    direction = random_direction(model, seed=1)
    for variable, d in zip(model.trainable_variables, direction):
        w = keras.ops.convert_to_numpy(variable).astype(np.float64)
        assert d.shape == w.shape
        if w.ndim == 1:  # conv and dense biases, BN gamma and beta
            assert np.all(d == 0.0)
        else:  # one filter per index of the last axis
            axes = tuple(range(w.ndim - 1))
            np.testing.assert_allclose(
                np.sqrt((d**2).sum(axes)), np.sqrt((w**2).sum(axes)), rtol=1e-6
            )
            assert not np.allclose(d, w)
    other = random_direction(model, seed=2)
    assert not np.allclose(direction[0], other[0])
    kept = random_direction(model, ignore="none", seed=1)
    np.testing.assert_array_equal(
        kept[1], keras.ops.convert_to_numpy(model.trainable_variables[1])
    )
    layer = random_direction(model, normalization="layer", seed=1)
    assert np.linalg.norm(layer[0]) == pytest.approx(
        np.linalg.norm(keras.ops.convert_to_numpy(model.trainable_variables[0])),
        rel=1e-6,
    )
    with pytest.raises(ValueError, match="`normalization`"):
        random_direction(model, normalization="batch")


def test_lr_range_test_finds_the_divergence_of_gradient_descent(tmp_path):
    """Full-batch gradient descent on least squares diverges for η > 2/λ_max."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 3)) * np.array([2.0, 1.0, 0.5])
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    lam_max = np.linalg.eigvalsh(2.0 / 64 * x.T @ x).max()
    model = linear_model(3, dtype="float32")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    before = [w.copy() for w in model.get_weights()]
    result = lr_range_test(
        model,
        (x, y),
        start=1e-4,
        end=100.0,
        steps=60,
        batch_size=64,
        plot_path=tmp_path / "lr.png",
    )
    assert result.diverged and result.steps < 60
    stop_rate = result.learning_rates[-1]
    assert stop_rate > 2.0 / lam_max  # it cannot diverge below the stability limit
    assert result.suggested_learning_rate < 2.0 / lam_max
    # The rule: steepest slope of the smoothed loss against log η, up to its minimum.
    stop = int(np.argmin(result.smoothed_losses)) + 1
    slopes = np.gradient(
        result.smoothed_losses[:stop], np.log(result.learning_rates[:stop])
    )
    assert result.suggested_learning_rate == result.learning_rates[np.argmin(slopes)]
    # The smoothing is a bias-corrected EMA of the recorded losses.
    average, expected = 0.0, []
    for i, value in enumerate(result.losses):
        average = 0.95 * average + 0.05 * value
        expected.append(average / (1 - 0.95 ** (i + 1)))
    np.testing.assert_allclose(result.smoothed_losses, expected, rtol=1e-10)
    assert weights_equal(before, model.get_weights())
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert float(
        keras.ops.convert_to_numpy(model.optimizer.learning_rate)
    ) == pytest.approx(0.01)
    assert open(tmp_path / "lr.png", "rb").read(8) == PNG_MAGIC
    with pytest.raises(ValueError, match="`end`"):
        lr_range_test(model, (x, y), start=1.0, end=0.5)
    with pytest.raises(ValueError, match="`steps`"):
        lr_range_test(model, (x, y), steps=1)


def test_non_finite_data_is_not_reported_as_converged(quadratic):
    model, x, y, *_ = quadratic
    bad = x.copy()
    bad[7, 2] = np.nan
    result = keskar_sharpness(model, (bad, y), epsilon=1e-3)
    assert not result.converged
    # NaN only in one of four batches: f is NaN, never a finite sharpness.
    result = keskar_sharpness(model, (bad, y), epsilon=1e-3, batch_size=32)
    assert not result.converged


def test_lr_range_test_with_non_finite_loss_reports_divergence():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 3))
    y = x @ np.array([[1.0], [-2.0], [0.5]])
    model = linear_model(3, dtype="float32")
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    for row in (0, 40):  # the first step's batch, then a later one
        bad = x.copy()
        bad[row, 0] = np.nan
        result = lr_range_test(model, (bad, y), steps=10, batch_size=16)
        assert result.diverged
        assert result.steps == row // 16 + 1


def test_suggested_learning_rate_is_steepest_descent_before_the_minimum():
    rates = np.array([1e-3, 1e-2, 1e-1, 1.0, 10.0])
    smoothed = np.array([1.0, 0.9, 0.5, 0.3, 2.0])
    # Slopes in log η (step h = ln 10) up to the minimum at index 3: −0.1/h (one-sided),
    # −0.25/h, −0.3/h, −0.2/h (one-sided): steepest at index 2, η = 0.1 — not the
    # minimum (η = 1) and not the rise after it.
    assert _suggest(rates, smoothed) == 0.1
    # A drop that steepens right up to the minimum: the minimum's own point.
    assert _suggest(rates, np.array([1.0, 0.99, 0.9, 0.1, 0.2])) == 1.0
    assert np.isnan(_suggest(rates[:2], np.array([np.nan, np.nan])))
