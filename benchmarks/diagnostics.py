"""Timing of the diagnostics (a script, not a test).

1. The cost of one Hessian-vector product relative to one gradient on the same batch,
   with the method the backend uses (on TensorFlow: forward-over-reverse and double
   back-propagation, with and without XLA).
2. λ_max of a ~100k-parameter CNN: wall time, with compilation and without.
3. The overhead of `GradientNoiseScale(every_n_steps=10)` on `model.fit`
   (target: at most 10 %).
4. One Hessian-vector product of the package (each method the backend has, and the
   default) against a plain double back-propagation written here on the same Keras
   model, weights, batch and vector: on PyTorch PyHessian's
   (`torch.autograd.grad(..., create_graph=True)`, then the gradient of the
   gradient with `grad_outputs=v`; target ≤ 1.0×), on TensorFlow two nested
   `GradientTape`s in a `tf.function`, on JAX `jax.grad` of ⟨∇f, v⟩, jitted. The
   timings alternate between the variants, repeat after repeat, so that a change
   of load on a shared machine hits all of them alike; medians. `--threads 1` as
   in the issue's measurement; `--clock cpu` times the process' CPU time.

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
# Part 4's clock: wall time, or with `--clock cpu` the CPU time of this process,
# which other jobs on a shared machine disturb far less (with one thread, `--threads
# 1`, it is the work done).
CLOCK = time.perf_counter


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


def _mean_loss(y, y_pred):
    return keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, y_pred))


def _double_backward_reference(model, x, y, vectors):
    """A plain double back-propagation H v on this backend, outside the package."""
    if BACKEND == "torch":
        import torch

        parameters = [v.value for v in model.trainable_variables]

        def pyhessian():  # PyHessian's hessian_vector_product, on the Keras model
            loss = _mean_loss(y, model(x, training=False))
            gradients = torch.autograd.grad(loss, parameters, create_graph=True)
            return torch.autograd.grad(
                gradients, parameters, grad_outputs=vectors, retain_graph=False
            )

        return pyhessian
    if BACKEND == "tensorflow":
        import tensorflow as tf

        watched = [v.value for v in model.trainable_variables]

        @tf.function
        def nested_tapes():
            with tf.GradientTape() as outer:
                with tf.GradientTape() as inner:
                    loss = _mean_loss(y, model(x, training=False))
                gradients = inner.gradient(loss, watched)
                product = tf.add_n(
                    [tf.reduce_sum(g * v) for g, v in zip(gradients, vectors)]
                )
            return outer.gradient(product, watched)

        return lambda: [t.numpy() for t in nested_tapes()]
    import jax

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]

    def loss(values):
        y_pred, _ = model.stateless_call(values, non_trainable, x, training=False)
        return _mean_loss(y, y_pred)

    def inner_product(values):
        gradients = jax.grad(loss)(values)
        return sum(jax.numpy.vdot(g, v) for g, v in zip(gradients, vectors))

    reverse_over_reverse = jax.jit(jax.grad(inner_product))
    return lambda: jax.block_until_ready(reverse_over_reverse(trainable))


def _kept_gradient_reference(model, x, y, vectors):
    """PyHessian's one-batch mode (PyTorch; `None` elsewhere): ∇f with its graph
    computed once, then each product one back-propagation through it."""
    if BACKEND != "torch":
        return None
    import torch

    parameters = [v.value for v in model.trainable_variables]
    loss = _mean_loss(y, model(x, training=False))
    gradients = torch.autograd.grad(loss, parameters, create_graph=True)
    return lambda: torch.autograd.grad(
        gradients, parameters, grad_outputs=vectors, retain_graph=True
    )


REFERENCE = "double back-propagation written here, each product anew (reference)"
KEPT = "PyHessian's one-batch mode: ∇f's graph kept, one back-propagation a product"


def hvp_against_double_backward(batch: int, repeats: int) -> None:
    x, y = data(batch)
    model = cnn()
    operator = HessianOperator(model, (x, y), batch_size=batch)
    tx, ty = operator.batches.first[:2]
    vector = np.random.default_rng(0).normal(size=operator.size)
    pieces = [
        keras.ops.convert_to_tensor(p.astype(v.dtype))
        for p, v in zip(operator.unflatten(vector), model.trainable_variables)
    ]
    reference = _double_backward_reference(model, tx, ty, pieces)
    expected = np.concatenate(
        [np.ravel(keras.ops.convert_to_numpy(t)) for t in reference()]
    )
    # The operator on one batch: on PyTorch it keeps ∇f's graph between products.
    variants = {
        "package default, HessianOperator.matvec": lambda: operator.matvec(vector)
    }
    for label, functions in _methods(model):
        tensor = functions.vector(vector)
        variants[f"{label}, each product anew"] = lambda f=functions, t=tensor: f.hvp(
            tx, ty, None, t
        )
    variants[REFERENCE] = reference
    kept = _kept_gradient_reference(model, tx, ty, pieces)
    if kept is not None:
        variants[KEPT] = kept
    times = {label: [] for label in variants}
    for label, function in variants.items():
        result = function()  # trace / compile / warm up
        if label != REFERENCE:
            if not isinstance(result, np.ndarray):
                result = np.concatenate(
                    [np.ravel(keras.ops.convert_to_numpy(t)) for t in result]
                )
            error = np.linalg.norm(result - expected) / np.linalg.norm(expected)
            print(f"  {label}: relative difference from the reference {error:.1e}")
    order = list(variants)
    for repeat in range(repeats):
        # The order turns each repeat, so that no variant always runs first.
        for label in order[repeat % len(order) :] + order[: repeat % len(order)]:
            start = CLOCK()
            variants[label]()
            times[label].append(CLOCK() - start)
    medians = {label: statistics.median(values) for label, values in times.items()}
    print(f"  default method: {operator.hvp_method}")
    for label, median in medians.items():
        print(
            f"  {label}: {1e3 * median:8.1f} ms   "
            f"{median / medians[REFERENCE]:5.3f}x the reference"
            f"   (batch {batch}, {operator.size:,} weights, median of {repeats})"
        )
    if kept is not None:
        ratio = medians["package default, HessianOperator.matvec"] / medians[KEPT]
        print(f"  package default / PyHessian's one-batch mode: {ratio:5.3f}x")


def _methods(model):
    """(label, batch functions) for each H v method of this backend, no XLA."""
    loss = loss_function(model, None)
    if BACKEND == "jax":
        from keras_optnotes.diagnostics._backend import jax as backend

        return [
            (
                backend.FORWARD_OVER_REVERSE,
                backend.BatchFunctions(model, loss, False, None),
            )
        ]
    if BACKEND == "tensorflow":
        from keras_optnotes.diagnostics._backend import tensorflow as backend
    else:
        from keras_optnotes.diagnostics._backend import torch as backend
    return [
        (method, backend.BatchFunctions(model, loss, False, False, method))
        for method in (backend.FORWARD_OVER_REVERSE, backend.DOUBLE_BACKWARD)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    parser.add_argument(
        "--only", type=int, choices=(1, 2, 3, 4), help="run one of the four parts"
    )
    parser.add_argument(
        "--threads", type=int, help="intra-op threads (PyTorch, TensorFlow)"
    )
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[64, 512], help="batch sizes of part 4"
    )
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="part 4's clock"
    )
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads and BACKEND == "torch":
        import torch

        torch.set_num_threads(args.threads)
    elif args.threads and BACKEND == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
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
    if args.only in (None, 4):
        print("4. Hessian-vector product against a plain double back-propagation:")
        for batch in args.batch:
            hvp_against_double_backward(batch, 5 if args.quick else 15)


if __name__ == "__main__":
    main()
