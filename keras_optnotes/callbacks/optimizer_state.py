"""The effective per-parameter step size of the adaptive rules, logged during `fit`."""

from __future__ import annotations

import math

import keras
import numpy as np

from keras_optnotes import optimizers as rules
from keras_optnotes.callbacks._logs import LogProducer

PERCENTILES = {"p5": 5.0, "median": 50.0, "p95": 95.0}


def _flat(variables) -> np.ndarray:
    return np.concatenate(
        [np.asarray(v.numpy(), np.float64).ravel() for v in variables]
    )


def _divide_by_root(numerator, state, epsilon, inside):
    """numerator / √(state + ε) or numerator / (√state + ε), as the rule has it."""
    if inside:
        return numerator / np.sqrt(state + epsilon)
    return numerator / (np.sqrt(state) + epsilon)


def _unwrapped(optimizer):
    """The optimizer inside Keras' `LossScaleOptimizer` (mixed precision wraps it)."""
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def _monitored(optimizer) -> dict[str, keras.optimizers.Optimizer]:
    """Log-key suffix -> rule: "" for one rule, "_<name>" for each of a MultiOptimizer.

    Raises:
        ValueError: naming any optimizer that is not one of this package's rules.
    """
    optimizer = _unwrapped(optimizer)
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        found = {f"_{inner.name}": inner for inner in optimizer.optimizers}
    else:
        found = {"": optimizer}
    foreign = [
        f"{type(o).__name__} '{o.name}'"
        for o in found.values()
        if not isinstance(o, rules.Optimizer)
    ]
    if foreign:
        raise ValueError(
            "OptimizerStateMonitor needs optimizers of keras_optnotes.optimizers "
            f"{rules.list_rules()}, alone, in a LossScaleOptimizer or in a "
            f"MultiOptimizer; the model has {', '.join(foreign)}."
        )
    return found


def effective_learning_rates(optimizer: keras.optimizers.Optimizer) -> np.ndarray:
    """The per-parameter step size η_eff that the optimizer's next step will use.

    The step is θ ← θ − η_eff ⊙ u, with u the raw direction of the rule:

    - `GradientDescent`, `Momentum`, `NesterovMomentum`: η_eff = η (u = g or a).
    - `Adagrad`, `RMSprop`: η_eff = η / √(G + ε) (or η / (√G + ε) with
      `epsilon_inside_sqrt=False`), u = g.
    - `Adadelta`: η_eff = η · √(E_Δ + ε) / √(E_g + ε), u = g.
    - `Adam`: u = m̂ = m / (1 − β1ᵗ) and η_eff = η · √(1 − β2ᵗ) / √(v + ε) (notes'
      form) or η / (√(v / (1 − β2ᵗ)) + ε) (paper's form); v̂ for `amsgrad`; t the
      number of steps taken (all `nan` before the first step).

    Args:
      optimizer: a built optimizer of `keras_optnotes.optimizers`, or a
        `keras.optimizers.LossScaleOptimizer` around one (mixed precision).

    Returns:
      A flat float64 array, one entry per parameter the rule updates.

    Raises:
      ValueError: for another optimizer, for a `MultiOptimizer` (ask one of its
        `optimizers`), or before the first step.
    """
    optimizer = _unwrapped(optimizer)
    if isinstance(optimizer, keras.optimizers.MultiOptimizer):
        raise ValueError(
            "`optimizer` is a MultiOptimizer: ask for one of its optimizers "
            "(`optimizer.optimizers`); OptimizerStateMonitor reports each of them."
        )
    if not isinstance(optimizer, rules.Optimizer):
        raise ValueError(
            "`optimizer` must be one of keras_optnotes.optimizers "
            f"{rules.list_rules()}; received {type(optimizer).__name__}."
        )
    if not optimizer.built:
        raise ValueError("`optimizer` is not built yet: it has taken no step.")
    lr = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
    variables = optimizer._trainable_variables
    if isinstance(
        optimizer, (rules.GradientDescent, rules.Momentum, rules.NesterovMomentum)
    ):
        return np.full(sum(int(np.prod(v.shape)) for v in variables), lr)
    if isinstance(optimizer, (rules.Adagrad, rules.RMSprop)):
        return _divide_by_root(
            lr,
            _flat(optimizer.accumulators),
            optimizer.epsilon,
            optimizer.epsilon_inside_sqrt,
        )
    if isinstance(optimizer, rules.Adadelta):
        eps = optimizer.epsilon
        return (
            lr
            * np.sqrt(_flat(optimizer.delta_accumulators) + eps)
            / np.sqrt(_flat(optimizer.accumulators) + eps)
        )
    if isinstance(optimizer, rules.Adam):
        t = int(keras.ops.convert_to_numpy(optimizer.iterations))
        v = _flat(
            optimizer.velocity_hats if optimizer.amsgrad else optimizer.velocities
        )
        if t == 0:
            return np.full(v.shape, math.nan)
        bias_2 = 1.0 - optimizer.beta_2**t
        if optimizer.epsilon_inside_sqrt:
            return _divide_by_root(lr * np.sqrt(bias_2), v, optimizer.epsilon, True)
        return _divide_by_root(lr, v / bias_2, optimizer.epsilon, False)
    raise ValueError(  # a rule added to the package without a formula here
        f"no effective step size is known for {type(optimizer).__name__}."
    )


class OptimizerStateMonitor(LogProducer):
    """Log the 5th percentile, median and 95th percentile of the effective step size.

    At the end of every epoch, `effective_learning_rates(model.optimizer)` (one value
    per trainable parameter; see there for each rule's formula, e.g. η / √(G + ε) for
    Adagrad) is summarised into the logs — hence `history.history` — as
    `effective_learning_rate_p5`, `effective_learning_rate_median` and
    `effective_learning_rate_p95`. For Adagrad the median shrinks towards zero as
    G grows, which is the notes' complaint about Adagrad.

    Works with the optimizers of `keras_optnotes.optimizers`, also inside Keras'
    wrappers: a `LossScaleOptimizer` (which `compile` puts around the rule under the
    `mixed_float16` policy) is looked through; a `MultiOptimizer` gets one summary
    per inner rule, keyed by the rule's name (`effective_learning_rate_median_<name>`),
    since pooling the step sizes of different rules into one percentile would mix
    unlike quantities. Any other optimizer, alone or inside one of these, is a
    `ValueError` naming it when training starts.

    It runs before the other callbacks of `fit` whatever its place in the list (it
    moves itself to the front when `fit` sets it up, and warns once where it
    cannot), so `TensorBoard`, `CSVLogger` or `ModelCheckpoint` see its values.

    Example:
      >>> model.compile(optimizer=keras_optnotes.optimizers.Adagrad(0.1), loss="mse")
      >>> history = model.fit(x, y, epochs=10, callbacks=[OptimizerStateMonitor()])
      >>> history.history["effective_learning_rate_median"]

    References:
      Duchi, Hazan, Singer, "Adaptive subgradient methods for online learning and
      stochastic optimization", JMLR 2011.
    """

    def on_train_begin(self, logs=None):
        _monitored(self.model.optimizer)

    def on_epoch_end(self, epoch, logs=None):
        summary = {}
        for suffix, optimizer in _monitored(self.model.optimizer).items():
            values = effective_learning_rates(optimizer)
            summary.update(
                {
                    f"effective_learning_rate_{name}{suffix}": float(
                        np.percentile(values, q)
                    )
                    for name, q in PERCENTILES.items()
                }
            )
        if logs is not None:
            logs.update(summary)
