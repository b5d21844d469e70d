"""Heavy-ball momentum in the notes' form (the gradient is accumulated, η scales the sum)."""

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.checks import check_decay_rate
from keras_optnotes.optimizers.base import Optimizer


@register_keras_serializable(package="keras_optnotes")
class Momentum(Optimizer):
    """Gradient descent with momentum, as the notes write it.

    Symbols: θ the variable, g its gradient, a the accumulator (slot `accumulators`),
    η `learning_rate`, β `momentum`.

        a ← β a + g
        θ ← θ − η a

    Convention: this is also `torch.optim.SGD(momentum=β)`. Keras' own
    `keras.optimizers.SGD(momentum=β)` keeps v ← β v − η g instead, folding η into the
    accumulator: the two agree for a constant η and differ when η changes over time
    (a schedule), because here a change of η applies to the whole accumulated sum.

    Args:
        learning_rate: η; a float > 0, a `LearningRateSchedule` or a callable.
            Defaults to 0.01.
        momentum: β in [0, 1). Defaults to 0.9.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer`.

    Example:
        >>> model.compile(optimizer=Momentum(0.01, momentum=0.9), loss="mse")

    References:
        Polyak, "Some methods of speeding up the convergence of iteration methods",
        USSR Computational Mathematics and Mathematical Physics 4(5), 1964.
    """

    HYPERPARAMETERS = {"momentum": check_decay_rate}

    def __init__(self, learning_rate=0.01, momentum=0.9, *, jit_compile=True, **kwargs):
        super().__init__(learning_rate, jit_compile=jit_compile, **kwargs)
        self.momentum = momentum

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.accumulators = self.add_optimizer_variables(variables, "accumulator")

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        g = self.dense(gradient, variable)
        a = self.accumulators[self._get_variable_index(variable)]
        self.assign(
            a, ops.add(ops.multiply(self.scalar(self.momentum, variable), a), g)
        )
        self.assign_sub(variable, ops.multiply(lr, a))
