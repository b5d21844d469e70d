"""Hessian-vector products, power iteration and Hutchinson's trace against Hessians
worked out independently in float64 NumPy, on every backend."""

import keras
import numpy as np
import pytest

from keras_optnotes.diagnostics import (
    HessianOperator,
    hessian_top_eigenvalues,
    hessian_trace,
    hessian_vector_product,
    hutchinson,
    power_iteration,
)

BACKEND = keras.backend.backend()
HVP_METHODS = {
    "tensorflow": "double back-propagation",
    "jax": "forward-over-reverse",
    "torch": "double back-propagation",
}
MSE64 = keras.losses.MeanSquaredError(dtype="float64")


def squared_error(y_true, y_pred):
    """Per-entry squared error; the diagnostics average it with a sum (float64-exact
    on every backend, where Keras 3.15's `ops.mean` and torch `ops.matmul` round
    float64 to float32 precision off TensorFlow)."""
    return keras.ops.square(y_pred - y_true)


def linear(units, use_bias=True, activation=None):
    """A float64 dense layer built on einsum (float64-exact on every backend)."""
    return keras.layers.EinsumDense(
        "ab,bc->ac",
        output_shape=units,
        bias_axes="c" if use_bias else None,
        activation=activation,
        dtype="float64",
    )


def relative_error(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


# --- linear regression: H = 2/N · X̃ᵀX̃ with X̃ = [X, 1] -----------------------------


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(0)
    n, p = 200, 5
    mixing = rng.normal(size=(p, p)) * np.array([3.0, 2.0, 1.2, 0.7, 0.3])
    x = rng.normal(size=(n, p)) @ mixing
    y = x @ rng.normal(size=(p, 1)) + 0.5 * rng.normal(size=(n, 1))
    model = keras.Sequential([keras.Input((p,), dtype="float64"), linear(1)])
    model.compile(loss=MSE64)
    design = np.hstack([x, np.ones((n, 1))])
    hessian = 2.0 / n * design.T @ design  # order: kernel (p entries), then bias
    return model, x, y, hessian


def test_hvp_linear_regression_matches_closed_form(regression):
    model, x, y, hessian = regression
    rng = np.random.default_rng(1)
    operator = HessianOperator(model, (x, y), batch_size=64, loss=squared_error)
    assert HVP_METHODS[BACKEND] in operator.hvp_method
    before = operator.traces
    for _ in range(4):
        v = rng.normal(size=operator.size)
        assert relative_error(operator.matvec(v), hessian @ v) <= 1e-12
    if BACKEND == "torch":  # eager: nothing is traced
        assert operator.traces == 0
        return
    # 200 = 3·64 + 8: two batch shapes; the four products above (eight batches of
    # calls) traced the product once per shape.
    assert operator.traces - before == 2
    # A later measurement on the same model reuses the traces.
    again = HessianOperator(model, (x, y), batch_size=64, loss=squared_error)
    again.matvec(np.ones(again.size))
    assert again.traces - before == 2


def test_hvp_of_the_compiled_loss(regression):
    model, x, y, hessian = regression
    v = np.random.default_rng(12).normal(size=hessian.shape[0])
    hv = hessian_vector_product(model, (x, y), v, batch_size=64)
    # Keras' compiled MeanSquaredError is float64-exact on TensorFlow only; on JAX
    # and PyTorch Keras 3.15 takes its mean at float32 precision.
    assert relative_error(hv, hessian @ v) <= (
        1e-12 if BACKEND == "tensorflow" else 1e-6
    )


def test_hvp_forced_xla_matches_closed_form(regression):
    model, x, y, hessian = regression
    if BACKEND == "torch":
        with pytest.raises(ValueError, match="torch backend"):
            HessianOperator(model, (x, y), jit_compile=True)
        return
    operator = HessianOperator(
        model, (x, y), batch_size=len(x), jit_compile=True, loss=squared_error
    )
    assert operator.uses_xla
    v = np.random.default_rng(9).normal(size=operator.size)
    assert relative_error(operator.matvec(v), hessian @ v) <= 1e-12


def sigmoid_regression_hessian(theta, x, y):
    """H of f(w, b) = mean((σ(x·w + b) − y)²), exactly: with s = σ(z),
    H = 2/N · Σ [(s(1−s))² + (s − y) s(1−s)(1−2s)] x̃ x̃ᵀ, x̃ = [x, 1]."""
    design = np.hstack([x, np.ones((len(x), 1))])
    s = 1.0 / (1.0 + np.exp(-(design @ theta)))
    slope = s * (1.0 - s)
    curvature = slope**2 + (s - y[:, 0]) * slope * (1.0 - 2.0 * s)
    return 2.0 / len(x) * (design * curvature[:, None]).T @ design


def test_one_batch_operator_follows_the_weights(regression):
    """A single-batch operator may keep the gradient's graph between products
    (PyTorch): the products stay exact after `set_weights`, after an optimizer step
    and after `release`, where a graph kept past a change of weights would give
    the old Hessian."""
    _, x, y, _ = regression
    y = (y > 0).astype("float64")
    model = keras.Sequential(
        [keras.Input((x.shape[1],), dtype="float64"), linear(1, activation="sigmoid")]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss=MSE64)
    operator = HessianOperator(model, (x, y), batch_size=len(x), loss=squared_error)
    rng = np.random.default_rng(21)

    def check():
        theta = operator.flatten(model.get_weights())
        hessian = sigmoid_regression_hessian(theta, x, y)
        for _ in range(2):  # the second product reuses what the first built
            v = rng.normal(size=operator.size)
            assert relative_error(operator.matvec(v), hessian @ v) <= 1e-12
        return theta

    first = check()
    operator.set_flat_weights(rng.normal(size=operator.size) * 0.3)
    assert not np.allclose(check(), first)
    before = operator.flatten(model.get_weights())
    model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert not np.allclose(check(), before)
    operator.release()
    check()


@pytest.mark.skipif(BACKEND == "jax", reason="JAX has one method: jvp of grad")
def test_forward_over_reverse_equals_double_backward(mlp):
    """Forward-over-reverse beside double back-propagation (the default here)."""
    import importlib

    from keras_optnotes.diagnostics.operators import loss_function

    backend = importlib.import_module(f"keras_optnotes.diagnostics._backend.{BACKEND}")
    model, x, y, _ = mlp
    loss = loss_function(model, squared_error)
    forward = backend.BatchFunctions(
        model, loss, False, False, backend.FORWARD_OVER_REVERSE
    )
    double = backend.BatchFunctions(model, loss, False, False, backend.DOUBLE_BACKWARD)
    tx, ty = keras.ops.convert_to_tensor(x), keras.ops.convert_to_tensor(y)
    v = np.random.default_rng(10).normal(size=sum(forward.sizes))
    a = forward.hvp(tx, ty, None, forward.vector(v))
    b = double.hvp(tx, ty, None, double.vector(v))
    assert forward.hvp_method == backend.FORWARD_OVER_REVERSE  # no fallback taken
    assert double.hvp_method == backend.DOUBLE_BACKWARD
    assert relative_error(a, b) <= 1e-13


def test_hvp_per_variable_form_and_dataset_input(regression):
    tf = pytest.importorskip("tensorflow")
    model, x, y, hessian = regression
    v = [np.ones((5, 1)), np.array([2.0])]
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(48)
    result = hessian_vector_product(model, dataset, v, loss=squared_error)
    expected = hessian @ np.concatenate([np.ones(5), [2.0]])
    assert [r.shape for r in result] == [(5, 1), (1,)]
    assert (
        relative_error(np.concatenate([r.ravel() for r in result]), expected) <= 1e-12
    )


def test_hvp_weights_sample_weight_as_keras_does(regression):
    model, x, y, _ = regression
    weights = np.linspace(0.0, 2.0, len(x))
    design = np.hstack([x, np.ones((len(x), 1))])
    # Keras' mean reduction with sample weights divides by the batch size.
    hessian = 2.0 / len(x) * design.T @ (weights[:, None] * design)
    v = np.random.default_rng(2).normal(size=6)
    # One batch, so the batch-size weighting is the plain mean.
    hv = hessian_vector_product(
        model, (x, y, weights), v, batch_size=len(x), loss=squared_error
    )
    assert relative_error(hv, hessian @ v) <= 1e-12


# --- a small MLP: Hessian by central differences of a NumPy gradient ---------------


def mlp_gradient(theta, x, y, shapes):
    sizes = [int(np.prod(s)) for s in shapes]
    w1, b1, w2, b2 = (
        p.reshape(s) for p, s in zip(np.split(theta, np.cumsum(sizes)[:-1]), shapes)
    )
    hidden = 1.0 / (1.0 + np.exp(-(x @ w1 + b1)))
    out = hidden @ w2 + b2
    d_out = 2.0 * (out - y) / out.size  # mean over examples and outputs
    d_hidden = (d_out @ w2.T) * hidden * (1.0 - hidden)
    grads = [x.T @ d_hidden, d_hidden.sum(0), hidden.T @ d_out, d_out.sum(0)]
    return np.concatenate([g.ravel() for g in grads])


@pytest.fixture(scope="module")
def mlp():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(64, 3))
    y = rng.normal(size=(64, 2))
    model = keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            # sigmoid, not tanh: JAX's tanh of float64 is float32-precise.
            linear(4, activation="sigmoid"),
            linear(2),
        ]
    )
    keras.utils.set_random_seed(3)
    model.set_weights([rng.normal(size=w.shape) for w in model.get_weights()])
    model.compile(loss=MSE64)
    shapes = [tuple(w.shape) for w in model.get_weights()]
    theta = np.concatenate([w.ravel() for w in model.get_weights()])
    h = 1e-5
    columns = []
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = h
        columns.append(
            (
                mlp_gradient(theta + e, x, y, shapes)
                - mlp_gradient(theta - e, x, y, shapes)
            )
            / (2 * h)
        )
    hessian = np.array(columns).T
    return model, x, y, 0.5 * (hessian + hessian.T)


