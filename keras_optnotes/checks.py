"""Argument checks shared by the package (after torch.optim: check up front, name the
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


def check_integer(name: str, value: Any, minimum: int) -> int:
    """`value` as a Python int after checking it is an integer ≥ `minimum`.

    Python and NumPy integers are accepted; bools are not.

    Raises:
        ValueError: naming the argument, the value received and the minimum.
    """
    if (
        isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and value >= minimum
    ):
        return int(value)
    raise ValueError(
        f"Argument `{name}` must be an integer >= {minimum}. Received: {name}={value!r}"
    )
