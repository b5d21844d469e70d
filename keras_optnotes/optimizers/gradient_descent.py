"""Plain gradient descent, the notes' first update rule."""

from keras import ops
from keras.saving import register_keras_serializable

from keras_optnotes.optimizers.base import Optimizer


@register_keras_serializable(package="keras_optnotes")
class GradientDescent(Optimizer):
    """Gradient descent with a fixed or scheduled step size.

    Symbols: θ the variable, g its gradient, η `learning_rate`.

        θ ← θ − η g

    A sparse gradient (`tf.IndexedSlices`, from an `Embedding` layer) gives a sparse
    update: only the rows it names are written.

    Args:
        learning_rate: η; a float > 0, a `LearningRateSchedule` or a callable.
            Defaults to 0.01.
        jit_compile: fuse the update into XLA-compiled calls (TensorFlow backend).
        **kwargs: the keywords of `keras.optimizers.Optimizer`.

    Example:
        >>> model.compile(optimizer=GradientDescent(0.1), loss="mse")

    References:
        Cauchy, "Méthode générale pour la résolution des systèmes d'équations
        simultanées", 1847.
    """

    def __init__(self, learning_rate=0.01, *, jit_compile=True, **kwargs):
        super().__init__(learning_rate, jit_compile=jit_compile, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        lr = self.scalar(learning_rate, variable)
        rows = self.sparse_rows(gradient, variable)
        if rows is not None:
            # Only the rows that have a gradient move: a scatter, not a dense update
            # (repeated indices add up, as the dense gradient would).
            indices, values = rows
            self.assign_sub(
                variable,
                self.indexed_slices(ops.multiply(lr, values), indices, variable),
            )
            return
        self.assign_sub(variable, ops.multiply(lr, self.dense(gradient, variable)))
