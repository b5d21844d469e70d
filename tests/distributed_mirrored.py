"""Run by test_mirrored_strategy.py in its own process (logical devices must be set
before TensorFlow starts): every rule fitted under MirroredStrategy on 2 logical CPUs and
on one device with the same global batch. Prints one JSON line."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu,
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_optnotes import optimizers  # noqa: E402

rng = np.random.default_rng(0)
x = rng.normal(size=(64, 4)).astype("float32")
y = (np.tanh(x @ np.array([1.0, -2.0, 0.5, 0.0])) + 0.3).astype("float32")[:, None]
LEARNING_RATES = {
    "Adadelta": 1.0,
    "GradientDescent": 0.1,
    "Momentum": 0.05,
    "NesterovMomentum": 0.05,
}


def fit(rule, strategy):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((4,)), keras.layers.Dense(8, "tanh"), keras.layers.Dense(1)]
        )
        optimizer = optimizers.get(rule, learning_rate=LEARNING_RATES.get(rule, 0.01))
        # jit_compile=False: the train step is a plain tf.function, where the
        # optimizer fuses its own update on one device.
        model.compile(optimizer=optimizer, loss="mse", jit_compile=False)
    fused_in_scope = optimizer.uses_fused_apply
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return model.get_weights(), fused_in_scope, len(optimizer._fused.functions)


results = {}
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
for rule in sys.argv[1:] or optimizers.list_rules():
    many, fused_many, compiled_many = fit(rule, mirrored)
    one, fused_one, compiled_one = fit(rule, tf.distribute.get_strategy())
    results[rule] = {
        "replicas": mirrored.num_replicas_in_sync,
        "max_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(many, one)),
        "max_change": max(float(np.max(np.abs(a))) for a in one),
        "fused_under_mirrored": fused_many,
        "fused_functions_under_mirrored": compiled_many,
        "fused_on_one_device": fused_one,
        "fused_functions_on_one_device": compiled_one,
    }
print(json.dumps(results))
