"""The diagnostics through layers of real architectures, on every backend.

- H v through an `Embedding` (on TensorFlow its gradient is a `tf.IndexedSlices`)
  against the Hessian worked out by hand in float64 NumPy.
- H v through `MultiHeadAttention` (on PyTorch scaled-dot-product attention, whose
  fused kernels have no second derivative) against central differences of the
  gradient in float64.
- No diagnostic changes a model's variables, also with `training=True` on a model
  with batch normalization and dropout (its moving statistics, the dropout seed).
"""

import keras
import numpy as np
import pytest

from keras_optnotes.callbacks import SharpnessMonitor
from keras_optnotes.diagnostics import (
    HessianOperator,
    hessian_top_eigenvalues,
    hessian_trace,
    hessian_vector_product,
    keskar_sharpness,
    loss_along_line,
    loss_surface,
    lr_range_test,
    random_direction,
)

BACKEND = keras.backend.backend()


def squared_error(y_true, y_pred):
    """Per-entry squared error, averaged by the diagnostics with a sum (float64-exact
    on every backend, unlike Keras 3.15's `ops.mean` off TensorFlow)."""
    return keras.ops.square(y_pred - y_true)


def linear(units):
    """A float64 dense layer on einsum (float64-exact on every backend)."""
    return keras.layers.EinsumDense(
        "ab,bc->ac", output_shape=units, bias_axes="c", dtype="float64"
    )


def relative_error(a, b):
    return np.linalg.norm(np.ravel(a) - np.ravel(b)) / np.linalg.norm(np.ravel(b))


# --- Embedding: z_n = Σ_t E[i_nt] · w_t + b, f = (1/N) Σ_n (z_n − y_n)² -----------

V, D, T = 5, 3, 4  # vocabulary, embedding width, tokens per example


@pytest.fixture(scope="module")
def embedding_problem():
    rng = np.random.default_rng(0)
    # Repeated ids within and across examples: the IndexedSlices repeat indices.
    ids = np.array([[1, 2, 2, 4], [0, 4, 4, 4], [3, 1, 1, 2], [2, 2, 0, 1]], "int32")
    y = rng.normal(size=(len(ids), 1))
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((T,), dtype="int32"),
            keras.layers.Embedding(V, D, dtype="float64"),
            keras.layers.Flatten(dtype="float64"),
            linear(1),
        ]
    )
    return model, ids, y


def embedding_hessian(E, w, b, ids, y):
    """The full Hessian of f over θ = (E, w, b), flattened in that order.

    With J_n = ∂z_n/∂θ and r_n = z_n − y_n, H = (2/N) Σ_n (J_n J_nᵀ + r_n ∂²z_n/∂θ²),
    where ∂z_n/∂E[v, j] = Σ_t [i_nt = v] w[t·D + j], ∂z_n/∂w[t·D + j] = E[i_nt, j],
    ∂z_n/∂b = 1 and the only second derivatives are ∂²z_n/∂E[v, j]∂w[t·D + j] =
    [i_nt = v].
    """
    n_e, n_w = V * D, T * D
    size = n_e + n_w + 1
    H = np.zeros((size, size))
    w = w.ravel()
    for n, row in enumerate(ids):
        z = sum(E[v] @ w[t * D : (t + 1) * D] for t, v in enumerate(row)) + b[0]
        r = z - y[n, 0]
        J = np.zeros(size)
        K = np.zeros((size, size))
        for t, v in enumerate(row):
            for j in range(D):
                J[v * D + j] += w[t * D + j]
                J[n_e + t * D + j] = E[v, j]
                K[v * D + j, n_e + t * D + j] += 1.0
        J[-1] = 1.0
        K = K + K.T
        H += 2.0 * (np.outer(J, J) + r * K)
    return H / len(ids)


def test_hvp_through_an_embedding_matches_the_hessian_by_hand(embedding_problem):
    model, ids, y = embedding_problem
    E, w, b = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    H = embedding_hessian(E, w, b, ids, y)
    vector = np.random.default_rng(1).normal(size=len(H))
    product = hessian_vector_product(
        model, (ids, y), vector, loss=squared_error, batch_size=3
    )
    assert relative_error(product, H @ vector) < 1e-12


def test_top_eigenvalue_and_trace_through_an_embedding(embedding_problem):
    model, ids, y = embedding_problem
    E, w, b = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    eigenvalues = np.linalg.eigvalsh(embedding_hessian(E, w, b, ids, y))
    top = eigenvalues[np.argmax(np.abs(eigenvalues))]
    result = hessian_top_eigenvalues(
        model, (ids, y), tolerance=1e-10, max_iterations=500, loss=squared_error
    )
    assert result.top == pytest.approx(top, rel=1e-6)
    trace = hessian_trace(model, (ids, y), samples=4, loss=squared_error)
    assert np.isfinite(trace.trace)


