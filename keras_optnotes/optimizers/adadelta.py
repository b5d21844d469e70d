"""Adadelta: steps with the units of θ, from running averages of squared gradients and
squared updates."""

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.checks import check_decay_rate, check_positive
from keras_optnotes.optimizers.base import Optimizer


@register_keras_serializable(package="keras_optnotes")
class Adadelta(Optimizer):
    """Adadelta (Zeiler 2012, Algorithm 1).

    Symbols: θ the variable, g its gradient, E_g the running average of g² (slot
    `accumulators`), E_Δ the running average of squared updates Δ² (slot
    `delta_accumulators`), ρ `rho`, ε `epsilon`, η `learning_rate`.

        E_g ← ρ E_g + (1 − ρ) g²
        Δ   ← −( √(E_Δ + ε) / √(E_g + ε) ) · g
        E_Δ ← ρ E_Δ + (1 − ρ) Δ²
        θ   ← θ + η Δ

    The notes ask what H is in their formula: it is E_Δ, the running average of the
    squared *updates*; the ratio of the two roots gives the step the units of θ (the
    notes' formula also drops the factor g). The paper has no learning rate; η = 1.0,
    the default, is the paper. Keras' `keras.optimizers.Adadelta` defaults to η = 0.001.

    Args:
        learning_rate: η; a float > 0, a `LearningRateSchedule` or a callable.
            Defaults to 1.0.
        rho: ρ in [0, 1). Defaults to 0.95.
        epsilon: ε > 0. Defaults to 1e-6.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer`.

    Example:
        >>> model.compile(optimizer=Adadelta(), loss="mse")

    References:
        Zeiler, "ADADELTA: An Adaptive Learning Rate Method", arXiv:1212.5701, 2012.
    """

    HYPERPARAMETERS = {"rho": check_decay_rate, "epsilon": check_positive}

    def __init__(
        self, learning_rate=1.0, rho=0.95, epsilon=1e-6, *, jit_compile=True, **kwargs
    ):
        super().__init__(learning_rate, jit_compile=jit_compile, **kwargs)
        self.rho = rho
        self.epsilon = epsilon

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.accumulators, self.delta_accumulators = self.add_optimizer_variables(
            variables, ["accumulator", "delta_accumulator"]
        )

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        g = self.dense(gradient, variable)
        index = self._get_variable_index(variable)
        E_g = self.accumulators[index]
        E_delta = self.delta_accumulators[index]
        epsilon = self.scalar(self.epsilon, variable)

        self.update_moving_average(E_g, ops.square(g), self.rho)
        delta = ops.negative(
            ops.multiply(
                ops.divide(
                    ops.sqrt(ops.add(E_delta, epsilon)), ops.sqrt(ops.add(E_g, epsilon))
                ),
                g,
            )
        )
        self.update_moving_average(E_delta, ops.square(delta), self.rho)
        self.assign_add(variable, ops.multiply(lr, delta))
