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


def train_step(sam, data):
    return sam_module.stateful_train_step(
        sam, data, value_and_grad, tracked_loss=unscale_loss_for_distribution
    )