def test_hvp_mlp_matches_finite_difference_hessian(mlp):
    model, x, y, hessian = mlp
    before = [w.copy() for w in model.get_weights()]
    rng = np.random.default_rng(4)
    for _ in range(3):
        v = rng.normal(size=hessian.shape[0])
        hv = hessian_vector_product(model, (x, y), v, batch_size=16, loss=squared_error)
        # The reference is a central difference (h = 1e-5): its own error is ~h².
        assert relative_error(hv, hessian @ v) <= 1e-8
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_top_eigenvalue_mlp_matches_eigvalsh(mlp):
    model, x, y, hessian = mlp
    exact = np.linalg.eigvalsh(hessian)
    by_magnitude = exact[np.argsort(-np.abs(exact))]
    result = hessian_top_eigenvalues(
        model, (x, y), max_iterations=500, tolerance=1e-10, loss=squared_error
    )
    assert result.converged
    assert result.top == pytest.approx(by_magnitude[0], rel=1e-8)
    assert result.residuals[0] <= 1e-3 * abs(result.top)


def test_top_eigenvalues_with_deflation_linear_regression(regression):
    model, x, y, hessian = regression
    exact = np.sort(np.linalg.eigvalsh(hessian))[::-1]  # positive definite
    result = hessian_top_eigenvalues(
        model,
        (x, y),
        k=3,
        max_iterations=2000,
        tolerance=1e-12,
        seed=5,
        loss=squared_error,
    )
    assert result.converged
    np.testing.assert_allclose(result.eigenvalues, exact[:3], rtol=1e-10)
    # The eigenvectors are orthonormal and satisfy H u = λ u.
    np.testing.assert_allclose(
        result.eigenvectors @ result.eigenvectors.T, np.eye(3), atol=1e-12
    )
    for value, vector in zip(result.eigenvalues, result.eigenvectors):
        assert relative_error(hessian @ vector, value * vector) <= 1e-4


