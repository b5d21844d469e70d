"""Launched by tests/test_sam_efficient.py on JAX: SAM (every step, interval with
LookSAM, interval with m-sharpness) trained for 3 epochs of 2 batches in float64, once on
one device and once under `keras.distribution.DataParallel` on 2 host devices (the
device count must be set before JAX starts). Prints one JSON line: per set-up, the
largest difference between the two runs' weights and whether any weight moved.
"""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["JAX_ENABLE_X64"] = "1"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_optnotes.training import SharpnessAwareMinimization  # noqa: E402

SETUPS = {
    "sam": {},
    "looksam": {"interval": 2, "looksam_alpha": 0.5},
    "interval_splits": {"interval": 3, "num_batch_splits": 2},
}

keras.config.set_floatx("float64")
rng = np.random.default_rng(0)
x, y = rng.normal(size=(32, 3)), rng.normal(size=(32, 1))


def train(distribution, options):
    keras.distribution.set_distribution(distribution)
    try:
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((3,)), keras.layers.Dense(4, "tanh"), keras.layers.Dense(1)]
        )
        initial = model.get_weights()
        sam = SharpnessAwareMinimization(model, rho=0.5, **options)
        sam.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
        sam.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        return initial, sam.get_weights()
    finally:
        keras.distribution.set_distribution(None)


result = {"devices": len(jax.devices())}
for name, options in SETUPS.items():
    initial, single = train(None, options)
    _, parallel = train(keras.distribution.DataParallel(devices=jax.devices()), options)
    result[name] = {
        "difference": max(
            float(np.max(np.abs(a - b))) for a, b in zip(single, parallel)
        ),
        "moved": min(float(np.max(np.abs(a - b))) for a, b in zip(single, initial)),
    }
print(json.dumps(result))
