"""The loss, gradient and Hessian-vector product of one batch on the TensorFlow backend.

`tf.function`s over the model's variables. H v is double back-propagation by
default, ∇⟨∇f(θ), v⟩ with two nested `GradientTape`s: measured as fast as or faster
than forward-over-reverse on a CNN (`benchmarks/diagnostics.py`), and it traces once
where forward-over-reverse has to fail first (recurrent layers' loops have no
forward-mode rule). Forward-over-reverse stays available
(`method=FORWARD_OVER_REVERSE`): a `tf.autodiff.ForwardAccumulator` carrying the
tangent v through the `GradientTape` that computes the gradient, so H v is the
directional derivative of the gradient, ∂/∂t ∇f(θ + t v) at t = 0 (Pearlmutter's
R-operator), falling back to double back-propagation where an op has no
forward-mode rule. Sparse gradients (an `Embedding`'s `tf.IndexedSlices`) are made
dense first. Every forward pass runs in a `StatelessScope`, so the model's
variables are never written.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from keras_optnotes.diagnostics._backend.common import BatchFunctionsBase

_XLA_ERRORS = (
    tf.errors.InvalidArgumentError,
    tf.errors.UnimplementedError,
    tf.errors.InternalError,
    tf.errors.UnknownError,
)

FORWARD_OVER_REVERSE = (
    "forward-over-reverse (tf.autodiff.ForwardAccumulator over GradientTape)"
)
DOUBLE_BACKWARD = "double back-propagation (nested GradientTape)"


def _accelerator_present() -> bool:
    return bool(
        tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU")
    )


class _Compiled:
    """A `tf.function`, XLA-compiled when asked or when it pays.

    `jit_compile=None` (auto) uses XLA when a GPU or TPU is present and the plain
    `tf.function` on CPU only: on CPU, TensorFlow's own (oneDNN) kernels beat XLA's
    for convolutions — `benchmarks/diagnostics.py` measured a 94k-weight CNN's
    gradient at 1.7 s with XLA against 0.54 s without. `True` insists on XLA
    anywhere; `False` never uses it. When XLA is tried and rejects the graph (an op
    without an XLA kernel), the plain `tf.function` is used from then on (unless
    XLA was insisted on).
    """

    def __init__(self, function: Callable, jit_compile: bool | None):
        self.traces = 0

        def counted(*args):
            self.traces += 1  # runs once per trace, never per call
            return function(*args)

        use_xla = _accelerator_present() if jit_compile is None else jit_compile
        self._plain = tf.function(counted, reduce_retracing=False)
        self._xla = tf.function(counted, jit_compile=True) if use_xla else None
        self._insist = jit_compile is True
        self.uses_xla = self._xla is not None

    def __call__(self, *args):
        if self._xla is not None:
            try:
                return self._xla(*args)
            except _XLA_ERRORS:
                if self._insist:
                    raise
                self._xla = None
                self.uses_xla = False
        return self._plain(*args)


class BatchFunctions(BatchFunctionsBase):
    """See `keras_optnotes.diagnostics._backend.batch_functions`."""

    def __init__(self, model, loss_function, training, jit_compile, method=None):
        super().__init__(model, loss_function, training)
        # The tf.Variables under Keras' variables: what tapes and accumulators watch.
        self._watched = [v.value for v in self.variables]
        # XLA can pay for itself on the Hessian-vector product, called hundreds of
        # times; the loss and its gradient are called a few dozen times per
        # measurement, so by default they skip the seconds of XLA compilation.
        plain = False if jit_compile is None else jit_compile
        self.loss_fn = _Compiled(self._batch_loss, plain)
        self.gradient_fn = _Compiled(self._batch_loss_and_gradient, plain)
        self._jit_compile = jit_compile
        self._set_method(method or DOUBLE_BACKWARD)

    def _set_method(self, method):
        body = (
            self._batch_hvp_forward
            if method == FORWARD_OVER_REVERSE
            else self._batch_hvp_double_backward
        )
        self.hvp_method = method
        self.hvp_fn = _Compiled(body, self._jit_compile)

    @property
    def traces(self) -> int:
        return self.loss_fn.traces + self.gradient_fn.traces + self.hvp_fn.traces

    @property
    def uses_xla(self) -> bool:
        return self.hvp_fn.uses_xla

    # --- traced bodies -----------------------------------------------------------

    def _batch_loss(self, x, y, sample_weight):
        with self.state_scope():
            y_pred = self.model(x, training=self.training)
            loss = self.loss_function(x, y, sample_weight, y_pred, self.training)
        return tf.cast(loss, self.dtype)

    def _split(self, vector):
        pieces = tf.split(vector, self.sizes)
        return [
            tf.cast(tf.reshape(p, s), v.dtype)
            for p, s, v in zip(pieces, self.shapes, self.variables)
        ]

    def _join(self, tensors):
        return tf.concat([tf.cast(tf.reshape(t, [-1]), self.dtype) for t in tensors], 0)

    def _gradients(self, tape, loss):
        gradients = tape.gradient(
            loss, self._watched, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        # An `Embedding`'s gradient is a `tf.IndexedSlices`, which neither the
        # forward accumulator nor a second tape can carry: made dense here.
        return [
            tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g
            for g in gradients
        ]

    def _batch_loss_and_gradient(self, x, y, sample_weight):
        with tf.GradientTape() as tape:
            loss = self._batch_loss(x, y, sample_weight)
        return loss, self._join(self._gradients(tape, loss))

    def _batch_hvp_forward(self, x, y, sample_weight, vector):
        with tf.autodiff.ForwardAccumulator(self._watched, self._split(vector)) as acc:
            with tf.GradientTape() as tape:
                loss = self._batch_loss(x, y, sample_weight)
            gradients = self._gradients(tape, loss)
        products = acc.jvp(
            gradients, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return self._join(products)

    def _batch_hvp_double_backward(self, x, y, sample_weight, vector):
        pieces = self._split(vector)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = self._batch_loss(x, y, sample_weight)
            gradients = self._gradients(inner, loss)
            inner_product = tf.add_n(
                [tf.reduce_sum(g * p) for g, p in zip(gradients, pieces)]
            )
        return self._join(self._gradients(outer, inner_product))

    # --- calls -------------------------------------------------------------------

    def vector(self, vector: np.ndarray):
        return tf.constant(vector, dtype=self.dtype)

    def loss(self, x, y, sample_weight):
        return np.float64(self.loss_fn(x, y, sample_weight).numpy())

    def loss_and_gradient(self, x, y, sample_weight):
        loss, gradient = self.gradient_fn(x, y, sample_weight)
        return np.float64(loss.numpy()), gradient.numpy().astype(np.float64)

    def hvp(self, x, y, sample_weight, vector, graph=None):
        del graph  # the traced product keeps no graph between calls
        try:
            product = self.hvp_fn(x, y, sample_weight, vector)
        except (LookupError, NotImplementedError, TypeError, ValueError):
            # An op without a forward-mode rule: trace the double-backward product.
            if self.hvp_method != FORWARD_OVER_REVERSE:
                raise
            self._set_method(DOUBLE_BACKWARD)
            product = self.hvp_fn(x, y, sample_weight, vector)
        return product.numpy().astype(np.float64)
