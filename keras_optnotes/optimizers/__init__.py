"""The update rules of the notes, as `keras.optimizers.Optimizer` subclasses.

Every rule takes the keywords of Keras' base optimizer and `jit_compile=True`, checks
its arguments up front and is registered for serialization under the package
`keras_optnotes` (e.g. `"keras_optnotes>Adam"`).

    >>> from keras_optnotes import optimizers
    >>> optimizers.list_rules()
    ('GradientDescent', 'Momentum', 'NesterovMomentum', 'Adagrad', 'Adadelta', 'RMSprop', 'Adam')
    >>> opt = optimizers.get("nesterov_momentum", learning_rate=0.05)
"""

from __future__ import annotations

import re

import keras

from keras_optnotes.optimizers.adadelta import Adadelta
from keras_optnotes.optimizers.adagrad import Adagrad
from keras_optnotes.optimizers.adam import Adam
from keras_optnotes.optimizers.base import Optimizer
from keras_optnotes.optimizers.gradient_descent import GradientDescent
from keras_optnotes.optimizers.lars import LARS
from keras_optnotes.optimizers.lookahead import Lookahead
from keras_optnotes.optimizers.momentum import Momentum
from keras_optnotes.optimizers.nesterov_momentum import NesterovMomentum
from keras_optnotes.optimizers.rmsprop import RMSprop
from keras_optnotes.optimizers.scaling import scaled_learning_rate

# In the order the notes introduce them.
_RULES = (GradientDescent, Momentum, NesterovMomentum, Adagrad, Adadelta, RMSprop, Adam)


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


_BY_NAME = {}
for _rule in _RULES:
    _BY_NAME[_rule.__name__.lower()] = _rule
    _BY_NAME[_snake_case(_rule.__name__)] = _rule


def list_rules() -> tuple[str, ...]:
    """The class names of the notes' update rules, in the notes' order."""
    return tuple(rule.__name__ for rule in _RULES)


def get(name, **kwargs) -> keras.optimizers.Optimizer:
    """A new optimizer of the rule called `name`, made with `kwargs`; an optimizer
    instance is returned unchanged (as `keras.optimizers.get` does).

    Args:
        name: the class name (`"NesterovMomentum"`) or its snake_case form
            (`"nesterov_momentum"`), any case; or a `keras.optimizers.Optimizer`.
        **kwargs: arguments of that rule (none with an instance).

    Returns:
        A new instance, or `name` itself when it is an optimizer.

    Raises:
        ValueError: for an unknown name, listing the accepted ones, or keyword
            arguments given with an instance.
    """
    if isinstance(name, keras.optimizers.Optimizer):
        if kwargs:
            raise ValueError(
                "Keyword arguments apply to a rule given by name; an optimizer "
                f"instance is returned as it is. Received: {sorted(kwargs)}"
            )
        return name
    rule = _BY_NAME.get(str(name).lower()) if isinstance(name, str) else None
    if rule is None:
        raise ValueError(
            f"Unknown update rule: name={name!r}. Accepted: {', '.join(list_rules())} "
            "(or their snake_case forms)."
        )
    return rule(**kwargs)


__all__ = [
    "Adadelta",
    "Adagrad",
    "Adam",
    "GradientDescent",
    "LARS",
    "Lookahead",
    "Momentum",
    "NesterovMomentum",
    "Optimizer",
    "RMSprop",
    "get",
    "list_rules",
    "scaled_learning_rate",
]
