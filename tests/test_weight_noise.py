"""WeightNoise: fresh noise in training, none at inference, the kernel never written.

Backend-independent: runs on TensorFlow, JAX and PyTorch.
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_optnotes.layers import WeightNoise

# XLA where the backend compiles the train step with it (torch.compile is another thing).
JIT = keras.backend.backend() != "torch"


def numpy(x):
    return ops.convert_to_numpy(x).astype("float64")


def linear(units, **kwargs):
    return keras.layers.Dense(units, use_bias=False, **kwargs)


@pytest.fixture(scope="module")
def wrapped():
    rng = np.random.default_rng(0)
    layer = WeightNoise(keras.layers.Dense(5), stddev=0.2, seed=3)
    x = rng.normal(size=(6, 4)).astype("float32")
    layer(x)
    return layer, x


def test_training_calls_differ_inference_calls_do_not(wrapped):
    layer, x = wrapped
    kernel, bias = (w.astype("float64") for w in layer.layer.get_weights())
    first, second = numpy(layer(x, training=True)), numpy(layer(x, training=True))
    assert np.abs(first - second).max() > 1e-3
    clean = x.astype("float64") @ kernel + bias
    np.testing.assert_allclose(numpy(layer(x, training=False)), clean, atol=1e-5)
    np.testing.assert_array_equal(numpy(layer(x)), numpy(layer(x)))
    # The noise is on the kernel only: the bias reaches the output unperturbed, so
    # with the input 0 the training output is the bias.
    np.testing.assert_allclose(
        numpy(layer(np.zeros((2, 4), "float32"), training=True)), [bias] * 2, atol=1e-7
    )
    # The noise was substituted for the call only: the variables are untouched.
    np.testing.assert_array_equal(numpy(layer.layer.kernel), kernel)
    np.testing.assert_array_equal(numpy(layer.layer.bias), bias)


def test_noise_has_the_requested_standard_deviation():
    # Zero kernel and identity inputs: the training output is the noise itself.
    layer = WeightNoise(linear(64, kernel_initializer="zeros"), stddev=0.3, seed=0)
    noise = numpy(layer(np.eye(64, dtype="float32"), training=True))
    assert abs(noise.mean()) < 0.3 * 4 / 64  # 4 standard errors of 4096 draws
    assert noise.std() == pytest.approx(0.3, rel=0.05)


def float64_model(layer, inputs):
    return keras.Sequential([keras.Input((inputs,), dtype="float64"), layer])


def test_fit_step_gives_kernel_and_bias_their_exact_gradient():
    # For the loss L = mean_n sum_j y_nj with y = x (W + eps) + b, the gradient is
    # dL/dW = x^T 1 / N and dL/db = 1 whatever the noise eps: one SGD step in
    # float64 moves both by exactly -lr times that, inside the compiled train step.
    # Keras' array adapter hands float64 arrays to the model in float32: take inputs
    # that float32 holds exactly.
    x = np.random.default_rng(2).normal(size=(4, 2)).astype("float32").astype("float64")
    layer = WeightNoise(keras.layers.Dense(3, dtype="float64"), stddev=0.5, seed=1)
    model = float64_model(layer, 2)
    kernel, bias = model.get_weights()
    model.compile(
        optimizer=keras.optimizers.SGD(0.25),  # a power of two: exact in float32
        loss=lambda y_true, y_pred: ops.sum(y_pred, axis=-1),
        jit_compile=JIT,
    )
    model.fit(x, np.zeros((4, 3)), batch_size=4, epochs=1, shuffle=False, verbose=0)
    new_kernel, new_bias = model.get_weights()
    np.testing.assert_allclose(
        new_kernel, kernel - 0.25 * x.T @ np.ones((4, 3)) / 4, rtol=0, atol=1e-12
    )
    np.testing.assert_allclose(new_bias, bias - 0.25, rtol=0, atol=1e-12)


def test_noise_is_fresh_at_every_compiled_train_step():
    # Learning rate 0: the weights never move, so three different losses on the same
    # batch can only come from three different noise draws inside the compiled step.
    x = np.random.default_rng(3).normal(size=(8, 3)).astype("float32")
    model = keras.Sequential(
        [keras.Input((3,)), WeightNoise(keras.layers.Dense(2), stddev=0.1, seed=2)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse", jit_compile=JIT)
    weights = model.get_weights()
    losses = [float(model.train_on_batch(x, np.ones((8, 2)))) for _ in range(3)]
    assert len(set(losses)) == 3
    for before, after in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)


class CountingLinear(keras.layers.Layer):
    """y = x W; counts its training calls in a non-trainable variable."""

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], 1), name="kernel")
        self.calls = self.add_weight(
            shape=(), initializer="zeros", trainable=False, name="calls"
        )

    def call(self, inputs, training=None):
        if training:
            self.calls.assign_add(1.0)
        return ops.matmul(inputs, self.kernel)


def test_wrapped_layer_keeps_its_state_updates_and_activity_losses():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(8, 3)).astype("float32")
    counting = CountingLinear()
    model = keras.Sequential(
        [keras.Input((3,)), WeightNoise(counting, stddev=0.1, seed=5)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=JIT)
    model.fit(x, np.ones((8, 1)), batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert float(numpy(counting.calls)) == 2.0  # two train steps
    # An activity regularizer of the wrapped layer sees the noisy output: L2(0.5)
    # adds 0.5 sum(y^2) / N.
    layer = WeightNoise(
        keras.layers.Dense(2, activity_regularizer=keras.regularizers.L2(0.5)),
        stddev=0.3,
    )
    outputs = numpy(layer(x, training=True))
    (penalty,) = layer.losses
    assert float(numpy(penalty)) == pytest.approx(0.5 * np.sum(outputs**2) / 8, 1e-5)


def test_fit_round_trip_through_a_keras_file(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]])).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), WeightNoise(keras.layers.Dense(1), stddev=0.01, seed=4)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=JIT)
    history = model.fit(x, y, batch_size=4, epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]
    path = tmp_path / "noisy.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], WeightNoise)
    assert loaded.layers[0].stddev == 0.01 and loaded.layers[0].seed == 4
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_zero_stddev_is_the_plain_layer():
    layer = WeightNoise(keras.layers.Dense(2), stddev=0)
    x = np.ones((3, 2), dtype="float32")
    np.testing.assert_array_equal(
        numpy(layer(x, training=True)), numpy(layer(x, training=False))
    )


@pytest.mark.parametrize("stddev", [-0.1, float("nan"), "0.1", None])
def test_bad_stddev(stddev):
    with pytest.raises(ValueError, match="stddev"):
        WeightNoise(keras.layers.Dense(2), stddev=stddev)


def test_layer_without_kernel_is_refused():
    layer = WeightNoise(keras.layers.LayerNormalization(), stddev=0.1)
    with pytest.raises(ValueError, match="kernel"):
        layer(np.ones((2, 3), dtype="float32"))
