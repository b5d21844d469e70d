"""The learning rate for a larger batch: the linear and the square-root scaling rules."""

from __future__ import annotations

import math

from keras_optnotes.checks import check_integer, check_positive

RULES = ("linear", "sqrt")


def scaled_learning_rate(
    base_learning_rate: float,
    base_batch_size: int,
    batch_size: int,
    rule: str = "linear",
) -> float:
    """The learning rate for `batch_size`, scaled from one tuned at `base_batch_size`.

    Symbols: η₀ `base_learning_rate`, B₀ `base_batch_size`, B `batch_size`.

        η = η₀ · B / B₀          (rule="linear", Goyal et al. 2017)
        η = η₀ · √(B / B₀)       (rule="sqrt", Krizhevsky 2014; keeps the variance of
                                  the step per sample constant)

    The linear rule needs a warm-up for the first epochs (Goyal et al. use 5): that is
    Keras' `CosineDecay(..., warmup_target=, warmup_steps=)`, not a schedule of this
    package.

    Args:
        base_learning_rate: η₀, a finite number > 0.
        base_batch_size: B₀, an integer ≥ 1.
        batch_size: B, an integer ≥ 1.
        rule: `"linear"` or `"sqrt"`. Defaults to `"linear"`.

    Returns:
        η as a Python float.

    Example:
        >>> steps_per_epoch, epochs = 50_000 // 1024, 90
        >>> peak = scaled_learning_rate(0.1, 256, 1024)          # 0.4
        >>> schedule = keras.optimizers.schedules.CosineDecay(
        ...     initial_learning_rate=0.0,
        ...     decay_steps=(epochs - 5) * steps_per_epoch,
        ...     warmup_target=peak,
        ...     warmup_steps=5 * steps_per_epoch,
        ... )
        >>> optimizer = keras_optnotes.optimizers.LARS(schedule)

    References:
        Goyal et al., "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour",
        arXiv:1706.02677, 2017.
        Krizhevsky, "One weird trick for parallelizing convolutional neural networks",
        arXiv:1404.5997, 2014.
    """
    base_learning_rate = check_positive("base_learning_rate", base_learning_rate)
    base_batch_size = check_integer("base_batch_size", base_batch_size, 1)
    batch_size = check_integer("batch_size", batch_size, 1)
    if rule not in RULES:
        raise ValueError(
            f"Argument `rule` must be one of {', '.join(map(repr, RULES))}. "
            f"Received: rule={rule!r}"
        )
    ratio = batch_size / base_batch_size
    return base_learning_rate * (ratio if rule == "linear" else math.sqrt(ratio))
