"""Saved optimizer state: which rule wrote it, and Lookahead through the standard
checkpoint flow (`model.compile(...)`, `model.load_weights(...)`, `fit`).

- Every rule records its registered name beside its variables; another rule's state
  is a `ValueError` naming both, even when the layouts agree (Adadelta's two
  accumulators have Adam's shapes) or when the rule has no slot (GradientDescent).
- State written before the record existed (no `rule` entry) still loads into its
  own rule, with a warning.
- Lookahead holds saved slow weights until it is built and resumes exactly, also in
  the middle of a sync period.

Runs on every backend.
"""

import h5py
import keras
import numpy as np
import pytest

from keras_optnotes import optimizers
from keras_optnotes.optimizers.base import RULE_KEY

RULES = optimizers.list_rules()


def _model(optimizer, seed=0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, "tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=optimizer, loss="mse")
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    return x, x[:, :1] - 0.5 * x[:, 1:2]


def _train(model, data, first, last, batch=16):
    x, y = data
    for i in range(first, last):
        model.train_on_batch(
            x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch]
        )


@pytest.fixture(scope="module")
def adadelta_checkpoint(tmp_path_factory, data):
    model = _model(optimizers.Adadelta())
    _train(model, data, 0, 2)
    path = tmp_path_factory.mktemp("adadelta") / "ckpt.weights.h5"
    model.save_weights(path)
    return path


@pytest.mark.parametrize("rule", [r for r in RULES if r != "Adadelta"])
def test_another_rules_checkpoint_is_an_error_naming_both(rule, adadelta_checkpoint):
    model = _model(optimizers.get(rule))
    with pytest.raises(ValueError) as error:
        model.load_weights(adadelta_checkpoint)
    message = str(error.value)
    assert f"(keras_optnotes>{rule})" in message
    assert "written by keras_optnotes>Adadelta" in message


def test_the_same_layout_is_refused_once_built(adadelta_checkpoint, data):
    """Adam built before loading: same count and shapes as Adadelta's state."""
    model = _model(optimizers.Adam())
    _train(model, data, 0, 1)
    with pytest.raises(ValueError, match=r"\(keras_optnotes>Adam\).*Adadelta"):
        model.load_weights(adadelta_checkpoint)


def test_lookahead_refuses_a_plain_rules_checkpoint(adadelta_checkpoint):
    model = _model(optimizers.Lookahead(optimizers.Adadelta()))
    with pytest.raises(ValueError, match=r"Lookahead\).*written by keras_optnotes>Ada"):
        model.load_weights(adadelta_checkpoint)


def test_keras_own_optimizer_does_not_take_the_state(adadelta_checkpoint, data):
    """Keras' Adam sees one more entry than it has variables: it warns and skips."""
    model = _model(keras.optimizers.Adam())
    _train(model, data, 0, 1)
    before = [keras.ops.convert_to_numpy(v).copy() for v in model.optimizer.variables]
    with pytest.warns(UserWarning, match="Skipping variable loading"):
        model.load_weights(adadelta_checkpoint)
    after = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rule", ["GradientDescent", "Adam"])
def test_state_without_the_record_still_loads_into_its_rule(rule, data, tmp_path):
    """A checkpoint of before the record (the `rule` entry deleted) resumes exactly."""
    model = _model(optimizers.get(rule, learning_rate=0.01))
    _train(model, data, 0, 2)
    path = tmp_path / "old.weights.h5"
    model.save_weights(path)
    with h5py.File(path, "a") as file:
        groups = []
        file.visit(lambda name: groups.append(name))
        records = [name for name in groups if name.endswith(f"vars/{RULE_KEY}")]
        assert records == ["optimizer/vars/rule"]
        del file[records[0]]
    _train(model, data, 2, 4)

    resumed = _model(optimizers.get(rule, learning_rate=0.01), seed=1)
    with pytest.warns(UserWarning, match="does not record which optimizer wrote it"):
        resumed.load_weights(path)
    _train(resumed, data, 2, 4)
    for a, b in zip(resumed.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_gradient_descent_checks_the_layout_of_state_without_the_record():
    """GradientDescent has no slot: saved slots are an error when it is built."""
    optimizer = optimizers.GradientDescent()
    store = {"0": np.array(3), "1": np.array(0.01, "float32"), "2": np.ones(3)}
    with pytest.warns(UserWarning):
        optimizer.load_own_variables(store)
    with pytest.raises(ValueError, match=r"saved state has 3 variables.*built has 2"):
        optimizer.build([keras.Variable(np.zeros(3))])


# -- Lookahead through compile -> load_weights -> fit --------------------------------


def _lookahead(k=3):
    return optimizers.Lookahead(
        optimizers.Momentum(0.05, momentum=0.8), sync_period=k, slow_step_size=0.5
    )


@pytest.mark.parametrize("saved_after", [3, 4], ids=["at_a_sync", "mid_period"])
def test_lookahead_resumes_exactly_through_load_weights(saved_after, data, tmp_path):
    uninterrupted = _model(_lookahead())
    _train(uninterrupted, data, 0, saved_after)
    path = tmp_path / "ckpt.weights.h5"
    uninterrupted.save_weights(path)
    _train(uninterrupted, data, saved_after, 6)

    resumed = _model(_lookahead(), seed=1)  # other weights: all must come from the file
    resumed.load_weights(path)
    assert not resumed.optimizer.built
    _train(resumed, data, saved_after, 6)
    for a, b in zip(resumed.get_weights(), uninterrupted.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(resumed.optimizer.variables, uninterrupted.optimizer.variables):
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        )


def test_lookahead_slow_weights_of_another_model_are_an_error(data, tmp_path):
    model = _model(_lookahead())
    _train(model, data, 0, 1)
    path = tmp_path / "ckpt.weights.h5"
    model.save_weights(path)
    keras.utils.set_random_seed(0)
    other = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(5, "tanh"), keras.layers.Dense(1)]
    )
    other.compile(optimizer=_lookahead(), loss="mse")
    with pytest.raises(ValueError):  # the layers' own shapes refuse first
        other.load_weights(path)
    optimizer = _lookahead()
    optimizer.load_own_variables(
        {"0": np.array(1), "1": np.ones((4, 3)), "2": np.ones(3)}
    )
    with pytest.raises(
        ValueError, match=r"saved slow weights are 2 variables.*\(4, 3\)"
    ):
        optimizer.build([keras.Variable(np.zeros((4, 5)))])
