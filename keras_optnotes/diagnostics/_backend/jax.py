"""The loss, gradient and Hessian-vector product of one batch on the JAX backend.

The loss is a pure function of the trainable and non-trainable values: the forward
pass and the loss run in one Keras `StatelessScope` that maps every variable of the
model to the value passed in (what `model.stateless_call` does, with the loss inside
the scope so that regularizers read the mapped weights and `add_loss` terms are
collected, as Keras' JAX trainer does). H v is forward-over-reverse, `jax.jvp` of
`jax.grad`, jitted (XLA) unless `jit_compile=False`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import keras
import numpy as np

from keras_optnotes.diagnostics._backend.common import BatchFunctionsBase

FORWARD_OVER_REVERSE = "forward-over-reverse (jax.jvp of jax.grad, stateless)"


class BatchFunctions(BatchFunctionsBase):
    """See `keras_optnotes.diagnostics._backend.batch_functions`."""

    hvp_method = FORWARD_OVER_REVERSE

    def __init__(self, model, loss_function, training, jit_compile):
        super().__init__(model, loss_function, training)
        self._non_trainable = list(model.non_trainable_variables)
        self._traces = 0
        self._jit = jit_compile is not False
        compile_ = jax.jit if self._jit else (lambda f: f)
        self._loss_fn = compile_(self._counted(self._loss))
        self._gradient_fn = compile_(self._counted(jax.value_and_grad(self._loss)))
        self._hvp_fn = compile_(self._counted(self._hvp))

    def _counted(self, function):
        def counted(*args):
            self._traces += 1  # runs once per trace when jitted
            return function(*args)

        return counted

    @property
    def traces(self) -> int:
        return self._traces if self._jit else 0

    @property
    def uses_xla(self) -> bool:
        return self._jit

    # --- pure functions ----------------------------------------------------------

    def _loss(self, trainable, non_trainable, x, y, sample_weight):
        mapping = list(zip(self.variables, trainable)) + list(
            zip(self._non_trainable, non_trainable)
        )
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            y_pred = self.model(x, training=self.training)
            value = self.loss_function(x, y, sample_weight, y_pred, self.training)
        return jnp.asarray(value, self.dtype)

    def _hvp(self, trainable, non_trainable, x, y, sample_weight, vector):
        pieces = jnp.split(vector, np.cumsum(self.sizes)[:-1])
        tangents = [
            p.reshape(s).astype(v.dtype)
            for p, s, v in zip(pieces, self.shapes, self.variables)
        ]

        def gradient(values):
            return jax.grad(self._loss)(values, non_trainable, x, y, sample_weight)

        _, products = jax.jvp(gradient, (trainable,), (tangents,))
        return self._join(products)

    def _join(self, arrays):
        return jnp.concatenate([a.reshape(-1).astype(self.dtype) for a in arrays])

    # --- calls -------------------------------------------------------------------

    def _values(self):
        # Inside `fit`, Keras' JAX trainer keeps the state outside the variables
        # (and empties them) between epochs; a callback that reads the weights
        # asks for them back, as Keras provides for.
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        return (
            [v.value for v in self.variables],
            [v.value for v in self._non_trainable],
        )

    def vector(self, vector: np.ndarray):
        return jnp.asarray(vector, self.dtype)

    def loss(self, x, y, sample_weight):
        return np.float64(self._loss_fn(*self._values(), x, y, sample_weight))

    def loss_and_gradient(self, x, y, sample_weight):
        loss, gradients = self._gradient_fn(*self._values(), x, y, sample_weight)
        return np.float64(loss), np.asarray(self._join(gradients), np.float64)

    def hvp(self, x, y, sample_weight, vector, graph=None):
        del graph  # the compiled product keeps no graph between calls
        product = self._hvp_fn(*self._values(), x, y, sample_weight, vector)
        return np.asarray(product, np.float64)