def test_power_iteration_on_indefinite_matrix_reports_non_convergence():
    rng = np.random.default_rng(6)
    q, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    spectrum = np.array([-9.0, 7.0, 4.0, 2.0, 1.0, 0.5, -0.2, 0.1])
    matrix = q @ np.diag(spectrum) @ q.T
    result = power_iteration(
        lambda v: matrix @ v, 8, k=2, max_iterations=3000, tolerance=1e-12
    )
    np.testing.assert_allclose(result.eigenvalues, [-9.0, 7.0], rtol=1e-6)
    short = power_iteration(
        lambda v: matrix @ v, 8, k=1, max_iterations=2, tolerance=1e-12
    )
    assert not short.converged
    assert short.iterations[0] == 2


def test_hutchinson_trace_within_three_standard_errors(regression):
    model, x, y, hessian = regression
    result = hessian_trace(model, (x, y), samples=100, seed=7, loss=squared_error)
    exact = np.trace(hessian)
    assert result.samples == 100 and result.converged
    # Var(zᵀHz) = 2 Σ_{i≠j} H_ij² for Rademacher z: the reported standard error is
    # its sample estimate over √100 (a relative spread of about 1/√(2·99) ≈ 7 %).
    variance = 2.0 * (np.sum(hessian**2) - np.sum(np.diag(hessian) ** 2))
    assert result.standard_error == pytest.approx(np.sqrt(variance / 100), rel=0.3)
    assert abs(result.trace - exact) <= 3 * result.standard_error


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    # Orthogonal columns, no bias: H = 2/N XᵀX = diag(h), and zᵀHz = Σ h_i z_i² = tr H
    # for every Rademacher z — the estimate is exact and its standard error zero.
    rng = np.random.default_rng(11)
    n = 64
    q, _ = np.linalg.qr(rng.normal(size=(n, 3)))
    x = q * np.array([4.0, 2.0, 0.5])
    y = rng.normal(size=(n, 1))
    model = keras.Sequential([keras.Input((3,), dtype="float64"), linear(1, False)])
    result = hessian_trace(model, (x, y), samples=5, seed=1, loss=squared_error)
    exact = 2.0 / n * np.sum(np.array([4.0, 2.0, 0.5]) ** 2)
    assert result.trace == pytest.approx(exact, rel=1e-12)
    assert result.standard_error <= 1e-12 * exact


