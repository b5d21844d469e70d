"""`import keras_optnotes` alone registers every serializable class of the package.

Each recipe below makes something that holds one public serializable class: a compiled
model (saved as `.keras`) or another object (saved with
`keras.saving.serialize_keras_object`). One fresh process loads them all after
`import keras_optnotes` and nothing else (`processes/load_registered.py`); every class
must come back as this package's class with the same config. A new class is one line
in `RECIPES`.
"""

import json
import subprocess

import keras
import pytest
from conftest import BACKEND
from processes.launch import command, describe, environment

from keras_optnotes import optimizers
from keras_optnotes.callbacks import PrecheltEarlyStopping, StochasticWeightAveraging
from keras_optnotes.layers import (
    GroupNormalization,
    InstanceNormalization,
    WeightNoise,
    normalization,
)
from keras_optnotes.regularizers import ParameterNormPenalty
from keras_optnotes.training import SharpnessAwareMinimization


def _model(optimizer=None, hidden=None, wrap=None):
    """A tiny compiled model; `hidden` replaces its first layer, `wrap` wraps it."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), hidden or keras.layers.Dense(2), keras.layers.Dense(1)]
    )
    model = wrap(model) if wrap else model
    model.compile(optimizer=optimizer or "sgd", loss="mse")
    return model


# name -> (the package's class it must bring back, what holds it).
RECIPES = {
    **{
        rule: (
            getattr(optimizers, rule),
            # Non-default arguments, so that the loaded config tells classes apart.
            lambda rule=rule: _model(optimizers.get(rule, clipnorm=2.0)),
        )
        for rule in optimizers.list_rules()
    },
    "LARS": (optimizers.LARS, lambda: _model(optimizers.LARS(0.2, momentum=0.8))),
    "Lookahead": (
        optimizers.Lookahead,
        lambda: _model(optimizers.Lookahead(optimizers.Adam(), sync_period=3)),
    ),
    "SharpnessAwareMinimization": (
        SharpnessAwareMinimization,
        lambda: _model(wrap=lambda m: SharpnessAwareMinimization(m, rho=0.1)),
    ),
    "WeightNoise": (
        WeightNoise,
        lambda: _model(hidden=WeightNoise(keras.layers.Dense(2), stddev=0.05, seed=1)),
    ),
    "InstanceNormalization": (
        InstanceNormalization,
        lambda: normalization("instance", epsilon=1e-4, center=False),
    ),
    "GroupNormalization": (
        GroupNormalization,
        lambda: normalization("group", groups=2, epsilon=1e-4),
    ),
    "ParameterNormPenalty": (
        ParameterNormPenalty,
        lambda: _model(
            hidden=keras.layers.Dense(2, kernel_regularizer=ParameterNormPenalty(0.02))
        ),
    ),
    "PrecheltEarlyStopping": (
        PrecheltEarlyStopping,
        lambda: PrecheltEarlyStopping("PQ", alpha=0.3, strip_length=4, verbose=1),
    ),
    "StochasticWeightAveraging": (
        StochasticWeightAveraging,
        lambda: StochasticWeightAveraging(start_epoch=3, frequency=2),
    ),
}


def _name(cls) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@pytest.fixture(scope="module")
def saved_and_loaded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("registered")
    expected = {}
    for name, (_, make) in RECIPES.items():
        obj = make()
        if isinstance(obj, keras.Model):
            obj.save(folder / f"{name}.keras")
            expected[name] = keras.saving.serialize_keras_object(obj.optimizer)
        else:
            serialized = keras.saving.serialize_keras_object(obj)
            (folder / f"{name}.json").write_text(json.dumps(serialized))
            expected[name] = serialized
    result = subprocess.run(
        command("load_registered.py", folder),
        env=environment(KERAS_BACKEND=BACKEND),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, describe(result)
    return expected, json.loads((folder / "loaded.json").read_text())


@pytest.mark.parametrize("name", RECIPES)
def test_loads_in_a_fresh_process_after_importing_the_package_alone(
    saved_and_loaded, name
):
    expected, loaded = saved_and_loaded
    report = loaded[name]
    assert "error" not in report, report.get("error")
    assert _name(RECIPES[name][0]) in report["classes"]
    key = "optimizer" if "optimizer" in report else "serialized"
    assert report[key] == json.loads(json.dumps(expected[name]))


def test_get_returns_an_optimizer_instance_unchanged():
    optimizer = optimizers.Adam()
    assert optimizers.get(optimizer) is optimizer
    keras_optimizer = keras.optimizers.SGD()
    assert optimizers.get(keras_optimizer) is keras_optimizer
    with pytest.raises(
        ValueError, match="Keyword arguments apply to an optimizer given by name"
    ):
        optimizers.get(optimizer, learning_rate=0.1)
