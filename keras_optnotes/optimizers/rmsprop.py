"""RMSprop: Adagrad with a moving average in place of the sum."""

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.checks import check_bool, check_decay_rate, check_positive
from keras_optnotes.optimizers.base import Optimizer


@register_keras_serializable(package="keras_optnotes")
class RMSprop(Optimizer):
    """RMSprop: each coordinate's step is divided by a running RMS of its gradients.

    Symbols: θ the variable, g its gradient, G the exponential moving average of g²
    (slot `accumulators`), η `learning_rate`, ρ `rho`, ε `epsilon`.

        G ← ρ G + (1 − ρ) g²
        θ ← θ − η g / √(G + ε)          (epsilon_inside_sqrt=True, the notes)
        θ ← θ − η g / (√G + ε)          (epsilon_inside_sqrt=False, torch.optim)

    Warning: Keras' `keras.optimizers.RMSprop` puts ε outside the root and uses
    ρ = 0.9, ε = 1e-7; torch's default ρ (its `alpha`) is 0.99.

    Args:
        learning_rate: η; a float > 0, a `LearningRateSchedule` or a callable.
            Defaults to 0.001.
        rho: ρ in [0, 1). Defaults to 0.9.
        epsilon: ε > 0. Defaults to 1e-8.
        epsilon_inside_sqrt: where ε goes, see above. Defaults to True.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer`.

    Example:
        >>> model.compile(optimizer=RMSprop(0.001), loss="mse")

    References:
        Tieleman, Hinton, "Lecture 6.5 — RMSprop: divide the gradient by a running
        average of its recent magnitude", COURSERA: Neural Networks for Machine
        Learning, 2012.
    """

    HYPERPARAMETERS = {
        "rho": check_decay_rate,
        "epsilon": check_positive,
        "epsilon_inside_sqrt": check_bool,
    }

    def __init__(
        self,
        learning_rate=0.001,
        rho=0.9,
        epsilon=1e-8,
        epsilon_inside_sqrt=True,
        *,
        jit_compile=True,
        **kwargs,
    ):
        super().__init__(learning_rate, jit_compile=jit_compile, **kwargs)
        self.rho = rho
        self.epsilon = epsilon
        self.epsilon_inside_sqrt = epsilon_inside_sqrt

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.accumulators = self.add_optimizer_variables(variables, "accumulator")

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        g = self.dense(gradient, variable)
        G = self.accumulators[self._get_variable_index(variable)]
        self.update_moving_average(G, ops.square(g), self.rho)
        step = self.divide_by_root(
            ops.multiply(lr, g), G, self.epsilon, self.epsilon_inside_sqrt
        )
        self.assign_sub(variable, step)
