"""Run by test_sam.py in its own process (logical devices must be set before
TensorFlow starts): one SAM step under MirroredStrategy on 2 logical CPUs, float64
linear regression, a global batch of 16. Prints one JSON line with the initial and
the trained weights."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu,
    [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()],
)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_optnotes.training import SharpnessAwareMinimization  # noqa: E402

keras.config.set_floatx("float64")
# The same data as test_sam.py's `data` fixture (first 16 rows).
rng = np.random.default_rng(0)
x = rng.normal(size=(32, 3)).astype("float32").astype("float64")[:16]
y = rng.normal(size=(32, 1)).astype("float32").astype("float64")[:16]

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.EinsumDense(
                "ab,bc->ac",
                output_shape=1,
                bias_axes="c",
                bias_initializer=keras.initializers.RandomNormal(seed=0),
            ),
        ]
    )
    initial = model.get_weights()
    sam = SharpnessAwareMinimization(model, rho=0.5)
    sam.compile(optimizer=keras.optimizers.SGD(0.25), loss="mse")
sam.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
print(
    json.dumps(
        {
            "replicas": strategy.num_replicas_in_sync,
            "initial": [w.tolist() for w in initial],
            "trained": [w.tolist() for w in model.get_weights()],
        }
    )
)
