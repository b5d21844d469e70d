"""Adagrad: per-coordinate steps shrinking with the sum of squared gradients."""

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.checks import check_bool, check_positive
from keras_optnotes.optimizers.base import Optimizer
from keras_optnotes.optimizers.checks import check_non_negative


@register_keras_serializable(package="keras_optnotes")
class Adagrad(Optimizer):
    """Adagrad: each coordinate's step is divided by its accumulated gradient size.

    Symbols: θ the variable, g its gradient, G the sum of squared gradients (slot
    `accumulators`, starting at `initial_accumulator_value`), η `learning_rate`,
    ε `epsilon`.

        G ← G + g²
        θ ← θ − η g / √(G + ε)          (epsilon_inside_sqrt=True, the notes)
        θ ← θ − η g / (√G + ε)          (epsilon_inside_sqrt=False, Duchi et al., torch)

    Since G only grows, the effective step η/√(G + ε) shrinks towards zero: the
    weakness the notes point out and that RMSprop and Adadelta repair.

    Warning: Keras' `keras.optimizers.Adagrad` puts ε outside the root and starts G at
    0.1; here the defaults follow the notes (ε inside, G starting at 0).

    Args:
        learning_rate: η; a float > 0, a `LearningRateSchedule` or a callable.
            Defaults to 0.01.
        epsilon: ε > 0. Defaults to 1e-8.
        initial_accumulator_value: the starting value of G, ≥ 0. Defaults to 0.0.
        epsilon_inside_sqrt: where ε goes, see above. Defaults to True.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer`.

    Example:
        >>> model.compile(optimizer=Adagrad(0.01), loss="mse")

    References:
        Duchi, Hazan, Singer, "Adaptive Subgradient Methods for Online Learning and
        Stochastic Optimization", JMLR 12, 2011.
    """

    HYPERPARAMETERS = {
        "epsilon": check_positive,
        "initial_accumulator_value": check_non_negative,
        "epsilon_inside_sqrt": check_bool,
    }

    def __init__(
        self,
        learning_rate=0.01,
        epsilon=1e-8,
        initial_accumulator_value=0.0,
        epsilon_inside_sqrt=True,
        *,
        jit_compile=True,
        **kwargs,
    ):
        super().__init__(learning_rate, jit_compile=jit_compile, **kwargs)
        self.epsilon = epsilon
        self.initial_accumulator_value = initial_accumulator_value
        self.epsilon_inside_sqrt = epsilon_inside_sqrt

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.accumulators = self.add_optimizer_variables(
            variables,
            "accumulator",
            # keras.initializers.Constant rounds through float32; fill in the dtype.
            initializer=self._initial_accumulator,
        )

    def _initial_accumulator(self, shape, dtype=None):
        return ops.full(shape, self.initial_accumulator_value, dtype=dtype)

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        g = self.dense(gradient, variable)
        G = self.accumulators[self._get_variable_index(variable)]
        self.assign_add(G, ops.square(g))
        step = self.divide_by_root(
            ops.multiply(lr, g), G, self.epsilon, self.epsilon_inside_sqrt
        )
        self.assign_sub(variable, step)
