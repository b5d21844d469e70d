"""Checks of the keywords of Keras' base optimizer that Keras leaves unchecked."""

from __future__ import annotations

from keras_optnotes.checks import check_in_range, check_integer, check_positive


def check_base_keywords(kwargs: dict) -> None:
    """Checks the keywords of Keras' base optimizer that Keras leaves unchecked.

    Keras itself rejects two clip arguments at once; it accepts a negative clip value,
    a negative weight decay, `gradient_accumulation_steps=0` and a NaN or string
    `ema_momentum` silently. `kwargs` is not modified.
    """
    for name in ("clipnorm", "clipvalue", "global_clipnorm", "loss_scale_factor"):
        if kwargs.get(name) is not None:
            check_positive(name, kwargs[name])
    if kwargs.get("weight_decay") is not None:
        check_in_range("weight_decay", kwargs["weight_decay"], 0.0, None)
    if kwargs.get("gradient_accumulation_steps") is not None:
        check_integer(
            "gradient_accumulation_steps", kwargs["gradient_accumulation_steps"], 2
        )
    if kwargs.get("use_ema"):
        check_in_range("ema_momentum", kwargs.get("ema_momentum", 0.99), 0.0, 1.0)
