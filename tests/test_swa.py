"""Stochastic weight averaging: the final weights are the arithmetic mean of the right
snapshots, and batch-norm statistics are those of the data under the averaged weights
(closed forms, float64). Runs on every backend.
"""

import warnings

import keras
import numpy as np
import pytest

from keras_optnotes.callbacks import (
    StochasticWeightAveraging,
    recompute_batch_normalization_statistics,
)

N = 50  # not a multiple of the batch size: the last batch is smaller
# Keras' PyTorch backend computes this float64 Dense layer's output to 1.6e-7 only
# (measured against NumPy, without any callback): the closed forms below allow it.
DENSE_RTOL = 1e-6 if keras.backend.backend() == "torch" else 1e-12


def _data(seed=0):
    rng = np.random.default_rng(seed)
    # Values exact in float32 (Keras feeds arrays as floatx).
    x = rng.normal(size=(N, 4)).astype("float32").astype("float64")
    y = (x @ np.array([[1.0], [-2.0], [0.5], [0.0]]) + 0.3).astype("float32")
    return x, y.astype("float64")


def _model(batch_norm=False, seed=0):
    keras.utils.set_random_seed(seed)
    layers = [
        keras.Input((4,), dtype="float64"),
        keras.layers.Dense(3, dtype="float64"),
    ]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization(dtype="float64"))
    layers += [keras.layers.Activation("tanh"), keras.layers.Dense(1, dtype="float64")]
    model = keras.Sequential(layers)
    model.compile(
        keras.optimizers.SGD(0.05),
        loss=keras.losses.MeanSquaredError(dtype="float64"),
    )
    return model


class _Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.snapshots = []

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append(
            [keras.ops.convert_to_numpy(w).copy() for w in self.model.trainable_weights]
        )


@pytest.mark.parametrize(
    "start_epoch, frequency, epochs, expected_epochs",
    [(2, 1, 5, [2, 3, 4]), (1, 2, 6, [1, 3, 5]), (0, 3, 5, [0, 3]), (4, 1, 5, [4])],
)
def test_final_weights_are_the_mean_of_the_snapshots(
    start_epoch, frequency, epochs, expected_epochs
):
    x, y = _data()
    model = _model()
    recorder = _Recorder()
    swa = StochasticWeightAveraging(start_epoch, frequency)
    model.fit(x, y, batch_size=16, epochs=epochs, verbose=0, callbacks=[recorder, swa])
    assert swa.snapshot_count == len(expected_epochs)
    assert [e for e in range(epochs) if swa.takes_snapshot(e)] == expected_epochs
    for i, final in enumerate(model.trainable_weights):
        mean = np.mean([recorder.snapshots[e][i] for e in expected_epochs], axis=0)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(final), mean, rtol=1e-12, atol=1e-14
        )
    # The last epoch's weights differ from the average: the test sees the swap.
    if len(expected_epochs) > 1:
        assert not np.allclose(recorder.snapshots[-1][0], model.get_weights()[0])


def _batch_norm_input(model, x):
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.layers[0].weights)
    return x @ kernel + bias


@pytest.mark.parametrize("batches", ["array", "iterator"])
def test_batch_norm_statistics_are_the_datas_under_the_averaged_weights(batches):
    x, y = _data()
    model = _model(batch_norm=True)
    bn = model.layers[1]
    # An array is cut into batches; an iterator yields them as they are.
    data = x if batches == "array" else (x[i : i + 16] for i in range(0, N, 16))
    swa = StochasticWeightAveraging(1, batch_norm_data=data, batch_size=16)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[swa])
    h = _batch_norm_input(model, x)  # the BN input under the averaged weights
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_mean), h.mean(axis=0), rtol=DENSE_RTOL
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(bn.moving_variance), h.var(axis=0), rtol=DENSE_RTOL
    )


def test_batch_norm_statistics_with_a_batch_norm_upstream():
    """In training mode the upstream BN normalizes each batch by its own statistics;
    the downstream BN's statistics are those of what it receives in that pass."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="float64"),
            keras.layers.BatchNormalization(dtype="float64", epsilon=1e-3),
            keras.layers.Dense(3, dtype="float64"),
            keras.layers.BatchNormalization(dtype="float64"),
        ]
    )
    x, _ = _data()
    model.layers[0].gamma.assign(np.array([1.0, 2.0, 0.5, 1.5]))
    model.layers[1].bias.assign(np.array([0.5, -1.0, 2.0]))
    assert recompute_batch_normalization_statistics(model, x, batch_size=16) == 2
    first, dense, second = model.layers
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(first.moving_mean), x.mean(axis=0), rtol=1e-12
    )
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in dense.weights)
    gamma = np.array([1.0, 2.0, 0.5, 1.5])
    received = np.concatenate(
        [
            ((b - b.mean(0)) / np.sqrt(b.var(0) + 1e-3) * gamma) @ kernel + bias
            for b in (x[i : i + 16] for i in range(0, N, 16))
        ]
    )
    # Keras' training-mode BN normalizes to about 2e-8 on JAX (measured); a wrong
    # pooling (per-batch statistics averaged, an inference-mode upstream) is off far more.
    rtol = 1e-6
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(second.moving_mean), received.mean(0), rtol=rtol
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(second.moving_variance), received.var(0), rtol=rtol
    )


def test_frozen_batch_norm_is_left_as_it_is():
    model = _model(batch_norm=True)
    bn = model.layers[1]
    bn.trainable = False
    bn.moving_mean.assign(np.full(3, 7.0))
    x, _ = _data()
    assert recompute_batch_normalization_statistics(model, x) == 0
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(bn.moving_mean), 7.0)


def test_training_that_ends_before_start_epoch_warns_and_keeps_weights():
    x, y = _data()
    model = _model()
    recorder = _Recorder()
    swa = StochasticWeightAveraging(start_epoch=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, epochs=2, verbose=0, callbacks=[recorder, swa])
    assert any("start_epoch=5" in str(w.message) for w in caught)
    np.testing.assert_array_equal(model.get_weights()[0], recorder.snapshots[-1][0])
    with pytest.raises(ValueError, match="No snapshot yet"):
        swa.average_weights()


def test_config():
    swa = StochasticWeightAveraging(3, frequency=2, batch_size=8)
    assert swa.get_config() == {
        "start_epoch": 3,
        "frequency": 2,
        "batch_size": 8,
        "bn_statistics": "exact",
    }
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(swa)
    )
    assert type(restored) is StochasticWeightAveraging
    assert restored.get_config() == swa.get_config()


BAD = [
    ("start_epoch", -1),
    ("start_epoch", 1.5),
    ("start_epoch", "0"),
    ("start_epoch", None),
    ("frequency", 0),
    ("frequency", -2),
    ("frequency", 2.0),
    ("batch_size", 0),
]


@pytest.mark.parametrize("name, value", BAD, ids=[f"{n}={v!r}" for n, v in BAD])
def test_bad_argument_raises_naming_it(name, value):
    kwargs = {"start_epoch": 0, name: value}
    with pytest.raises(ValueError, match=f"`{name}`") as error:
        StochasticWeightAveraging(**kwargs)
    assert repr(value) in str(error.value)
