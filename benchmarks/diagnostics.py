"""Timing of the diagnostics (a script, not a test).

1. The cost of one Hessian-vector product relative to one gradient on the same batch,
   with the method the backend uses (on TensorFlow: forward-over-reverse and double
   back-propagation, with and without XLA).
2. λ_max of a ~100k-parameter CNN: wall time, with compilation and without.
3. The overhead of `GradientNoiseScale(every_n_steps=10)` on `model.fit`
   (target: at most 10 %).

Run: `KERAS_BACKEND=tensorflow|jax|torch python benchmarks/diagnostics.py` (the backend
is read from KERAS_BACKEND; `--quick` for smaller sizes). The data are random images
(no network); only the timing matters.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_optnotes.callbacks import GradientNoiseScale  # noqa: E402
from keras_optnotes.diagnostics import HessianOperator, power_iteration  # noqa: E402
from keras_optnotes.diagnostics.operators import (  # noqa: E402
    loss_function,
    traced_functions,
)

BACKEND = keras.backend.backend()


def cnn(seed: int = 0) -> keras.Model:
    """Conv(32) → Conv(64) → pool → Conv(128) → global pool → Dense(10): 94,154 weights."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.Conv2D(64, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Conv2D(128, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
    )
    return model


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, size=n)
    return x, y


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _variants(model):
    """(label, batch functions) for each way this backend can compute H v."""
    if BACKEND != "tensorflow":
        functions, _ = traced_functions(model, None, False, None)
        return [("", functions)]
    from keras_optnotes.diagnostics._backend import tensorflow as tf_backend

    loss = loss_function(model, None)
    return [
        (
            f"XLA={jit!s:5} ",
            tf_backend.BatchFunctions(model, loss, False, jit, method),
        )
        for jit in (False, True)
        for method in (tf_backend.FORWARD_OVER_REVERSE, tf_backend.DOUBLE_BACKWARD)
    ]


def hvp_over_gradient(batch: int, repeats: int) -> None:
    x, y = data(batch)
    model = cnn()
    operator = HessianOperator(model, (x, y), batch_size=batch)
    tx, ty = operator.batches.first[:2]
    for label, functions in _variants(model):
        vector = functions.vector(np.ones(operator.size))
        functions.loss_and_gradient(tx, ty, None)  # trace / compile
        functions.hvp(tx, ty, None, vector)

        def gradient(functions=functions):
            functions.loss_and_gradient(tx, ty, None)

        def product(functions=functions, vector=vector):
            functions.hvp(tx, ty, None, vector)

        g, h = median_time(gradient, repeats), median_time(product, repeats)
        print(
            f"  {label}{functions.hvp_method}: gradient {1e3 * g:7.1f} ms   HVP "
            f"{1e3 * h:7.1f} ms   ratio {h / g:4.2f}x   (batch {batch}, "
            f"{operator.size:,} weights, median of {repeats})"
        )


def top_eigenvalue(samples: int) -> None:
    x, y = data(samples)
    for jit in (True, False) if BACKEND == "tensorflow" else (None,):
        model = cnn()
        start = time.perf_counter()
        operator = HessianOperator(model, (x, y), batch_size=256, jit_compile=jit)
        operator.matvec(np.ones(operator.size))  # traces and compiles
        compiled = time.perf_counter()
        result = power_iteration(operator.matvec, operator.size, tolerance=1e-3)
        end = time.perf_counter()
        print(
            f"  XLA={operator.uses_xla!s:5}  λ_max = {result.top:.4g} "
            f"({result.iterations[0]} iterations, converged={result.converged}) over "
            f"{samples} samples, {operator.size:,} weights: {end - compiled:.1f} s "
            f"(+ {compiled - start:.1f} s tracing/compiling), "
            f"{1e3 * (end - compiled) / result.iterations[0]:.0f} ms per iteration"
        )


def noise_scale_overhead(samples: int, epochs: int) -> None:
    x, y = data(samples)
    timings = {}
    for with_callback in (False, True) * 3:
        model = cnn()
        callbacks = (
            [GradientNoiseScale((x, y), small_batch_size=16, big_batch_size=128)]
            if with_callback
            else []
        )
        # Compile outside the timing.
        model.fit(x[:256], y[:256], batch_size=128, verbose=0, callbacks=callbacks)
        start = time.perf_counter()
        history = model.fit(
            x, y, batch_size=128, epochs=epochs, verbose=0, callbacks=callbacks
        )
        timings.setdefault(with_callback, []).append(time.perf_counter() - start)
        if with_callback:
            noise = history.history["gradient_noise_scale"][-1]
    plain, measured = min(timings[False]), min(timings[True])
    print(
        f"  fit {epochs} epochs x {samples // 128} steps (batch 128): plain "
        f"{plain:.1f} s, with GradientNoiseScale(16, 128, every_n_steps=10) "
        f"{measured:.1f} s: overhead {100 * (measured / plain - 1):+.1f} %  "
        f"(B_simple = {noise:.3g})"
    )
    # The same from medians of the two pieces, less exposed to a busy machine:
    # one measurement against ten training steps.
    model = cnn()
    callback = GradientNoiseScale((x, y), small_batch_size=16, big_batch_size=128)
    callback.set_model(model)
    model.train_on_batch(x[:128], y[:128])
    callback.measure()
    step = median_time(lambda: model.train_on_batch(x[:128], y[:128]), 30)
    measurement = median_time(callback.measure, 15)
    print(
        f"  median train step {1e3 * step:.0f} ms, median measurement "
        f"{1e3 * measurement:.0f} ms: overhead at every_n_steps=10 "
        f"{100 * measurement / (10 * step):.1f} %"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument(
        "--only", type=int, choices=(1, 2, 3), help="run one of the three parts"
    )
    args = parser.parse_args()
    print(f"Keras {keras.__version__}, backend {BACKEND}, {os.cpu_count()} CPU cores")
    if args.only in (None, 1):
        print("1. Hessian-vector product / gradient, same batch:")
        hvp_over_gradient(64 if args.quick else 256, 5 if args.quick else 20)
    if args.only in (None, 2):
        print("2. λ_max by power iteration:")
        top_eigenvalue(256 if args.quick else 2048)
    if args.only in (None, 3):
        print("3. GradientNoiseScale overhead in fit:")
        noise_scale_overhead(1280 if args.quick else 5120, 1 if args.quick else 2)


if __name__ == "__main__":
    main()
