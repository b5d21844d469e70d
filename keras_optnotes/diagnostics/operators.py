"""The operator: the training loss of a Keras model over some data, its gradient and its
Hessian-vector product, as functions of one flat parameter vector.

The loss is the one `model.fit` minimises: the loss given to `model.compile` (through
`model.compute_loss`) plus the model's own losses (`model.losses`: kernel regularizers,
`add_loss`). A `loss=` argument replaces the compiled loss (the model's own losses are
still added). Over several batches every quantity is the batch-size-weighted average
over all of them, which for a mean-reduced loss is the loss of the whole data set.

Precision: Keras casts the value of the *compiled* loss to `keras.config.floatx()`
(float32 by default) even for a float64 model; gradients and Hessian-vector products
are unaffected on TensorFlow, but differences of loss values (Keskar sharpness) are
then rounded at about 1e-7 relative. Pass `loss=` a loss built with
`dtype="float64"` (or set floatx) to measure in float64. On JAX and PyTorch, Keras
3.15 also computes some ops of float64 tensors at float32 precision (`ops.mean`, and
on PyTorch `ops.matmul`, hence `Dense`: its dtype promotion maps float64 to float32
off TensorFlow); a float64 measurement there needs layers and a loss built from
ops that keep float64 (`EinsumDense`; a callable `loss=`, averaged here by a sum).

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

from keras_optnotes.checks import check_bool
from keras_optnotes.diagnostics._backend import (
    batch_functions,
    check_backend,
    check_jit_compile,
)
from keras_optnotes.diagnostics._backend.common import restored_variables
from keras_optnotes.diagnostics._data import Batches


def check_model(model: Any) -> None:
    """Raise `ValueError` unless `model` is a built Keras model with trainable weights
    (and the backend can differentiate)."""
    check_backend()
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


def _mean(values, keep_first_axis: bool = False):
    """The mean over all axes (or all but the first), as a sum over a count.

    Not `keras.ops.mean`: off TensorFlow, Keras 3.15 computes the mean of a float64
    tensor at float32 precision (its dtype promotion maps float64 to float32 there).
    """
    if keep_first_axis:
        if len(values.shape) <= 1:
            return values
        axes = tuple(range(1, len(values.shape)))
        count = int(np.prod(values.shape[1:]))
        return keras.ops.sum(values, axis=axes) / count
    return keras.ops.sum(values) / keras.ops.cast(keras.ops.size(values), values.dtype)


def loss_function(model: keras.Model, loss: Any) -> Callable:
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
            per_example = _mean(loss_object(y, y_pred), keep_first_axis=True)
            if sample_weight is not None:
                per_example = per_example * keras.ops.cast(
                    keras.ops.reshape(sample_weight, (-1,)), per_example.dtype
                )
            total = _mean(per_example)
        for extra in model.losses:
            total = total + keras.ops.cast(extra, total.dtype)
        return total

    return value


@contextlib.contextmanager
def preserved_weights(model: keras.Model) -> Iterator[None]:
    """A context in which `model` may change: every variable is restored on exit.

    Every variable of the model is copied on entry and assigned back on exit (also
    when the block raises): its weights, trainable or not (batch normalization's
    moving statistics), and the seed state of its dropout and noise layers, which
    `get_weights` leaves out and which training-mode steps advance. The diagnostics
    that train or probe inside (`lr_range_test`, a measurement in training mode) use
    it so that the model leaves them as it came.

    Args:
        model: a built `keras.Model`.

    Example:

    >>> with preserved_weights(model):  # doctest: +SKIP
    ...     model.fit(x, y, epochs=1)  # a probe that trains
    >>> # model's weights, statistics and seed states are back as they were
    """
    with restored_variables(model.variables):
        yield


_CACHE_ATTRIBUTE = "_keras_optnotes_traced_functions"


def traced_functions(model, loss, training, jit_compile):
    """The cached batch functions (`_backend.batch_functions`) for this choice, and
    whether they are new.

    They hold no data, so they are cached on the model and shared by every operator
    and callback built on it: a new measurement on the same model reuses the traces.
    """
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
    functions = batch_functions(
        model, loss_function(model, loss), bool(training), jit_compile
    )
    cache[key] = ((loss_token, variables), functions)
    return functions, True


class HessianOperator:
    """The loss of `model` on `data` and its derivatives, as a function of the weights.

    The trainable variables of the model are seen as one flat vector θ of `size`
    entries (in the order of `model.trainable_variables`, each flattened in C order).
    `matvec(v)` returns H v with H = ∇²f(θ), never forming H, on every backend
    (`hvp_method` says how), with the method measured fastest there
    (`benchmarks/diagnostics.py`): double back-propagation ∇⟨∇f(θ), v⟩ on
    TensorFlow (nested `GradientTape`s) and PyTorch (`torch.autograd.grad` with
    `create_graph=True`, as PyHessian), forward-over-reverse on JAX (`jax.jvp` of
    `jax.grad` of the stateless loss). An `Embedding`'s sparse gradient is made
    dense in the product (TensorFlow); scaled-dot-product attention runs on its math
    kernel in it (PyTorch).

    The model's variables are never changed: every forward pass runs in a Keras
    `StatelessScope`, so with `training=True` batch normalization's moving
    statistics and the dropout seed stay as they are (and every product draws the
    same dropout mask, so that H is one matrix).

    On TensorFlow and JAX the three functions (loss, loss and gradient,
    Hessian-vector product) are traced once per batch shape and reused: the vector
    is a tensor argument, so a thousand products cost one trace; they are cached on
    the model, so later operators on the same model (same loss, `training` flag and
    trainable variables) reuse the traces. PyTorch runs eagerly.

    Args:
      model: a built Keras model.
      data: a `tf.data.Dataset` of `(x, y[, sample_weight])` batches, or a tuple of
        arrays `(x, y[, sample_weight])`.
      loss: `None` for the compiled loss, else a Keras loss, its name or a callable
        `loss(y_true, y_pred)` returning per-example (or per-entry) values: they are
        averaged over all but the first axis, weighted by `sample_weight` when the
        data have one, and averaged over the batch (Keras' convention).
      training: the `training` flag of the forward pass (default `False`: dropout off,
        batch normalization on its moving statistics).
      batch_size: batch size for array data (ignored for a dataset).
      jit_compile: TensorFlow: `None` (default) XLA-compiles the Hessian-vector
        product on a GPU or TPU where the model allows (falling back to a plain
        `tf.function`), and uses plain `tf.function`s on CPU, where XLA's
        convolutions are slower, and for the loss and gradient; `True` requires XLA
        for all three, on any device; `False` uses it for none. JAX: `None` or
        `True` jit (XLA) all three, `False` none. PyTorch: `None` or `False`
        (`True` is refused: torch has no XLA).

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
        jit_compile = check_jit_compile(jit_compile)
        self.model = model
        self.training = check_bool("training", training)
        self.batches = Batches(data, batch_size)
        functions, new = traced_functions(model, loss, self.training, jit_compile)
        if new:
            x, y, sample_weight, _ = self.batches.first
            functions.eager_loss(x, y, sample_weight)
        self.functions = functions
        # One fixed batch of arrays: PyTorch keeps its gradient's graph here between
        # products (see `release`); over several batches each product builds anew.
        self._graph = {} if self.batches.single else None
        self.variables = functions.variables
        self.shapes = functions.shapes
        self.sizes = functions.sizes
        self.size = int(sum(self.sizes))
        self.dtype = functions.dtype

    # --- public API ----------------------------------------------------------------

    @property
    def traces(self) -> int:
        """How many times the three functions were traced, in total (0 on PyTorch)."""
        return self.functions.traces

    @property
    def uses_xla(self) -> bool:
        """Whether the Hessian-vector product runs XLA-compiled."""
        return self.functions.uses_xla

    @property
    def hvp_method(self) -> str:
        """How the Hessian-vector product is computed on this backend."""
        return self.functions.hvp_method

    def _average(self, function, *extra):
        """The batch-size-weighted average of `function` (float64 NumPy values)."""
        total, count = None, 0
        for x, y, sample_weight, size in self.batches:
            value = function(x, y, sample_weight, *extra)
            weighted = keras.tree.map_structure(lambda t, size=size: t * size, value)
            total = (
                weighted
                if total is None
                else keras.tree.map_structure(np.add, total, weighted)
            )
            count += size
        return keras.tree.map_structure(lambda t: t / count, total)

    def loss(self) -> float:
        """f(θ) at the model's current weights, averaged over all batches."""
        return float(self._average(self.functions.loss))

    def loss_and_gradient(self) -> tuple[float, np.ndarray]:
        """f(θ) and ∇f(θ) (a flat float64 array) at the current weights."""
        loss, gradient = self._average(self.functions.loss_and_gradient)
        return float(loss), gradient

    def matvec(self, vector: Any) -> np.ndarray:
        """H v for a flat vector `v` of `size` entries; returns a flat float64 array."""
        vector = np.asarray(vector)
        if vector.shape != (self.size,):
            raise ValueError(
                f"`vector` must have shape ({self.size},) for this model; received "
                f"shape {vector.shape}."
            )
        return self._average(
            self.functions.hvp, self.functions.vector(vector), self._graph
        )

    def release(self) -> None:
        """Drop the gradient's graph kept between products (PyTorch, one batch).

        On PyTorch an operator on a single batch of arrays keeps ∇f's graph (the
        batch's activations) after its first product and reuses it while the
        weights are unchanged, as PyHessian does: each further product costs one
        back-propagation through that graph instead of a forward and two backward
        passes. The graph is rebuilt when any variable is assigned, and dropped
        with the operator or by this method (which `SharpnessMonitor` calls after
        each measurement, so that training does not carry it). Other backends
        keep nothing; there it does nothing.
        """
        if self._graph is not None:
            self._graph.clear()

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
        return [
            np.array(keras.ops.convert_to_numpy(v), copy=True) for v in self.variables
        ]

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
    model's current weights θ; H v = ∂/∂t ∇_θ f(θ + t v) at t = 0 = ∇_θ ⟨∇_θ f(θ), v⟩,
    by double back-propagation (TensorFlow, PyTorch) or forward-over-reverse
    differentiation (JAX), see `HessianOperator`. Over
    several batches, H v is the batch-size-weighted average of the per-batch
    products.

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
