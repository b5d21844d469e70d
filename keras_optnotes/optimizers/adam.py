"""Adam: momentum on the gradient and an RMSprop denominator, both bias-corrected."""

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.checks import check_bool, check_decay_rate, check_positive
from keras_optnotes.optimizers.base import Optimizer


@register_keras_serializable(package="keras_optnotes")
class Adam(Optimizer):
    """Adam, with the notes' or the paper's placement of ε, and AMSGrad.

    Symbols: θ the variable, g its gradient, m and v the moving averages of g and g²
    (slots `momentums`, `velocities`), t the step number (1, 2, …), η `learning_rate`,
    β1 `beta_1`, β2 `beta_2`, ε `epsilon`.

        m ← β1 m + (1 − β1) g
        v ← β2 v + (1 − β2) g²
        θ ← θ − η · √(1 − β2^t) / (1 − β1^t) · m / √(v + ε)        (epsilon_inside_sqrt=True)
        θ ← θ − η · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε)      (epsilon_inside_sqrt=False)

    The first form is the notes'; the second is Algorithm 1 of the paper and
    `torch.optim.Adam`. With `amsgrad=True` the denominator uses v̂ ← max(v̂, v) (slot
    `velocity_hats`) in place of v.

    Warning: Keras' `keras.optimizers.Adam` uses yet a third placement,
    η √(1−β2^t)/(1−β1^t) · m / (√v + ε), with ε = 1e-7. With `weight_decay=λ` this
    class is AdamW (decoupled decay θ ← θ − η λ θ before the step), not an L2 penalty.

    Args:
        learning_rate: η; a float > 0, a `LearningRateSchedule` or a callable.
            Defaults to 0.001.
        beta_1: β1 in [0, 1). Defaults to 0.9.
        beta_2: β2 in [0, 1). Defaults to 0.999.
        epsilon: ε > 0. Defaults to 1e-8.
        epsilon_inside_sqrt: where ε goes, see above. Defaults to True.
        amsgrad: use the running maximum of v. Defaults to False.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer`.

    Example:
        >>> model.compile(optimizer=Adam(1e-3, epsilon_inside_sqrt=False), loss="mse")

    References:
        Kingma, Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
        Reddi, Kale, Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
        Loshchilov, Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    HYPERPARAMETERS = {
        "beta_1": check_decay_rate,
        "beta_2": check_decay_rate,
        "epsilon": check_positive,
        "epsilon_inside_sqrt": check_bool,
        "amsgrad": check_bool,
    }

    def __init__(
        self,
        learning_rate=0.001,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        epsilon_inside_sqrt=True,
        amsgrad=False,
        *,
        jit_compile=True,
        **kwargs,
    ):
        super().__init__(learning_rate, jit_compile=jit_compile, **kwargs)
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.epsilon_inside_sqrt = epsilon_inside_sqrt
        self.amsgrad = amsgrad

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums, self.velocities = self.add_optimizer_variables(
            variables, ["momentum", "velocity"]
        )
        if self.amsgrad:
            self.velocity_hats = self.add_optimizer_variables(variables, "velocity_hat")

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        g = self.dense(gradient, variable)
        index = self._get_variable_index(variable)
        m = self.momentums[index]
        v = self.velocities[index]
        t = self.scalar(self.iterations + 1, variable)
        beta_1, beta_2 = (
            self.scalar(self.beta_1, variable),
            self.scalar(self.beta_2, variable),
        )
        one = self.scalar(1.0, variable)
        bias_1 = ops.subtract(one, ops.power(beta_1, t))
        bias_2 = ops.subtract(one, ops.power(beta_2, t))

        self.update_moving_average(m, g, self.beta_1)
        self.update_moving_average(v, ops.square(g), self.beta_2)
        if self.amsgrad:
            v_hat = self.velocity_hats[index]
            # max(v̂, v) as a `where`: Keras 3.15's `ops.maximum` on the torch backend
            # returns float32 for two float64 tensors (its dtype lookup misses torch
            # dtypes), which cost AMSGrad its float64 precision there.
            v_now, v_max = ops.convert_to_tensor(v), ops.convert_to_tensor(v_hat)
            self.assign(v_hat, ops.where(ops.greater(v_now, v_max), v_now, v_max))
            v = v_hat
        if self.epsilon_inside_sqrt:
            step_size = ops.divide(ops.multiply(lr, ops.sqrt(bias_2)), bias_1)
            step = self.divide_by_root(
                ops.multiply(step_size, m), v, self.epsilon, True
            )
        else:
            step = self.divide_by_root(
                ops.multiply(ops.divide(lr, bias_1), m),
                ops.divide(v, bias_2),
                self.epsilon,
                False,
            )
        self.assign_sub(variable, step)
