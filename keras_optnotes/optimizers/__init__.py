"""The update rules of the notes, as `keras.optimizers.Optimizer` subclasses.

Every rule takes the keywords of Keras' base optimizer and `jit_compile=True`, checks
its arguments up front and is registered for serialization under the package
`keras_optnotes` (e.g. `"keras_optnotes>Adam"`).

    >>> from keras_optnotes import optimizers
    >>> optimizers.list_rules()
    ('GradientDescent', 'Momentum', 'NesterovMomentum', 'Adagrad', 'Adadelta', 'RMSprop', 'Adam')
    >>> opt = optimizers.get("nesterov_momentum", learning_rate=0.05)
    >>> opt = optimizers.get("lookahead", optimizer="adam")
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
# Every optimizer of the package that `get` makes by name: the rules, then the
# remedies for large batches.
_NAMED = (*_RULES, LARS, Lookahead)
_PACKAGE_PREFIX = "keras_optnotes>"


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name).lower()


_BY_NAME = {}
for _optimizer in _NAMED:
    _BY_NAME[_optimizer.__name__.lower()] = _optimizer
    _BY_NAME[_snake_case(_optimizer.__name__)] = _optimizer


def list_rules() -> tuple[str, ...]:
    """The class names of the notes' seven update rules, in the notes' order.

    Returns:
        `('GradientDescent', 'Momentum', 'NesterovMomentum', 'Adagrad', 'Adadelta',
        'RMSprop', 'Adam')`; `get` also makes `LARS` and `Lookahead` by name.
    """
    return tuple(rule.__name__ for rule in _RULES)


def _accepted() -> str:
    return ", ".join(optimizer.__name__ for optimizer in _NAMED)


def get(identifier, **kwargs) -> keras.optimizers.Optimizer:
    """An optimizer of this package from its name or config, as `keras.optimizers.get`.

    A name makes a new optimizer with `kwargs`; a config dict (from
    `keras.optimizers.serialize`) is deserialized; an optimizer instance is returned
    unchanged. `Lookahead` wraps another optimizer, given as `optimizer=`: an
    instance, or a name or config that `get` resolves.

    Args:
        identifier: a class name (`"NesterovMomentum"`, `"LARS"`, `"Lookahead"`), its
            snake_case form (`"nesterov_momentum"`), in any case, with or without the
            registered prefix (`"keras_optnotes>Adam"`); a config dict; or a
            `keras.optimizers.Optimizer`.
        **kwargs: arguments of that class (none with a config dict or an instance).

    Returns:
        A new optimizer, or `identifier` itself when it is an optimizer.

    Raises:
        ValueError: for an unknown name, listing the accepted ones; keyword
            arguments given with an instance or a config; `"lookahead"` without
            `optimizer=`.

    Example:
        >>> optimizers.get("nesterov_momentum", learning_rate=0.05)
        >>> optimizers.get("lars", learning_rate=1.6, weight_decay=5e-4)
        >>> optimizers.get("lookahead", optimizer="adam", sync_period=5)
        >>> optimizers.get(keras.optimizers.serialize(optimizers.Adam(1e-3)))
    """
    if isinstance(identifier, keras.optimizers.Optimizer):
        if kwargs:
            raise ValueError(
                "Keyword arguments apply to an optimizer given by name; an optimizer "
                f"instance is returned as it is. Received: {sorted(kwargs)}"
            )
        return identifier
    if isinstance(identifier, dict):
        if kwargs:
            raise ValueError(
                "Keyword arguments apply to an optimizer given by name; a config "
                f"holds its own arguments. Received: {sorted(kwargs)}"
            )
        return keras.optimizers.deserialize(identifier)
    name = identifier.lower() if isinstance(identifier, str) else None
    if name is not None and name.startswith(_PACKAGE_PREFIX):
        name = name[len(_PACKAGE_PREFIX) :]
    optimizer_class = _BY_NAME.get(name)
    if optimizer_class is None:
        raise ValueError(
            f"Unknown optimizer: identifier={identifier!r}. Accepted: {_accepted()} "
            "(or their snake_case forms), a config dict or an optimizer instance."
        )
    if optimizer_class is Lookahead:
        if "optimizer" not in kwargs:
            raise ValueError(
                "'lookahead' wraps another optimizer: pass it as `optimizer=`, e.g. "
                "get('lookahead', optimizer='adam'). Received: "
                f"{sorted(kwargs) or 'no keyword arguments'}"
            )
        kwargs["optimizer"] = get(kwargs["optimizer"])
    return optimizer_class(**kwargs)


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
