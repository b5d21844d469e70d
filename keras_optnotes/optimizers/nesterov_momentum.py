"""Nesterov's accelerated gradient, written for an optimizer that sees one gradient."""

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.optimizers.momentum import Momentum


@register_keras_serializable(package="keras_optnotes")
class NesterovMomentum(Momentum):
    """Nesterov momentum: the gradient is taken at the look-ahead point.

    Symbols: θ the notes' iterate, g its gradient, a the accumulator (slot
    `accumulators`), η `learning_rate`, β `momentum`.

    The notes write the rule with the gradient at the look-ahead point:

        a_{t+1} = β a_t + ∇L(θ_t − η β a_t)
        θ_{t+1} = θ_t − η a_{t+1}

    An optimizer only ever sees the gradient at the model's current weights, so this
    class keeps the look-ahead point φ = θ − η β a as the model's weights, and updates

        a ← β a + g            (g = ∇L(φ))
        φ ← φ − η (g + β a)

    With a constant η the model's weights after each step are exactly θ_t − η β a_t of
    the notes' equations; to read θ itself, add η β a. This is the form of
    `torch.optim.SGD(momentum=β, nesterov=True)`. The arguments, the slot and the
    config are `Momentum`'s; only the update differs.

    Args:
        learning_rate: η; a float > 0, a `LearningRateSchedule` or a callable.
            Defaults to 0.01.
        momentum: β in [0, 1). Defaults to 0.9.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer`.

    Example:
        >>> model.compile(optimizer=NesterovMomentum(0.01), loss="mse")

    References:
        Nesterov, "A method of solving a convex programming problem with convergence
        rate O(1/k²)", Soviet Mathematics Doklady 27, 1983.
        Sutskever, Martens, Dahl, Hinton, "On the importance of initialization and
        momentum in deep learning", ICML 2013.
    """

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        beta = self.scalar(self.momentum, variable)
        g = self.dense(gradient, variable)
        a = self.accumulators[self._get_variable_index(variable)]
        self.assign(a, ops.add(ops.multiply(beta, a), g))
        self.assign_sub(variable, ops.multiply(lr, ops.add(g, ops.multiply(beta, a))))
