"""SAM's train step on the JAX backend: stateless, gradients by `jax.value_and_grad`."""

import jax
import keras

from keras_optnotes.training import sharpness_aware_minimization as sam_module


def value_and_grad(function, values):
    return jax.value_and_grad(function, has_aux=True)(values)


def train_step(sam, state, data):
    trainable, non_trainable, optimizer_values, metrics = state
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    optimizer = sam.optimizer
    mapping = list(zip(optimizer.variables, optimizer_values))
    with keras.StatelessScope(state_mapping=mapping):
        loss_scale = optimizer.scale_loss(keras.ops.ones((), "float32"))
        iterations = optimizer.iterations.value
    result = sam_module.train_step_gradients(
        sam,
        value_and_grad,
        (trainable, non_trainable, metrics),
        (x, y, sample_weight),
        loss_scale,
        iterations,
    )
    trainable, optimizer_values = optimizer.stateless_apply(
        optimizer_values, result.gradients, trainable
    )
    logs, metrics = sam._update_metrics_variables(
        result.metrics_values, result.loss, x, y, result.y_pred, sample_weight
    )
    return logs, (trainable, result.non_trainable_values, optimizer_values, metrics)
