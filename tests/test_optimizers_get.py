"""`optimizers.get` resolves what `keras.optimizers.get` resolves for this package:
every registered name (the seven rules, LARS, Lookahead), config dicts, instances."""

import keras
import pytest

from keras_optnotes import optimizers

NAMED = [*optimizers.list_rules(), "LARS"]


@pytest.mark.parametrize("name", NAMED)
def test_every_registered_name_gives_the_class_keras_finds(name):
    # Keras' own registry is the reference for what the registered name means.
    expected = type(keras.optimizers.get(f"keras_optnotes>{name}"))
    assert expected.__name__ == name
    for spelling in (name, name.upper(), f"keras_optnotes>{name}"):
        assert type(optimizers.get(spelling)) is expected


def test_snake_case_names_and_keyword_arguments():
    lars = optimizers.get("lars", learning_rate=1.6, weight_decay=5e-4)
    assert isinstance(lars, optimizers.LARS)
    assert lars.get_config()["learning_rate"] == pytest.approx(1.6)
    assert lars.get_config()["weight_decay"] == pytest.approx(5e-4)
    nesterov = optimizers.get("nesterov_momentum", momentum=0.5)
    assert isinstance(nesterov, optimizers.NesterovMomentum)
    assert nesterov.get_config()["momentum"] == 0.5


def test_lookahead_by_name_wraps_the_named_optimizer():
    outer = optimizers.get("lookahead", optimizer="adam", sync_period=3)
    assert isinstance(outer, optimizers.Lookahead)
    assert type(outer.inner_optimizer) is optimizers.Adam
    assert outer.get_config()["sync_period"] == 3
    inner = keras.optimizers.SGD(0.1)
    assert optimizers.get("Lookahead", optimizer=inner).inner_optimizer is inner


def test_lookahead_without_an_inner_optimizer_says_how():
    with pytest.raises(ValueError, match=r"pass it as `optimizer=`"):
        optimizers.get("lookahead")


def test_config_dict_round_trip():
    original = optimizers.RMSprop(0.003, rho=0.8, epsilon_inside_sqrt=False)
    rebuilt = optimizers.get(keras.optimizers.serialize(original))
    assert type(rebuilt) is optimizers.RMSprop
    assert rebuilt.get_config() == original.get_config()
    wrapped = optimizers.Lookahead(optimizers.Momentum(0.05), sync_period=4)
    again = optimizers.get(keras.optimizers.serialize(wrapped))
    assert type(again.inner_optimizer) is optimizers.Momentum
    assert again.get_config()["sync_period"] == 4
    with pytest.raises(ValueError, match="config holds its own arguments"):
        optimizers.get(keras.optimizers.serialize(original), learning_rate=0.1)


def test_instances_pass_through_and_unknown_names_list_the_accepted():
    adam = optimizers.Adam()
    assert optimizers.get(adam) is adam
    with pytest.raises(ValueError, match=r"Accepted: GradientDescent.*LARS, Lookahead"):
        optimizers.get("lion")
    with pytest.raises(ValueError, match=r"identifier=None"):
        optimizers.get(None)
    with pytest.raises(ValueError, match="instance is returned as it is"):
        optimizers.get(adam, learning_rate=0.1)
