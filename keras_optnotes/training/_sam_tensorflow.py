"""SAM's train step on the TensorFlow backend: gradients by `tf.GradientTape`.

Under `tf.distribute` the step runs per replica: the first-pass gradient stays local
(each replica perturbs with its own shard's gradient); the optimizer all-reduces the
perturbed gradients in `apply`, as in Keras' own train step.
"""

import tensorflow as tf
from keras.src.losses.loss import unscale_loss_for_distribution

from keras_optnotes.training import sharpness_aware_minimization as sam_module


def value_and_grad(function, values):
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(values)
        value, aux = function(values)
    return (value, aux), tape.gradient(value, values)


def train_step(sam, data, kind=None):
    return sam_module.stateful_train_step(
        sam,
        data,
        value_and_grad,
        tracked_loss=unscale_loss_for_distribution,
        kind=kind,
    )


def make_train_function(sam):
    """With `interval` > 1 and one step per call, Keras' train function traced once
    per kind of step, the kind chosen on the host from the optimizer's `iterations`:
    a `tf.cond` of both kinds in one XLA function made the steps between SAM steps
    dearer than a plain step. None (Keras' own, with the `tf.cond`) otherwise."""
    if sam.interval == 1 or sam.steps_per_execution > 1:
        return None
    sharpness = sam._make_function(lambda data: train_step(sam, data, kind=True))
    between = sam._make_function(lambda data: train_step(sam, data, kind=False))
    iterations = sam.optimizer.iterations

    def train_function(iterator):
        if int(iterations.numpy()) % sam.interval:
            return between(iterator)
        return sharpness(iterator)

    return train_function
