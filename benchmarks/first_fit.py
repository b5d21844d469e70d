"""The first `fit` of a fresh model on TensorFlow: the optimizer's state created eagerly.

Without a `tf.distribute` strategy, Keras' `fit` builds the optimizer inside the first
trace of its train function. A `tf.Variable` created there gets its initializer wrapped
in a `tf.cond`; the notes' rules and Lookahead create their state in the eager context
instead (`tf.init_scope`), as Keras creates a layer's deferred variables.

Measured: the CPU time of the first `model.fit` (one epoch of two batches) of a fresh
six-layer MLP, for Keras' `Adam`, the package's `Adam`, and the package's `Adam` with
its state created inside the trace (the behaviour before), median of `--rounds`
rounds, the three in turn within each round. Run:

    python benchmarks/first_fit.py [--rounds 9]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_optnotes import optimizers  # noqa: E402
from keras_optnotes.optimizers import base  # noqa: E402

LAYERS, WIDTH, FEATURES, CLASSES, BATCH = 6, 32, 64, 10, 32


def first_fit_seconds(make_optimizer, inside_trace: bool) -> float:
    """CPU seconds of the first `fit` of a fresh model with `make_optimizer()`."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * BATCH, FEATURES)).astype("float32")
    y = rng.integers(0, CLASSES, size=2 * BATCH)
    model = keras.Sequential(
        [keras.Input((FEATURES,))]
        + [keras.layers.Dense(WIDTH, activation="relu") for _ in range(LAYERS - 1)]
        + [keras.layers.Dense(CLASSES)]
    )
    model.compile(
        optimizer=make_optimizer(),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    scope = base._state_creation_scope
    if inside_trace:  # the behaviour before: no lifting to the eager context
        base._state_creation_scope = contextlib.nullcontext
    try:
        start = time.process_time()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
        return time.process_time() - start
    finally:
        base._state_creation_scope = scope


CASES = {
    "keras.optimizers.Adam": (lambda: keras.optimizers.Adam(1e-3), False),
    "keras_optnotes Adam, state created in the trace (before)": (
        lambda: optimizers.Adam(1e-3, jit_compile=False),
        True,
    ),
    "keras_optnotes Adam, state created eagerly (now)": (
        lambda: optimizers.Adam(1e-3, jit_compile=False),
        False,
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("first_fit.py measures the TensorFlow backend only")
    for make, inside in CASES.values():  # warm-up: imports, first traces
        first_fit_seconds(make, inside)
    times = {name: [] for name in CASES}
    for _ in range(args.rounds):
        for name, (make, inside) in CASES.items():
            times[name].append(first_fit_seconds(make, inside))
    variables = 2 * LAYERS * 2  # Adam's m and v of each kernel and bias
    print(
        f"First fit of a fresh {LAYERS}-layer MLP ({variables} Adam slots), "
        f"median CPU seconds of {args.rounds} rounds:\n"
    )
    print("| optimizer | first fit (s of CPU) |")
    print("|---|---:|")
    for name, values in times.items():
        print(f"| {name} | {statistics.median(values):.3f} |")


if __name__ == "__main__":
    main()
