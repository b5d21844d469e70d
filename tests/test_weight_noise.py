"""WeightNoise: fresh noise in training, none at inference, the kernel never written."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_optnotes.layers import WeightNoise


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
    kernel, bias = (w.copy() for w in layer.layer.get_weights())
    first = layer(x, training=True).numpy()
    second = layer(x, training=True).numpy()
    assert np.abs(first - second).max() > 1e-3
    clean = x.astype("float64") @ kernel + bias
    np.testing.assert_allclose(layer(x, training=False), clean, atol=1e-5)
    np.testing.assert_array_equal(layer(x).numpy(), layer(x).numpy())
    # The noise was substituted for the call only: the variables are untouched.
    np.testing.assert_array_equal(layer.layer.kernel.numpy(), kernel)
    np.testing.assert_array_equal(layer.layer.bias.numpy(), bias)


def test_noise_has_the_requested_standard_deviation():
    # Zero kernel and identity inputs: the training output is the noise itself.
    layer = WeightNoise(linear(64, kernel_initializer="zeros"), stddev=0.3, seed=0)
    noise = layer(np.eye(64, dtype="float32"), training=True).numpy()
    assert abs(noise.mean()) < 0.3 * 4 / 64  # 4 standard errors of 4096 draws
    assert noise.std() == pytest.approx(0.3, rel=0.05)


def test_gradient_reaches_the_kernel():
    # For y = x (W + eps), d sum(y) / dW = x^T 1 whatever the noise eps.
    layer = WeightNoise(linear(3), stddev=0.5, seed=1)
    x = np.arange(8, dtype="float32").reshape(4, 2)
    layer(x)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(layer(x, training=True))
    gradient = tape.gradient(total, layer.layer.kernel.value)
    expected = x.astype("float64").T @ np.ones((4, 3))
    np.testing.assert_allclose(gradient, expected, rtol=1e-6)


def test_noise_is_fresh_inside_an_xla_compiled_function():
    layer = WeightNoise(keras.layers.Dense(4), stddev=0.1, seed=2)
    x = np.ones((2, 3), dtype="float32")
    layer(x)
    kernel = layer.layer.kernel.numpy().copy()
    noisy = tf.function(lambda v: layer(v, training=True), jit_compile=True)
    first, second = noisy(x).numpy(), noisy(x).numpy()
    assert np.abs(first - second).max() > 1e-4
    np.testing.assert_array_equal(layer.layer.kernel.numpy(), kernel)


def test_fit_with_jit_compile_and_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]])).astype("float32")
    model = keras.Sequential(
        [keras.Input((4,)), WeightNoise(keras.layers.Dense(1), stddev=0.01, seed=4)]
    )
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse", jit_compile=True)
    history = model.fit(x, y, batch_size=4, epochs=4, verbose=0)
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]
    path = tmp_path / "noisy.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.layers[0], WeightNoise)
    assert loaded.layers[0].stddev == 0.01
    np.testing.assert_array_equal(
        loaded.predict(x, verbose=0), model.predict(x, verbose=0)
    )


def test_zero_stddev_is_the_plain_layer():
    layer = WeightNoise(keras.layers.Dense(2), stddev=0)
    x = np.ones((3, 2), dtype="float32")
    np.testing.assert_array_equal(layer(x, training=True), layer(x, training=False))


@pytest.mark.parametrize("stddev", [-0.1, float("nan"), "0.1", None])
def test_bad_stddev(stddev):
    with pytest.raises(ValueError, match="stddev"):
        WeightNoise(keras.layers.Dense(2), stddev=stddev)


def test_layer_without_kernel_is_refused():
    layer = WeightNoise(keras.layers.LayerNormalization(), stddev=0.1)
    with pytest.raises(ValueError, match="kernel"):
        layer(np.ones((2, 3), dtype="float32"))
