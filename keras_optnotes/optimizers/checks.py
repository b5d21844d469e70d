"""Argument checks shared by the update rules (after torch.optim: check up front, name the
argument, the value received and the range accepted)."""

from __future__ import annotations

import math
import numbers
from typing import Any


def _as_float(name: str, value: Any, accepted: str) -> float:
    # bool is an int in Python, but `momentum=True` is a mistake, not 1.0.
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number):
            return number
    raise ValueError(
        f"Argument `{name}` must be a finite number {accepted}. "
        f"Received: {name}={value!r}"
    )


def check_in_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Returns `value` as a Python float after checking it lies in the given interval.

    Python ints, floats and NumPy scalars are numbers; bools, strings and None are not.

    Raises:
        ValueError: naming the argument, the value received and the interval accepted.
    """
    left = "[" if low_inclusive else "("
    right = "]" if high_inclusive else ")"
    interval = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
    accepted = f"in {interval}"
    number = _as_float(name, value, accepted)
    too_low = low is not None and (
        number < low or (number == low and not low_inclusive)
    )
    too_high = high is not None and (
        number > high or (number == high and not high_inclusive)
    )
    if too_low or too_high:
        raise ValueError(
            f"Argument `{name}` must be a finite number {accepted}. "
            f"Received: {name}={value!r}"
        )
    return number


def check_decay_rate(name: str, value: Any) -> float:
    """A decay rate such as momentum, rho or beta: a number in [0, 1)."""
    return check_in_range(name, value, 0.0, 1.0, high_inclusive=False)


def check_positive(name: str, value: Any) -> float:
    """A strictly positive finite number, such as epsilon."""
    return check_in_range(name, value, 0.0, None, low_inclusive=False)


def check_bool(name: str, value: Any) -> bool:
    """A flag: exactly True or False (NumPy bools accepted)."""
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    raise ValueError(
        f"Argument `{name}` must be True or False. Received: {name}={value!r}"
    )


def check_base_keywords(kwargs: dict) -> None:
    """Checks the keywords of Keras' base optimizer that Keras leaves unchecked.

    Keras itself rejects two clip arguments at once and a bad `ema_momentum`; it accepts
    a negative clip value, a negative weight decay and `gradient_accumulation_steps=0`
    silently. `kwargs` is not modified.
    """
    for name in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor"):
        if kwargs.get(name) is not None:
            check_positive(name, kwargs[name])
    if kwargs.get("weight_decay") is not None:
        check_in_range("weight_decay", kwargs["weight_decay"], 0.0, None)
    steps = kwargs.get("gradient_accumulation_steps")
    if steps is not None and (
        not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 2
    ):
        raise ValueError(
            "Argument `gradient_accumulation_steps` must be an integer >= 2 or None. "
            f"Received: gradient_accumulation_steps={steps!r}"
        )
    clips = [
        n
        for n in ("clipnorm", "clipvalue", "global_clipnorm")
        if kwargs.get(n) is not None
    ]
    if len(clips) > 1:
        raise ValueError(
            "Only one of `clipnorm`, `clipvalue` and `global_clipnorm` may be set. "
            f"Received: {', '.join(f'{n}={kwargs[n]!r}' for n in clips)}"
        )
    if kwargs.get("use_ema"):
        check_in_range("ema_momentum", kwargs.get("ema_momentum", 0.99), 0.0, 1.0)
