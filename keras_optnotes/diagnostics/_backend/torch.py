"""The loss, gradient and Hessian-vector product of one batch on the PyTorch backend.

Keras' torch variables hold `torch.nn.Parameter`s; the model runs eagerly on them.
H v is double back-propagation by default, as PyHessian computes it: the gradient
with `create_graph=True`, then the vector-Jacobian product of the gradient with v
(H is symmetric, so vᵀH = (Hv)ᵀ). It was measured faster than forward-over-reverse
(`torch.func.jvp` of `torch.func.grad` of the loss as a pure function of the
trainable values, in a Keras `StatelessScope` mapping the variables to them, as on
JAX), which stays available (`method=FORWARD_OVER_REVERSE`) and falls back to double
back-propagation where an op does not support `torch.func`
(`benchmarks/diagnostics.py`, part 4). Every forward pass runs in a `StatelessScope`,
so the model's variables are never written. Nothing is compiled (`jit_compile=True`
is refused before: torch has no XLA).
"""

from __future__ import annotations

import keras
import numpy as np
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from keras_optnotes.diagnostics._backend.common import BatchFunctionsBase

FORWARD_OVER_REVERSE = "forward-over-reverse (torch.func.jvp of torch.func.grad)"
DOUBLE_BACKWARD = "double back-propagation (torch.autograd.grad, create_graph=True)"


def _to_numpy(tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy().astype(np.float64)


class BatchFunctions(BatchFunctionsBase):
    """See `keras_optnotes.diagnostics._backend.batch_functions`."""

    def __init__(self, model, loss_function, training, jit_compile, method=None):
        super().__init__(model, loss_function, training)
        self.hvp_method = method or DOUBLE_BACKWARD

    def _parameters(self):
        return [v.value for v in self.variables]

    def _batch_loss(self, x, y, sample_weight, mapping=()):
        with self.state_scope(mapping):
            y_pred = self.model(x, training=self.training)
            value = self.loss_function(x, y, sample_weight, y_pred, self.training)
        return torch.as_tensor(value).to(getattr(torch, self.dtype))

    def _gradients(self, outputs, parameters, **kwargs):
        gradients = torch.autograd.grad(
            outputs, parameters, allow_unused=True, **kwargs
        )
        return [
            torch.zeros_like(p) if g is None else g
            for g, p in zip(gradients, parameters)
        ]

    def _join(self, tensors):
        dtype = getattr(torch, self.dtype)
        return torch.cat([t.reshape(-1).to(dtype) for t in tensors])

    def vector(self, vector: np.ndarray):
        parameter = self.variables[0].value
        return torch.as_tensor(vector, dtype=parameter.dtype, device=parameter.device)

    def loss(self, x, y, sample_weight):
        with torch.no_grad():
            return np.float64(_to_numpy(self._batch_loss(x, y, sample_weight)))

    def loss_and_gradient(self, x, y, sample_weight):
        parameters = self._parameters()
        with torch.enable_grad():
            loss = self._batch_loss(x, y, sample_weight)
            gradients = self._gradients(loss, parameters)
        return np.float64(_to_numpy(loss)), _to_numpy(self._join(gradients))

    def hvp(self, x, y, sample_weight, vector, graph=None):
        parameters = self._parameters()
        pieces = torch.split(vector, self.sizes)
        tangents = [
            p.reshape(s).to(q.dtype) for p, s, q in zip(pieces, self.shapes, parameters)
        ]
        # Scaled-dot-product attention's fused CPU/GPU kernels (flash, memory
        # efficient) have no second derivative: the product runs through the plain
        # ("math") kernel; the user's own calls of the model are left as they are.
        with sdpa_kernel(SDPBackend.MATH):
            if self.hvp_method == FORWARD_OVER_REVERSE:
                try:
                    return self._hvp_forward(x, y, sample_weight, parameters, tangents)
                except (RuntimeError, NotImplementedError, TypeError, ValueError):
                    # An op without torch.func support: double back-propagation.
                    self.hvp_method = DOUBLE_BACKWARD
            return self._hvp_double_backward(
                x, y, sample_weight, parameters, tangents, graph
            )

    def _hvp_forward(self, x, y, sample_weight, parameters, tangents):
        def loss(values):
            return self._batch_loss(
                x, y, sample_weight, mapping=zip(self.variables, values)
            )

        primals = [p.detach() for p in parameters]
        _, products = torch.func.jvp(torch.func.grad(loss), (primals,), (tangents,))
        return _to_numpy(self._join(products))

    def _hvp_double_backward(self, x, y, sample_weight, parameters, tangents, graph):
        with torch.enable_grad():
            gradients = self._gradient_graph(x, y, sample_weight, parameters, graph)
            connected = [(g, t) for g, t in zip(gradients, tangents) if g.requires_grad]
            if connected:
                outputs, cotangents = zip(*connected)
                products = self._gradients(
                    list(outputs),
                    parameters,
                    grad_outputs=list(cotangents),
                    retain_graph=graph is not None,
                )
            else:  # the loss is linear in every weight: H = 0
                products = [torch.zeros_like(p) for p in parameters]
        return _to_numpy(self._join(products))

    def _gradient_graph(self, x, y, sample_weight, parameters, graph):
        """∇f with its graph (`create_graph=True`). With a `graph` dict, the one
        built for this batch at these weights is reused, as PyHessian reuses its
        gradient for every product on one batch: a product then costs one
        back-propagation through the gradient's graph. The key holds the batch's
        tensors and every variable's tensor and in-place version (`assign` bumps
        it), so new weights, new moving statistics or another batch build anew."""
        if graph is None:
            return self._gradients(
                self._batch_loss(x, y, sample_weight), parameters, create_graph=True
            )
        state = [v.value for v in self.model.variables]
        batch = [
            t
            for t in keras.tree.flatten((x, y, sample_weight))
            if isinstance(t, torch.Tensor)
        ]
        key = [(t, t._version) for t in (*batch, *state)]
        kept = graph.get("key")
        if (
            kept is None
            or len(kept) != len(key)
            or any(a is not b or u != w for (a, u), (b, w) in zip(kept, key))
        ):
            graph.clear()  # drop the old graph before the new one is built
            graph["gradients"] = self._gradients(
                self._batch_loss(x, y, sample_weight), parameters, create_graph=True
            )
            graph["key"] = key
        return graph["gradients"]
