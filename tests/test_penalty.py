"""ParameterNormPenalty and apply_penalty against closed forms in float64 NumPy.

Backend-independent: runs on TensorFlow, JAX and PyTorch.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_optnotes.regularizers import ParameterNormPenalty, apply_penalty

W = np.array([[0.5, -1.5, 2.0], [-0.25, 0.0, 1.0]])


@pytest.mark.parametrize(
    "norm, value, gradient",
    [
        # alpha/2 * sum(W^2) = 0.15 * 7.5625 ; gradient alpha * W
        (2, 0.15 * 7.5625, 0.3 * W),
        # alpha * sum(|W|) = 0.3 * 5.25 ; gradient alpha * sign(W), 0 where W = 0
        # on every backend (JAX's own |x| has the gradient 1 at 0)
        (1, 0.3 * 5.25, 0.3 * np.sign(W)),
    ],
)
def test_value_and_gradient_match_the_closed_form(norm, value, gradient):
    penalty = ParameterNormPenalty(0.3, norm=norm)
    assert float(penalty(ops.convert_to_tensor(W, "float64"))) == pytest.approx(
        value, rel=1e-12
    )
    # The gradient as training sees it: a float64 layer y = x W whose only loss is
    # the penalty (no data loss compiled), one SGD step of rate 1 gives W - dΩ/dW.
    layer = keras.layers.Dense(
        3, use_bias=False, kernel_regularizer=penalty, dtype="float64"
    )
    model = keras.Sequential([keras.Input((2,), dtype="float64"), layer])
    layer.kernel.assign(W)
    model.compile(optimizer=keras.optimizers.SGD(1.0))
    history = model.fit(np.ones((1, 2)), epochs=1, verbose=0)
    # (Keras' loss tracker averages in float32.)
    assert history.history["loss"][0] == pytest.approx(value, rel=1e-7)
    np.testing.assert_allclose(
        ops.convert_to_numpy(layer.kernel), W - gradient, rtol=0, atol=1e-12
    )


def test_half_of_keras_l2():
    # Keras' L2(l2) is l2 * ||W||^2: the notes' alpha/2 convention is L2(alpha / 2).
    x = ops.convert_to_tensor(W, "float32")
    ours = float(ParameterNormPenalty(0.3)(x))
    assert ours == pytest.approx(float(keras.regularizers.L2(0.15)(x)), rel=1e-6)


def test_config_round_trip():
    penalty = ParameterNormPenalty(0.25, norm=1)
    restored = keras.regularizers.deserialize(keras.regularizers.serialize(penalty))
    assert isinstance(restored, ParameterNormPenalty)
    assert restored.get_config() == {"alpha": 0.25, "norm": 1}


def build_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(4, name="first")(inputs)
    hidden = keras.layers.BatchNormalization(name="norm")(hidden)
    outputs = keras.layers.Dense(2, name="last")(hidden)
    return keras.Model(inputs, outputs)


def test_biases_and_normalization_are_left_alone():
    model = build_model()
    penalized = apply_penalty(model, ParameterNormPenalty(0.1))
    assert sorted(v.path for v in penalized) == ["first/kernel", "last/kernel"]
    for layer, name in [("first", "bias"), ("last", "bias"), ("norm", "gamma")]:
        variable = next(v for v in model.get_layer(layer).weights if v.name == name)
        assert variable.regularizer is None
    kernels = [
        model.get_layer(n).kernel.numpy().astype("float64") for n in ("first", "last")
    ]
    expected = [0.05 * np.sum(k**2) for k in kernels]
    np.testing.assert_allclose([float(x) for x in model.losses], expected, rtol=1e-6)


def test_include_and_all_weights():
    model = build_model()
    only_first = apply_penalty(
        model, ParameterNormPenalty(0.1), include=lambda layer, v: layer.name == "first"
    )
    assert [v.path for v in only_first] == ["first/kernel"]
    everything = apply_penalty(
        build_model(), ParameterNormPenalty(0.1), skip_bias_and_normalization=False
    )
    # Two kernels, two biases, gamma and beta; the moving statistics are not trainable.
    assert len(everything) == 6


def test_one_training_step_adds_alpha_w_to_the_gradient():
    # A linear layer with MSE: the data gradient is 2/(N M) x^T (x W + b - y), done in
    # float64 NumPy; the penalty adds alpha W to the kernel's gradient, not the bias'.
    alpha, learning_rate = 0.5, 0.1
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 3))
    y = rng.normal(size=(8, 2))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    apply_penalty(model, ParameterNormPenalty(alpha))
    kernel, bias = (w.astype("float64") for w in model.get_weights())
    residual = x @ kernel + bias - y
    data_loss = np.mean(residual**2)
    grad_kernel = 2.0 / residual.size * x.T @ residual + alpha * kernel
    grad_bias = 2.0 / residual.size * residual.sum(axis=0)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="mse")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    # The reported training loss is data loss + penalty at the starting weights.
    expected_loss = data_loss + alpha / 2 * np.sum(kernel**2)
    assert history.history["loss"][0] == pytest.approx(expected_loss, rel=1e-5)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(
        new_kernel, kernel - learning_rate * grad_kernel, atol=1e-6
    )
    np.testing.assert_allclose(new_bias, bias - learning_rate * grad_bias, atol=1e-6)


def test_penalized_model_round_trips_through_keras_file(tmp_path):
    model = build_model()
    apply_penalty(model, ParameterNormPenalty(0.2, norm=1))
    path = tmp_path / "penalized.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    regularizer = loaded.get_layer("first").kernel.regularizer
    assert isinstance(regularizer, ParameterNormPenalty)
    assert regularizer.get_config() == {"alpha": 0.2, "norm": 1}
    assert loaded.get_layer("first").bias.regularizer is None
    np.testing.assert_allclose(
        [float(x) for x in loaded.losses], [float(x) for x in model.losses], rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": float("inf")}, "alpha"),
        ({"alpha": "0.1"}, "alpha"),
        ({"alpha": 0.1, "norm": 3}, "norm"),
    ],
)
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ParameterNormPenalty(**kwargs)


def test_apply_penalty_needs_a_built_model_and_a_callable():
    unbuilt = keras.Sequential([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="built"):
        apply_penalty(unbuilt, ParameterNormPenalty(0.1))
    with pytest.raises(ValueError, match="penalty"):
        apply_penalty(build_model(), 0.1)