def test_hutchinson_standard_error_matches_rademacher_variance():
    # Var(zᵀAz) = 2 Σ_{i≠j} A_ij² for Rademacher z; over many samples the reported
    # standard error must match √(Var / m).
    rng = np.random.default_rng(8)
    a = rng.normal(size=(6, 6))
    matrix = a + a.T
    variance = 2.0 * (np.sum(matrix**2) - np.sum(np.diag(matrix) ** 2))
    result = hutchinson(lambda v: matrix @ v, 6, samples=4000, seed=9)
    assert result.standard_error == pytest.approx(np.sqrt(variance / 4000), rel=0.1)
    assert abs(result.trace - np.trace(matrix)) <= 3 * result.standard_error
    early = hutchinson(lambda v: matrix @ v, 6, samples=4000, seed=9, tolerance=0.2)
    assert early.converged and 10 <= early.samples < 4000


# --- bad input -----------------------------------------------------------------------


def test_bad_input_raises_value_error_naming_the_argument(regression):
    tf = pytest.importorskip("tensorflow")
    model, x, y, _ = regression
    unbuilt = keras.Sequential([keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="not built"):
        hessian_top_eigenvalues(unbuilt, (x, y))
    with pytest.raises(ValueError, match="no batches"):
        hessian_trace(model, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="no batches"):
        hessian_trace(
            model, tf.data.Dataset.from_tensor_slices((x, y)).take(0).batch(4)
        )
    with pytest.raises(ValueError, match="`k`.*Received: k=0"):
        hessian_top_eigenvalues(model, (x, y), k=0)
    with pytest.raises(ValueError, match="`samples`.*Received: samples=1"):
        hessian_trace(model, (x, y), samples=1)
    uncompiled = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="not compiled"):
        hessian_trace(uncompiled, (x, y))
    with pytest.raises(ValueError, match=r"`vector`.*\(6,\)"):
        hessian_vector_product(model, (x, y), np.ones(3))


def test_non_finite_data_is_not_reported_as_converged(regression):
    model, x, y, _ = regression
    bad = x.copy()
    bad[3, 1] = np.nan
    trace = hessian_trace(model, (bad, y), samples=4)
    assert not trace.converged
    eigen = hessian_top_eigenvalues(model, (bad, y), max_iterations=50)
    assert not eigen.converged and eigen.iterations[0] < 50
