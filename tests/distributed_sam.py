"""Run by test_sam.py in its own process (logical devices must be set before
TensorFlow starts): one SAM step under MirroredStrategy on 2 logical CPUs, float64
linear regression, a global batch of 16. Prints one JSON line with the initial and
the trained weights.

    python distributed_sam.py            # one SAM step on rows 0-15
    python distributed_sam.py looksam    # interval=2, looksam_alpha=0.5: the SAM
                                         # step on rows 0-15, LookSAM's on 16-31
"""

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

from keras_optnotes.training import SharpnessAwareMinimization  # noqa: E402

keras.config.set_floatx("float64")
# The same data as test_sam.py's `data` fixture (its first 16 or 32 rows).
rng = np.random.default_rng(0)
looksam = sys.argv[1:] == ["looksam"]
rows = 32 if looksam else 16
x = rng.normal(size=(32, 3)).astype("float32").astype("float64")[:rows]
y = rng.normal(size=(32, 1)).astype("float32").astype("float64")[:rows]

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
    options = {"interval": 2, "looksam_alpha": 0.5} if looksam else {}
    sam = SharpnessAwareMinimization(model, rho=0.5, **options)
    sam.compile(optimizer=keras.optimizers.SGD(0.25), loss="mse")
sam.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
print(
    json.dumps(
        {
            "replicas": strategy.num_replicas_in_sync,
            "initial": [w.tolist() for w in initial],
            "trained": [w.tolist() for w in model.get_weights()],
            "directions": [
                keras.ops.convert_to_numpy(v).tolist() for v in sam._looksam_directions
            ],
        }
    )
)
