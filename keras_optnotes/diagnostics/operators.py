"""The operator: the training loss of a Keras model over some data, its gradient and its
Hessian-vector product, as functions of one flat parameter vector.

The loss is the one `model.fit` minimises: the loss given to `model.compile` (through
`model.compute_loss`) plus the model's own losses (`model.losses`: kernel regularizers,
`add_loss`). A `loss=` argument replaces the compiled loss (the model's own losses are
still added). Over several batches every quantity is the batch-size-weighted average
over all of them, which for a mean-reduced loss is the loss of the whole data set.

Precision: Keras casts the value of the *compiled* loss to `keras.config.floatx()`
(float32 by default) even for a float64 model; gradients and Hessian-vector products
are unaffected, but differences of loss values (Keskar sharpness) are then rounded at
about 1e-7 relative. Pass `loss=` a loss built with `dtype="float64"` (or set floatx)
to measure in float64.

Everything is computed with `training=False` unless told otherwise: dropout off,
batch normalization on its moving statistics, so that the loss is a deterministic
function of the weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_optnotes.diagnostics._data import Batches

_XLA_ERRORS = (
    tf.errors.InvalidArgumentError,
    tf.errors.UnimplementedError,
    tf.errors.InternalError,
    tf.errors.UnknownError,
)


def check_model(model: Any) -> None:
    """Raise `ValueError` unless `model` is a built Keras model with trainable weights."""
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`model` must be a keras.Model; received {type(model).__name__}."
        )
    if not model.built:
        raise ValueError(
            f"`model` ({model.name!r}) is not built: call it on data or give it an "
            "`Input` before measuring it."
        )
    if not model.trainable_variables:
        raise ValueError(f"`model` ({model.name!r}) has no trainable variables.")


def _loss_function(model: keras.Model, loss: Any) -> Callable:
    """`f(x, y, sample_weight, y_pred, training) -> scalar` for the chosen loss."""
    if loss is None:
        if getattr(model, "compiled", False) and model.loss is not None:
            return lambda x, y, sample_weight, y_pred, training: model.compute_loss(
                x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
            )
        raise ValueError(
            f"`model` ({model.name!r}) is not compiled with a loss; compile it with "
            "`loss=...` or pass `loss=` (a Keras loss, its name or a callable)."
        )
    loss_object = keras.losses.get(loss) if isinstance(loss, str) else loss
    if not callable(loss_object):
        raise ValueError(
            f"`loss` must be a Keras loss, its name or a callable; received {loss!r}."
        )

    def value(x, y, sample_weight, y_pred, training):
        if isinstance(loss_object, keras.losses.Loss):
            total = loss_object(y, y_pred, sample_weight)
        else:
            per_example = loss_object(y, y_pred)
            if sample_weight is not None:
                per_example = per_example * tf.cast(sample_weight, per_example.dtype)
            total = tf.reduce_mean(per_example)
        for extra in model.losses:
            total = total + tf.cast(extra, total.dtype)
        return total

    return value


@contextlib.contextmanager
def preserved_weights(model: keras.Model) -> Iterator[None]:
    """Restore every weight of `model` (trainable or not) exactly on exit."""
    saved = [np.array(w, copy=True) for w in model.get_weights()]
    try:
        yield
    finally:
        model.set_weights(saved)


def _accelerator_present() -> bool:
    return bool(
        tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU")
    )


class _Compiled:
    """A `tf.function`, XLA-compiled when asked or when it pays.

    `jit_compile=None` (auto) uses XLA when a GPU or TPU is present and the plain
    `tf.function` on CPU only: on CPU, TensorFlow's own (oneDNN) kernels beat XLA's
    for convolutions — `benchmarks/diagnostics.py` measured a 94k-weight CNN's
    gradient at 1.7 s with XLA against 0.54 s without, its Hessian-vector product at
    2.6 s against 1.4 s. `True` insists on XLA anywhere; `False` never uses it. When
    XLA is tried and rejects the graph (an op without an XLA kernel), the plain
    `tf.function` is used from then on (unless XLA was insisted on).
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