# --- MultiHeadAttention ---------------------------------------------------------------


@pytest.fixture(scope="module")
def attention_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4, 3))
    y = rng.normal(size=(6, 1))
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 3), dtype="float64")
    h = keras.layers.MultiHeadAttention(2, 2, dtype="float64")(inputs, inputs)
    h = keras.layers.Flatten(dtype="float64")(h)
    model = keras.Model(inputs, linear(1)(h))
    return model, x, y


def test_hvp_through_attention_matches_differences_of_the_gradient(attention_problem):
    """(∇f(θ + h v) − ∇f(θ − h v)) / 2h = H v + O(h²).

    On TensorFlow the float64 model is float64-exact: h = 1e-5, relative 1e-7. On
    JAX and PyTorch Keras 3.15's attention rounds float64 at float32 precision
    (gradients good to ~1e-7 relative), so the differences take h = 1e-3 and agree
    to 2e-3 there, far below what a wrong product (or none) gives.
    """
    model, x, y = attention_problem
    operator = HessianOperator(model, (x, y), loss=squared_error)
    vector = np.random.default_rng(2).normal(size=operator.size)
    product = operator.matvec(vector)
    theta = operator.flatten(operator.get_weights())
    h, tolerance = (1e-5, 1e-7) if BACKEND == "tensorflow" else (1e-3, 2e-3)
    operator.set_flat_weights(theta + h * vector)
    plus = operator.loss_and_gradient()[1]
    operator.set_flat_weights(theta - h * vector)
    minus = operator.loss_and_gradient()[1]
    operator.set_flat_weights(theta)
    assert relative_error(product, (plus - minus) / (2 * h)) < tolerance


# --- nothing changes the model's variables ---------------------------------------------


@pytest.fixture
def batch_norm_model():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x[:, :1] - x[:, 1:2]).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(6),
            keras.layers.BatchNormalization(momentum=0.5),
            keras.layers.Dropout(0.25),
            keras.layers.Dense(1),
        ]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    return model, x, y


def _values(variables):
    return [np.array(keras.ops.convert_to_numpy(v), copy=True) for v in variables]


def _directions(model):
    return tuple(random_direction(model, seed=s) for s in (0, 1))


def _monitor_epoch_end(model, data):
    """What `SharpnessMonitor` does at the end of an epoch of `fit` (the training
    steps around it move the variables anyway)."""
    monitor = SharpnessMonitor(data, max_iterations=3, trace_samples=2, training=True)
    monitor.set_model(model)
    monitor.on_train_begin()
    logs = {}
    monitor.on_epoch_end(0, logs)
    assert np.isfinite(logs["hessian_top_eigenvalue"])


DIAGNOSTICS = {
    "hessian_vector_product": lambda m, d: hessian_vector_product(
        m, d, [np.ones(v.shape) for v in m.trainable_variables], training=True
    ),
    "hessian_top_eigenvalues": lambda m, d: hessian_top_eigenvalues(
        m, d, k=2, max_iterations=4, training=True, batch_size=16
    ),
    "hessian_trace": lambda m, d: hessian_trace(
        m, d, samples=3, training=True, batch_size=16
    ),
    "keskar_sharpness": lambda m, d: keskar_sharpness(
        m, d, max_iterations=2, training=True
    ),
    "loss_along_line": lambda m, d: loss_along_line(
        m, d, _directions(m)[0], [-0.5, 0.0, 0.5], training=True
    ),
    "loss_surface": lambda m, d: loss_surface(
        m, d, _directions(m), [-0.5, 0.5], training=True
    ),
    "lr_range_test": lambda m, d: lr_range_test(m, d, steps=4, batch_size=16),
    "SharpnessMonitor": lambda m, d: _monitor_epoch_end(m, d),
}


@pytest.mark.parametrize("name", DIAGNOSTICS)
def test_a_diagnostic_in_training_mode_leaves_every_variable(name, batch_norm_model):
    model, x, y = batch_norm_model
    before = _values(model.variables)
    DIAGNOSTICS[name](model, (x, y))
    after = _values(model.variables)
    paths = [v.path for v in model.variables]
    assert any("moving_mean" in p for p in paths)
    assert any("seed_generator" in p for p in paths)
    for path, a, b in zip(paths, after, before):
        np.testing.assert_array_equal(a, b, err_msg=path)
