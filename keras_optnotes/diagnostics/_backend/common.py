"""What the per-backend batch functions share: the layout of the flat weight vector."""

from __future__ import annotations

import keras
import numpy as np


class BatchFunctionsBase:
    """The loss, gradient and Hessian-vector product of one batch, for one backend.

    Subclasses (one per backend) provide `vector(np_vector) -> tensor` and, for a batch
    `(x, y, sample_weight)` of backend tensors, `loss(...) -> float64`,
    `loss_and_gradient(...) -> (float64, flat float64 array)` and
    `hvp(..., vector, graph=None) -> flat float64 array`, plus `traces`, `uses_xla`
    and `hvp_method` (a description of how H v is computed). `graph` is a dict the
    caller owns for one fixed batch: where the backend builds the gradient's graph
    eagerly (PyTorch) it is kept there and reused while the weights are unchanged;
    traced backends ignore it.

    The flat vector holds `model.trainable_variables` in order, each flattened in C
    order; its dtype is the first variable's.
    """

    hvp_method = ""

    def __init__(self, model: keras.Model, loss_function, training: bool):
        self.model = model
        self.loss_function = loss_function
        self.training = bool(training)
        self.variables = list(model.trainable_variables)
        self.shapes = [tuple(v.shape) for v in self.variables]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.dtype = keras.backend.standardize_dtype(self.variables[0].dtype)

    @property
    def traces(self) -> int:
        """How many times the functions were traced (0 where nothing is traced)."""
        return 0

    @property
    def uses_xla(self) -> bool:
        """Whether the Hessian-vector product runs XLA-compiled."""
        return False

    def eager_loss(self, x, y, sample_weight):
        """One plain call of model and loss, outside any trace: it builds whatever
        the compiled loss builds lazily (its trackers).

        Not in a `StatelessScope` (which cannot create variables), so every variable
        of the model is put back afterwards: in training mode the call moves
        batch normalization's moving statistics and the dropout seed.
        """
        with restored_variables(self.model.variables):
            y_pred = self.model(x, training=self.training)
            return self.loss_function(x, y, sample_weight, y_pred, self.training)

    def state_scope(self, mapping=()):
        """The scope of every forward pass of the diagnostics: a Keras
        `StatelessScope`, so that what the model assigns (batch normalization's
        moving statistics and the dropout seed in training mode, the loss trackers)
        is collected there and dropped, never written to the model. `mapping` gives
        values to variables; `add_loss` terms are collected, as in Keras' trainers.
        A consequence: in training mode every call draws the same dropout mask, so
        the loss stays one function of the weights."""
        return keras.StatelessScope(state_mapping=list(mapping), collect_losses=True)


class restored_variables:
    """Puts every variable of `variables` back to its value on entry, on exit."""

    def __init__(self, variables):
        self.variables = list(variables)

    def __enter__(self):
        self.values = [
            np.array(keras.ops.convert_to_numpy(v), copy=True) for v in self.variables
        ]

    def __exit__(self, *exc_info):
        for variable, value in zip(self.variables, self.values):
            variable.assign(value)