class _TracedFunctions:
    """The three compiled functions of one (model, loss, training, variables) choice.

    They hold no data, so they can be cached on the model and shared by every
    operator built on it: a new measurement on the same model reuses the traces.
    """

    def __init__(self, model, loss_function, training, jit_compile):
        self.model = model
        self.training = training
        self._loss = loss_function
        self.variables = list(model.trainable_variables)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.dtype = tf.as_dtype(self.variables[0].dtype)
        # XLA can pay for itself on the Hessian-vector product, called hundreds of
        # times; the loss and its gradient are called a few dozen times per
        # measurement, so by default they skip the seconds of XLA compilation.
        plain = False if jit_compile is None else jit_compile
        self.loss_fn = _Compiled(self._batch_loss, plain)
        self.gradient_fn = _Compiled(self._batch_loss_and_gradient, plain)
        self.hvp_fn = _Compiled(self._batch_hvp, jit_compile)

    # --- traced bodies -----------------------------------------------------------------

    def _batch_loss(self, x, y, sample_weight):
        y_pred = self.model(x, training=self.training)
        return tf.cast(
            self._loss(x, y, sample_weight, y_pred, self.training), self.dtype
        )

    def _split(self, vector):
        pieces = tf.split(vector, self.sizes)
        return [
            tf.cast(tf.reshape(p, s), v.dtype)
            for p, s, v in zip(pieces, self.shapes, self.variables)
        ]

    def _join(self, tensors):
        return tf.concat([tf.cast(tf.reshape(t, [-1]), self.dtype) for t in tensors], 0)

    def _batch_loss_and_gradient(self, x, y, sample_weight):
        with tf.GradientTape() as tape:
            loss = self._batch_loss(x, y, sample_weight)
        gradients = tape.gradient(
            loss, self.variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        return loss, self._join(gradients)

    def _batch_hvp(self, x, y, sample_weight, vector):
        pieces = self._split(vector)
        with tf.GradientTape() as outer:
            with tf.GradientTape() as inner:
                loss = self._batch_loss(x, y, sample_weight)
            gradients = inner.gradient(
                loss, self.variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            inner_product = tf.add_n(
                [tf.reduce_sum(g * p) for g, p in zip(gradients, pieces)]
            )
        products = outer.gradient(
            inner_product,
            self.variables,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        return self._join(products)


_CACHE_ATTRIBUTE = "_keras_optnotes_traced_functions"


def _traced_functions(model, loss, training, jit_compile):
    """The cached `_TracedFunctions` for this choice, and whether it is new."""
    cache = vars(model).get(_CACHE_ATTRIBUTE)
    if cache is None:
        cache = {}
        # Plain attribute, outside Keras' tracking of layers and variables.
        object.__setattr__(model, _CACHE_ATTRIBUTE, cache)
    # The compiled loss (or the given one) and the variables are part of the key;
    # the entry keeps them alive, so their ids cannot be reused by other objects.
    loss_token = getattr(model, "_compile_loss", None) if loss is None else loss
    variables = tuple(model.trainable_variables)
    key = (
        loss if isinstance(loss, str) else id(loss_token),
        bool(training),
        jit_compile,
        tuple(id(v) for v in variables),
    )
    if key in cache:
        return cache[key][1], False
    functions = _TracedFunctions(
        model, _loss_function(model, loss), bool(training), jit_compile
    )
    cache[key] = ((loss_token, variables), functions)
    return functions, True


class HessianOperator:
    """The loss of `model` on `data` and its derivatives, as a function of the weights.

    The trainable variables of the model are seen as one flat vector θ of `size`
    entries (in the order of `model.trainable_variables`, each flattened in C order).
    `matvec(v)` returns H v with H = ∇²f(θ), computed by double back-propagation
    (the gradient of ⟨∇f(θ), v⟩), never forming H.

    The three functions (loss, loss and gradient, Hessian-vector product) are traced
    once per batch shape and reused: the vector is a tensor argument, so a thousand
    products cost one trace, and they are cached on the model, so later operators
    on the same model (same loss, `training` flag and trainable variables) reuse the
    traces.

    Args:
      model: a built Keras model.
      data: a `tf.data.Dataset` of `(x, y[, sample_weight])` batches, or a tuple of
        arrays `(x, y[, sample_weight])`.
      loss: `None` for the compiled loss, else a Keras loss, its name or a callable
        `loss(y_true, y_pred)` returning per-example values (averaged here).
      training: the `training` flag of the forward pass (default `False`: dropout off,
        batch normalization on its moving statistics).
      batch_size: batch size for array data (ignored for a dataset).
      jit_compile: `None` (default) XLA-compiles the Hessian-vector product on a GPU
        or TPU where the model allows (falling back to a plain `tf.function`), and
        uses plain `tf.function`s on CPU, where XLA's convolutions are slower, and
        for the loss and gradient; `True` requires XLA for all three, on any
        device; `False` uses it for none.

    Example:
      >>> operator = HessianOperator(model, (x, y))
      >>> hv = operator.matvec(np.ones(operator.size))
    """

    def __init__(
        self,
        model: keras.Model,
        data: Any,
        *,
        loss: Any = None,
        training: bool = False,
        batch_size: int = 256,
        jit_compile: bool | None = None,
    ):
        check_model(model)
        self.model = model
        self.training = bool(training)
        self.batches = Batches(data, batch_size)
        functions, new = _traced_functions(model, loss, self.training, jit_compile)
        if new:
            # One eager call builds whatever the compiled loss builds lazily (its
            # trackers), outside any trace.
            x, y, sample_weight, _ = self.batches.first
            functions._batch_loss(x, y, sample_weight)
        self.variables = functions.variables
        self.shapes = functions.shapes
        self.sizes = functions.sizes
        self.size = int(sum(self.sizes))
        self.dtype = functions.dtype
        self._loss_fn = functions.loss_fn
        self._gradient_fn = functions.gradient_fn
        self._hvp_fn = functions.hvp_fn

    # --- public API ----------------------------------------------------------------

    @property
    def traces(self) -> int:
        """How many times the three functions were traced, in total."""
        return self._loss_fn.traces + self._gradient_fn.traces + self._hvp_fn.traces

    @property
    def uses_xla(self) -> bool:
        """Whether the Hessian-vector product runs XLA-compiled."""
        return self._hvp_fn.uses_xla

    def _average(self, function, *extra):
        total, count = None, 0
        for x, y, sample_weight, size in self.batches:
            value = function(x, y, sample_weight, *extra)
            weighted = tf.nest.map_structure(
                lambda t, size=size: tf.cast(t, tf.float64) * size, value
            )
            total = (
                weighted
                if total is None
                else tf.nest.map_structure(tf.add, total, weighted)
            )
            count += size
        return tf.nest.map_structure(lambda t: (t / count).numpy(), total)

    def loss(self) -> float:
        """f(θ) at the model's current weights, averaged over all batches."""
        return float(self._average(self._loss_fn))

    def loss_and_gradient(self) -> tuple[float, np.ndarray]:
        """f(θ) and ∇f(θ) (a flat float64 array) at the current weights."""
        loss, gradient = self._average(self._gradient_fn)
        return float(loss), gradient

    def matvec(self, vector: Any) -> np.ndarray:
        """H v for a flat vector `v` of `size` entries; returns a flat float64 array."""
        vector = np.asarray(vector)
        if vector.shape != (self.size,):
            raise ValueError(
                f"`vector` must have shape ({self.size},) for this model; received "
                f"shape {vector.shape}."
            )
        return self._average(self._hvp_fn, tf.constant(vector, dtype=self.dtype))

    def flatten(self, arrays: Sequence[Any]) -> np.ndarray:
        """Concatenate per-variable arrays (model order) into one flat float64 vector."""
        arrays = list(arrays)
        if len(arrays) != len(self.shapes) or any(
            tuple(np.shape(a)) != s for a, s in zip(arrays, self.shapes)
        ):
            raise ValueError(
                "`vector` must be a flat array or one array per trainable variable "
                f"with shapes {self.shapes}; received shapes "
                f"{[tuple(np.shape(a)) for a in arrays]}."
            )
        return np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])

    def unflatten(self, vector: np.ndarray) -> list[np.ndarray]:
        """Cut a flat vector into per-variable arrays, in model order."""
        pieces = np.split(np.asarray(vector), np.cumsum(self.sizes)[:-1])
        return [p.reshape(s) for p, s in zip(pieces, self.shapes)]

    def get_weights(self) -> list[np.ndarray]:
        """Exact copies of the trainable variables' values."""
        return [np.array(v.numpy(), copy=True) for v in self.variables]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Assign per-variable values (cast to each variable's dtype)."""
        for variable, value in zip(self.variables, weights):
            variable.assign(np.asarray(value).astype(variable.dtype))

    def set_flat_weights(self, vector: np.ndarray) -> None:
        """Assign a flat vector to the trainable variables."""
        self.set_weights(self.unflatten(vector))


def hessian_vector_product(
    model: keras.Model,
    data: Any,
    vector: Any,
    *,
    loss: Any = None,
    training: bool = False,
    batch_size: int = 256,
    jit_compile: bool | None = None,
) -> Any:
    """The product of the loss Hessian with a vector, H v, without forming H.

    H = ∇²f(θ) is the Hessian of the training loss f (see the module docstring) at the
    model's current weights θ; H v = ∇_θ ⟨∇_θ f(θ), v⟩ by double back-propagation,
    XLA-compiled on a GPU or TPU where the model allows (see `HessianOperator`). Over several batches, H v is the
    batch-size-weighted average of the per-batch products.

    Args:
      model: a built Keras model (compiled with a loss, or pass `loss=`).
      data: a `tf.data.Dataset` of `(x, y[, sample_weight])` batches or a tuple of
        arrays.
      vector: one array per trainable variable (in `model.trainable_variables` order)
        or one flat array of all of them.
      loss: replaces the compiled loss when given.
      training: forward pass flag; `False` (default) turns dropout off and uses the
        batch-normalization moving statistics.
      batch_size: batch size for array data.
      jit_compile: see `HessianOperator`.

    Returns:
      H v in the form `vector` was given: a list of arrays, or a flat array (float64).

    Example:
      >>> hv = hessian_vector_product(model, (x, y), [np.ones(v.shape) for v in
      ...                              model.trainable_variables])

    References:
      Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994.
    """
    operator = HessianOperator(
        model,
        data,
        loss=loss,
        training=training,
        batch_size=batch_size,
        jit_compile=jit_compile,
    )
    if isinstance(vector, (list, tuple)):
        return operator.unflatten(operator.matvec(operator.flatten(vector)))
    return operator.matvec(np.asarray(vector, np.float64))
