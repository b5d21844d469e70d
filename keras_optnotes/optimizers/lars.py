"""LARS: momentum whose step per layer is scaled by the trust ratio ‖w‖ / ‖∇‖."""

from __future__ import annotations

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.checks import check_decay_rate, check_positive
from keras_optnotes.optimizers.base import Optimizer
from keras_optnotes.optimizers.checks import check_non_negative


def _norm(x):
    return ops.sqrt(ops.sum(ops.square(x)))


def _check_name_list(name, value):
    if value is None:
        return ()
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, str) for v in value
    ):
        raise ValueError(
            f"Argument `{name}` must be None or a list of strings (variable-name "
            f"substrings). Received: {name}={value!r}"
        )
    return tuple(value)


@register_keras_serializable(package="keras_optnotes")
class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling (You, Gitman, Ginsburg 2017, Algorithm 1).

    Symbols: w one variable (a layer's kernel), g its gradient, v the velocity (slot
    `velocities`), η `learning_rate`, m `momentum`, λ `weight_decay`, tc
    `trust_coefficient`, ε `epsilon`; norms are the Euclidean norms of the whole
    variable.

        d     ← g + λ w
        ratio ← tc · ‖w‖ / (‖g‖ + λ ‖w‖ + ε)    when ‖w‖ > 0 and ‖g‖ > 0, else 1
        v     ← m v + η · ratio · d
        w     ← w − v

    Variables of rank ≤ 1 (biases, the scales and offsets of normalization layers) and
    variables whose path contains one of `exclude_from_layer_adaptation` take the
    plain momentum step v ← m v + η g, w ← w − v: no ratio, no decay (as the paper's
    reference implementations and tensorflow/models' LARS do).

    Warning: λ here is the paper's weight decay, coupled into d and into the trust
    ratio; every LARS implementation means this by `weight_decay`. It is therefore NOT
    Keras' decoupled weight decay (w ← w − η λ w before the step), which this class
    does not offer: `weight_decay` is never passed to Keras' base optimizer. Note too
    that η multiplies inside the velocity (as in the paper and Keras' `SGD`), unlike
    this package's `Momentum`, where η multiplies the accumulated sum.

    Args:
        learning_rate: η, the global rate; a float > 0, a `LearningRateSchedule`
            (typically a warm-up, `keras.optimizers.schedules.CosineDecay(...,
            warmup_target=, warmup_steps=)`) or a callable. Defaults to 0.1.
        momentum: m in [0, 1). Defaults to 0.9.
        weight_decay: λ ≥ 0, coupled as above. Defaults to 0.0.
        trust_coefficient: tc > 0 (the paper's η, "trust coefficient"). Defaults to
            0.001.
        epsilon: ε > 0, keeps the ratio finite when ‖g‖ + λ‖w‖ is tiny. Defaults to
            1e-8.
        exclude_from_layer_adaptation: None or a list of strings; a variable whose
            `path` (e.g. `"dense_1/kernel"`) contains one of them skips the ratio and
            the decay, in addition to every variable of rank ≤ 1.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer` other than
            `weight_decay` (`clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).

    Example:
        >>> steps = epochs * steps_per_epoch
        >>> lr = keras.optimizers.schedules.CosineDecay(
        ...     0.0, steps, warmup_target=scaled_learning_rate(0.1, 256, 8192),
        ...     warmup_steps=5 * steps_per_epoch)
        >>> model.compile(optimizer=LARS(lr, weight_decay=5e-4), loss=...)

    References:
        You, Gitman, Ginsburg, "Large Batch Training of Convolutional Networks",
        arXiv:1708.03888, 2017.
    """

    HYPERPARAMETERS = {
        "momentum": check_decay_rate,
        "trust_coefficient": check_positive,
        "epsilon": check_positive,
        "exclude_from_layer_adaptation": _check_name_list,
    }

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        weight_decay=0.0,
        trust_coefficient=0.001,
        epsilon=1e-8,
        exclude_from_layer_adaptation=None,
        *,
        jit_compile=True,
        **kwargs,
    ):
        super().__init__(learning_rate, jit_compile=jit_compile, **kwargs)
        self.momentum = momentum
        self.coupled_weight_decay = weight_decay
        self.trust_coefficient = trust_coefficient
        self.epsilon = epsilon
        self.exclude_from_layer_adaptation = exclude_from_layer_adaptation

    @property
    def coupled_weight_decay(self) -> float:
        """λ, the argument `weight_decay`. Not stored as `self.weight_decay`: Keras'
        base optimizer would apply that one as decoupled decay as well."""
        return self._coupled_weight_decay

    @coupled_weight_decay.setter
    def coupled_weight_decay(self, value):
        self._coupled_weight_decay = check_non_negative("weight_decay", value)

    def adapts(self, variable) -> bool:
        """Whether `variable` gets the trust ratio and the decay (a Python bool)."""
        path = getattr(variable, "path", variable.name)
        return len(variable.shape) > 1 and not any(
            name in path for name in self.exclude_from_layer_adaptation
        )

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        g = self.dense(gradient, variable)
        if self.adapts(variable):
            decay = self.scalar(self.coupled_weight_decay, variable)
            weight_norm, gradient_norm = _norm(variable), _norm(g)
            ratio = ops.divide(
                ops.multiply(
                    self.scalar(self.trust_coefficient, variable), weight_norm
                ),
                ops.add(
                    ops.add(gradient_norm, ops.multiply(decay, weight_norm)),
                    self.scalar(self.epsilon, variable),
                ),
            )
            both_positive = ops.logical_and(
                ops.greater(weight_norm, 0), ops.greater(gradient_norm, 0)
            )
            ratio = ops.where(both_positive, ratio, self.scalar(1.0, variable))
            lr = ops.multiply(lr, ratio)
            g = ops.add(g, ops.multiply(decay, variable))
        v = self.velocities[self._get_variable_index(variable)]
        self.assign(
            v,
            ops.add(
                ops.multiply(self.scalar(self.momentum, variable), v),
                ops.multiply(lr, g),
            ),
        )
        self.assign_sub(variable, v)

    def get_config(self):
        config = super().get_config()
        config["weight_decay"] = self.coupled_weight_decay
        return config
