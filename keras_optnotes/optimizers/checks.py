"""The checks of the optimizers' hyper-parameters, as tables of `name -> check`.

A check is a function `check(name, value)` that returns the value to store or raises
`ValueError` naming the argument, the value and what is accepted. `Optimizer` (in
`base.py`) runs the check of a name every time that attribute is assigned, in
`__init__` and afterwards alike (`optimizer.beta_1 = 5.0` raises as
`Adam(beta_1=5.0)` does), so one table per rule is the only place a range is written.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import keras

from keras_optnotes.checks import check_in_range, check_integer, check_positive

Check = Callable[[str, Any], Any]


def check_learning_rate(name: str, learning_rate: Any) -> Any:
    """Returns `learning_rate` as a Python float, or a schedule or callable unchanged.

    Raises:
        ValueError: when it is a number that is not finite or not positive, or neither
            a number, a `LearningRateSchedule` nor a callable.
    """
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule):
        return learning_rate
    if callable(learning_rate) and not isinstance(learning_rate, numbers.Number):
        return learning_rate
    if isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool):
        value = float(learning_rate)
        if math.isfinite(value) and value > 0:
            return value
    raise ValueError(
        f"Argument `{name}` must be a finite number > 0, a "
        "`keras.optimizers.schedules.LearningRateSchedule` or a callable returning the "
        f"learning rate. Received: {name}={learning_rate!r}"
    )


def optional(check: Check) -> Check:
    """`check`, with None accepted (a base keyword that is switched off)."""

    def check_or_none(name: str, value: Any) -> Any:
        return None if value is None else check(name, value)

    return check_or_none


def _check_ema_momentum(name: str, value: Any) -> float:
    return check_in_range(name, value, 0.0, 1.0)


def _check_accumulation_steps(name: str, value: Any) -> int:
    return check_integer(name, value, 2)


def check_non_negative(name: str, value: Any) -> float:
    """A number ≥ 0, such as a weight decay or an initial accumulator value."""
    return check_in_range(name, value, 0.0, None)


# The keywords of Keras' base optimizer that Keras leaves unchecked (it accepts a
# negative clip value or weight decay, `gradient_accumulation_steps=0`, a NaN or string
# `ema_momentum`) and the learning rate. Keras' own `__init__` assigns each of them, so
# the checks run there too. Keras itself rejects two clip arguments at once.
BASE_CHECKS: dict[str, Check] = {
    "learning_rate": check_learning_rate,
    "weight_decay": optional(check_non_negative),
    "clipnorm": optional(check_positive),
    "clipvalue": optional(check_positive),
    "global_clipnorm": optional(check_positive),
    "loss_scale_factor": optional(check_positive),
    "gradient_accumulation_steps": optional(_check_accumulation_steps),
    "ema_momentum": _check_ema_momentum,
}
