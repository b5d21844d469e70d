"""The standard checkpoint flow: `model.compile(...)`, `model.load_weights(...)`, `fit`.

The optimizer is not built when `load_weights` reads its state; the saved values wait
and go into the slots when `fit` builds them. The resumed run must end with the same
bits as the uninterrupted one (op determinism on, one process per backend, see
`processes/resume.py`); a checkpoint of another optimizer or model is an error that
names both layouts.
"""

import keras
import numpy as np
import pytest
from processes import resume

from keras_optnotes import optimizers

RULES = optimizers.list_rules()


@pytest.fixture(scope="module")
def runs(resume_runs):
    """The `load_weights` flow, run in test_resume.py's first process
    (`resume.run`)."""
    return resume_runs["weights"]


@pytest.mark.parametrize("rule", RULES)
def test_compile_load_weights_fit_equals_the_uninterrupted_run(runs, rule):
    resume.assert_resumed_exactly(*runs, rule)


def _model(trainable_first_layer=True):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, "tanh"), keras.layers.Dense(1)]
    )
    model.layers[0].trainable = trainable_first_layer
    return model


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, x[:, :1] - x[:, 1:2]


@pytest.fixture(scope="module")
def amsgrad_checkpoint(tmp_path_factory, data):
    """Weights and AMSGrad state (2 + 3·4 variables) after one epoch."""
    model = _model()
    model.compile(optimizer=optimizers.Adam(amsgrad=True), loss="mse")
    model.fit(*data, batch_size=16, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("amsgrad") / "ckpt.weights.h5"
    model.save_weights(path)
    return path


def test_checkpoint_of_another_optimizer_is_an_error_naming_both_layouts(
    amsgrad_checkpoint, data
):
    model = _model()
    model.compile(optimizer=optimizers.Adam(), loss="mse")
    model.load_weights(amsgrad_checkpoint)
    with pytest.raises(ValueError) as error:
        model.fit(*data, batch_size=16, epochs=1, verbose=0)
    message = str(error.value)
    assert "optimizer 'adam" in message and "(Adam)" in message
    assert "saved state has 14 variables" in message
    assert "built has 10" in message
    assert "(4, 3)" in message


def test_checkpoint_of_another_model_is_an_error_naming_both_layouts(
    amsgrad_checkpoint, data
):
    # The same layers, the first one frozen: the optimizer sees 2 of the 4 variables.
    model = _model(trainable_first_layer=False)
    model.compile(optimizer=optimizers.Adam(amsgrad=True), loss="mse")
    model.load_weights(amsgrad_checkpoint)
    with pytest.raises(ValueError, match=r"saved state has 14 variables.*built has 8"):
        model.fit(*data, batch_size=16, epochs=1, verbose=0)


def test_saved_shapes_must_match_the_built_slots():
    """Same count, other shapes: the error names the first variable that differs."""
    optimizer = optimizers.Momentum()
    store = {"0": np.array(3), "1": np.array(0.01, "float32"), "2": np.ones((2, 2))}
    optimizer.load_own_variables(store)
    with pytest.raises(ValueError, match=r"variable 2 .*\(3,\).*saved.*\(2, 2\)"):
        optimizer.build([keras.Variable(np.zeros(3))])


def test_saved_values_reach_the_slots_when_built():
    optimizer = optimizers.Adagrad(initial_accumulator_value=0.5)
    saved = {"0": np.array(7), "1": np.array(0.25, "float32"), "2": np.arange(3.0)}
    optimizer.load_own_variables(saved)
    assert int(keras.ops.convert_to_numpy(optimizer.iterations)) == 7
    variable = keras.Variable(np.zeros(3), dtype="float64")
    optimizer.build([variable])
    np.testing.assert_array_equal(optimizer.accumulators[0].numpy(), [0.0, 1.0, 2.0])
    # The state is given once: another optimizer built later starts afresh.
    other = optimizers.Adagrad(initial_accumulator_value=0.5)
    other.build([variable])
    np.testing.assert_array_equal(other.accumulators[0].numpy(), [0.5] * 3)
