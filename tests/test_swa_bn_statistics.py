"""SWA's batch-normalization recompute with PyTorch's definition
(`bn_statistics="batch_average"`, `torch.optim.swa_utils.update_bn`) against a
float64 NumPy implementation of update_bn's formula, beside the exact one.

update_bn resets BN's running statistics, sets momentum=None (a cumulative moving
average) and runs one pass in training mode; each batch b records its mean and its
unbiased variance, so the result is μ = (1/B) Σ_b mean(x_b) and
σ² = (1/B) Σ_b var(x_b)·n_b/(n_b − 1). Runs on every backend.
"""

import keras
import numpy as np
import pytest

from keras_optnotes.callbacks import StochasticWeightAveraging
from keras_optnotes.callbacks.swa import recompute_batch_normalization_statistics

N, BATCH = 40, 16  # batches of 16, 16 and 8: unequal sizes tell the pooling apart


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((4,), dtype="float64"),
            # einsum, not Dense: float64-exact on every backend
            keras.layers.EinsumDense(
                "ab,bc->ac", output_shape=3, bias_axes="c", dtype="float64"
            ),
            keras.layers.BatchNormalization(dtype="float64"),
            keras.layers.EinsumDense("ab,bc->ac", output_shape=1, dtype="float64"),
        ]
    )


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, 4)) * np.array([1.0, 3.0, 0.5, 2.0]) + 1.0
    return x, x[:, :1] - x[:, 1:2]


def update_bn_reference(h, batch):
    """update_bn's running statistics of BN input `h` (rows) over batches of `batch`."""
    mean, var = np.zeros(h.shape[1]), np.ones(h.shape[1])
    for count, start in enumerate(range(0, len(h), batch), start=1):
        part = h[start : start + batch]
        factor = 1.0 / count  # momentum=None: the cumulative average
        mean = (1 - factor) * mean + factor * part.mean(axis=0)
        var = (1 - factor) * var + factor * part.var(axis=0, ddof=1)
    return mean, var


def _bn_input(model, x):
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.layers[0].weights)
    return x @ kernel + bias


def _moving(bn):
    return (
        keras.ops.convert_to_numpy(bn.moving_mean),
        keras.ops.convert_to_numpy(bn.moving_variance),
    )


def test_batch_average_is_update_bns_formula():
    x, _ = _data()
    model = _model()
    recompute_batch_normalization_statistics(
        model, x, batch_size=BATCH, statistics="batch_average"
    )
    mean, var = update_bn_reference(_bn_input(model, x), BATCH)
    got_mean, got_var = _moving(model.layers[1])
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(got_var, var, rtol=1e-12)


def test_the_two_definitions_differ_and_exact_is_the_full_data_one():
    x, _ = _data()
    model = _model()
    h = _bn_input(model, x)
    recompute_batch_normalization_statistics(model, x, batch_size=BATCH)
    exact_mean, exact_var = _moving(model.layers[1])
    np.testing.assert_allclose(exact_mean, h.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(exact_var, h.var(axis=0), rtol=1e-12)
    _, batch_var = update_bn_reference(h, BATCH)
    assert np.all(np.abs(batch_var / exact_var - 1) > 1e-3)


def test_swa_callback_passes_the_choice_on():
    x, y = _data()
    model = _model()
    model.compile(keras.optimizers.SGD(0.01), loss="mse")
    swa = StochasticWeightAveraging(
        0, batch_norm_data=x, batch_size=BATCH, bn_statistics="batch_average"
    )
    model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[swa])
    mean, var = update_bn_reference(_bn_input(model, x), BATCH)
    got_mean, got_var = _moving(model.layers[1])
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12)
    np.testing.assert_allclose(got_var, var, rtol=1e-12)
    assert swa.get_config()["bn_statistics"] == "batch_average"


@pytest.mark.skipif(keras.backend.backend() != "torch", reason="needs torch's BN")
def test_batch_average_equals_torch_update_bn_itself():
    import torch
    from torch.optim.swa_utils import update_bn

    x, _ = _data()
    model = _model()
    h = _bn_input(model, x)
    recompute_batch_normalization_statistics(
        model, x, batch_size=BATCH, statistics="batch_average"
    )
    bn = torch.nn.BatchNorm1d(3, dtype=torch.float64)
    loader = [torch.tensor(h[i : i + BATCH]) for i in range(0, N, BATCH)]
    update_bn(loader, torch.nn.Sequential(bn))
    got_mean, got_var = _moving(model.layers[1])
    np.testing.assert_allclose(got_mean, bn.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got_var, bn.running_var.numpy(), rtol=1e-12)


def test_a_batch_of_one_value_per_channel_is_refused():
    x, _ = _data()
    with pytest.raises(ValueError, match="at least 2"):
        recompute_batch_normalization_statistics(
            _model(), x[:17], batch_size=BATCH, statistics="batch_average"
        )


@pytest.mark.parametrize("value", ["batch", None, "EXACT"])
def test_bad_choice_raises_naming_it(value):
    with pytest.raises(ValueError, match="`bn_statistics`") as error:
        StochasticWeightAveraging(0, bn_statistics=value)
    assert repr(value) in str(error.value)
    with pytest.raises(ValueError, match="`statistics`"):
        recompute_batch_normalization_statistics(_model(), _data()[0], statistics=value)
