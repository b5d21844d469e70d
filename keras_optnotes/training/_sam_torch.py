"""SAM's train step on the PyTorch backend: gradients by `torch.autograd.grad`."""

import torch

from keras_optnotes.training import sharpness_aware_minimization as sam_module


def value_and_grad(function, values):
    leaves = [v.detach().requires_grad_(True) for v in values]
    value, aux = function(leaves)
    gradients = torch.autograd.grad(value, leaves, allow_unused=True)
    return (value, aux), list(gradients)


def train_step(sam, data):
    return sam_module.stateful_train_step(
        sam, data, value_and_grad, update_context=torch.no_grad
    )
