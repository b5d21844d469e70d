"""The normalization factory against float64 NumPy statistics (on every backend)."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_optnotes.layers import (
    GroupNormalization,
    InstanceNormalization,
    normalization,
)

EPSILON = 1e-3
X = np.random.default_rng(0).normal(2.0, 3.0, size=(4, 5, 6, 4))


def standardize(x, axes):
    mean = x.mean(axis=axes, keepdims=True)
    variance = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(variance + EPSILON)


@pytest.mark.parametrize(
    "kind, cls",
    [
        ("batch", keras.layers.BatchNormalization),
        ("Layer", keras.layers.LayerNormalization),
        ("INSTANCE", InstanceNormalization),
        ("group", GroupNormalization),
    ],
)
def test_kind_gives_the_keras_layer(kind, cls):
    assert type(normalization(kind)) is cls


def test_instance_normalizes_each_example_and_channel_over_space():
    layer = normalization("instance", epsilon=EPSILON)
    assert layer.groups == -1
    out = ops.convert_to_numpy(layer(X.astype("float32")))
    np.testing.assert_allclose(out, standardize(X, (1, 2)), atol=1e-4)


def test_group_normalizes_over_space_and_a_group_of_channels():
    out = ops.convert_to_numpy(
        normalization("group", groups=2, epsilon=EPSILON)(X.astype("float32"))
    )
    grouped = X.reshape(4, 5, 6, 2, 2)  # channels (0, 1) and (2, 3)
    expected = standardize(grouped, (1, 2, 4)).reshape(X.shape)
    np.testing.assert_allclose(out, expected, atol=1e-4)


def test_layer_normalizes_the_features_of_each_example():
    x = X.reshape(4, -1)
    out = ops.convert_to_numpy(
        normalization("layer", epsilon=EPSILON)(x.astype("float32"))
    )
    np.testing.assert_allclose(out, standardize(x, (1,)), atol=1e-4)


def test_batch_uses_batch_statistics_in_training_moving_ones_at_inference():
    layer = normalization("batch", epsilon=EPSILON, momentum=0.5)
    x = X.astype("float32")
    training = ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(training, standardize(X, (0, 1, 2)), atol=1e-4)
    # One update from the initial (mean 0, variance 1) with momentum 0.5.
    moving_mean = 0.5 * X.mean(axis=(0, 1, 2))
    moving_variance = 0.5 + 0.5 * X.var(axis=(0, 1, 2))
    inference = ops.convert_to_numpy(layer(x, training=False))
    expected = (X - moving_mean) / np.sqrt(moving_variance + EPSILON)
    np.testing.assert_allclose(inference, expected, atol=1e-4)


@pytest.mark.parametrize("kind", ["weight", "", None, "batchnorm"])
def test_unknown_kind(kind):
    with pytest.raises(ValueError, match="kind"):
        normalization(kind)


def test_instance_refuses_another_group_count():
    with pytest.raises(ValueError, match="groups=2"):
        normalization("instance", groups=2)


def test_keras_group_normalization_outputs_beta_on_groups_of_one_value():
    # The trap the package's layers refuse (below): one value per group, x̂ = 0.
    layer = keras.layers.GroupNormalization(groups=-1)
    out = ops.convert_to_numpy(layer(np.arange(24.0, dtype="float32").reshape(4, 6)))
    np.testing.assert_array_equal(out, np.zeros((4, 6)))


def test_instance_is_a_group_normalization_that_round_trips_its_config():
    layer = normalization("instance", epsilon=1e-4, center=False)
    assert isinstance(layer, keras.layers.GroupNormalization) and layer.groups == -1
    clone = InstanceNormalization.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize(
    "kind, arguments, shape",
    [
        ("group", {"groups": 6}, (4, 6)),
        ("group", {"groups": -1}, (4, 6)),
        ("instance", {}, (4, 6)),
        ("instance", {}, (4, 1, 1, 6)),
    ],
)
def test_groups_of_one_value_are_refused(kind, arguments, shape):
    layer = normalization(kind, **arguments)
    with pytest.raises(ValueError, match=r"single value.*β.*input_shape=\("):
        layer(np.ones(shape, "float32"))


def test_group_normalizes_dense_features_in_groups():
    # Three groups of two features: each pair standardized over its two values.
    x = np.arange(24.0).reshape(4, 6) ** 1.5
    out = ops.convert_to_numpy(
        normalization("group", groups=3, epsilon=EPSILON)(x.astype("float32"))
    )
    expected = standardize(x.reshape(4, 3, 2), (2,)).reshape(4, 6)
    np.testing.assert_allclose(out, expected, atol=1e-4)
