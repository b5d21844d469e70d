"""The backend-specific part of the diagnostics, one small module per Keras backend.

`batch_functions` returns the loss, gradient and Hessian-vector product of one batch
as functions of the model's current trainable weights (see `common.BatchFunctionsBase`).
Everything else in `keras_optnotes.diagnostics` is written once, in NumPy and
`keras.ops`.

How each backend computes H v:

- TensorFlow: forward-over-reverse, `tf.autodiff.ForwardAccumulator` over the
  `GradientTape` of the gradient, in a `tf.function` (double back-propagation where
  an op has no forward-mode rule).
- JAX: forward-over-reverse, `jax.jvp` of `jax.grad` of the loss as a pure function of
  the trainable and non-trainable values (Keras' `StatelessScope`, as
  `model.stateless_call`), jitted.
- PyTorch: double back-propagation (`torch.autograd.grad(create_graph=True)`, then
  the gradient of ⟨∇f, v⟩), eager, as PyHessian does: measured faster than
  forward-over-reverse (`torch.func.jvp` of `torch.func.grad`, kept as an option)
  in `benchmarks/diagnostics.py`. Scaled-dot-product attention runs on its math
  kernel during the product (the fused kernels have no second derivative).

Every forward pass of the diagnostics runs in a Keras `StatelessScope`: what the
model assigns in it (batch normalization's moving statistics and the dropout seed in
training mode, the loss trackers) is dropped, never written to the model.
"""

from __future__ import annotations

import importlib

import keras

BACKENDS = ("tensorflow", "jax", "torch")


def check_backend(what: str = "the diagnostics") -> str:
    """The current backend's name; `ValueError` naming it unless it can differentiate."""
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise ValueError(
            f"{what} need automatic differentiation, which the {backend!r} Keras "
            f"backend does not have; use one of {BACKENDS} (KERAS_BACKEND)."
        )
    return backend


def check_jit_compile(jit_compile) -> bool | None:
    """`jit_compile` checked: `None`, `True` or `False`; `True` needs XLA (not torch)."""
    if jit_compile is not None and not isinstance(jit_compile, bool):
        raise ValueError(
            "Argument `jit_compile` must be None, True or False. "
            f"Received: jit_compile={jit_compile!r}"
        )
    if jit_compile is True and keras.backend.backend() == "torch":
        raise ValueError(
            "Argument `jit_compile=True` asks for XLA, which the torch backend does "
            "not have; pass None or False. Received: jit_compile=True"
        )
    return jit_compile


def batch_functions(model, loss_function, training, jit_compile):
    """The `BatchFunctions` of the current backend for this model and loss."""
    backend = check_backend()
    module = importlib.import_module(f"keras_optnotes.diagnostics._backend.{backend}")
    return module.BatchFunctions(model, loss_function, training, jit_compile)
