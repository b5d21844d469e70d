"""The learning-rate scaling rules for a larger batch, and Keras' warm-up with them."""

import math

import keras
import numpy as np
import pytest

from keras_optnotes.optimizers import scaled_learning_rate


@pytest.mark.parametrize(
    "base, base_batch, batch, rule, expected",
    [
        (0.1, 256, 8192, "linear", 3.2),  # Goyal et al.: 0.1 per 256
        (0.1, 256, 64, "linear", 0.025),
        (0.1, 256, 1024, "sqrt", 0.2),
        (0.01, 32, 8, "sqrt", 0.005),
        (0.3, 128, 128, "sqrt", 0.3),
        (0.05, np.int64(32), np.int32(96), "linear", 0.15),
    ],
)
def test_rules(base, base_batch, batch, rule, expected):
    value = scaled_learning_rate(base, base_batch, batch, rule=rule)
    assert isinstance(value, float)
    assert value == pytest.approx(expected, rel=1e-15)


def test_linear_is_the_default():
    assert scaled_learning_rate(0.1, 100, 300) == pytest.approx(0.3, rel=1e-15)


def test_with_keras_cosine_warm_up():
    """The docstring's recipe: linear warm-up from 0 to the scaled rate, then cosine."""
    peak = scaled_learning_rate(0.1, 256, 1024)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=100, warmup_target=peak, warmup_steps=10
    )
    rates = [float(keras.ops.convert_to_numpy(schedule(s))) for s in (0, 5, 10, 60)]
    expected = [0.0, 0.2, 0.4, 0.4 * 0.5 * (1 + math.cos(math.pi * 0.5))]
    np.testing.assert_allclose(rates, expected, rtol=1e-6, atol=1e-7)


BAD = [
    ("base_learning_rate", 0.0),
    ("base_learning_rate", -0.1),
    ("base_learning_rate", math.inf),
    ("base_batch_size", 0),
    ("base_batch_size", -32),
    ("base_batch_size", 32.0),
    ("batch_size", 0),
    ("batch_size", -1),
    ("batch_size", "64"),
    ("rule", "square"),
    ("rule", "Linear"),
    ("rule", None),
]


@pytest.mark.parametrize("name, value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_argument_raises_naming_it(name, value):
    kwargs = {"base_learning_rate": 0.1, "base_batch_size": 32, "batch_size": 64}
    kwargs[name] = value
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        scaled_learning_rate(**kwargs)
    assert repr(value) in str(error.value)
