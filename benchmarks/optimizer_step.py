"""Time one `apply()` of keras_optnotes' Adam against `keras.optimizers.Adam`.

The variables are those of 60 dense layers of 256×256 with biases: about 4M parameters
in 120 variables. Three modes:

- eager: `optimizer.apply(grads, variables)` called from Python;
- tf.function: `apply` inside a plain (not XLA-compiled) `tf.function`;
- XLA: `apply` inside `tf.function(jit_compile=True)`.

Each mode is timed over several repetitions of a batch of calls after a warm-up (which
includes compiling), and the median time per `apply()` is printed with the ratio
keras/ours (above 1 means this package is faster).

    python benchmarks/optimizer_step.py [--repeats 7] [--calls 20] [--layers 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_optnotes import optimizers  # noqa: E402


def make_variables(layers: int, width: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    variables = []
    for _ in range(layers):
        variables.append(
            keras.Variable(rng.normal(size=(width, width)).astype("float32"))
        )
        variables.append(keras.Variable(np.zeros(width, "float32")))
    grads = [
        tf.constant(rng.normal(size=v.shape).astype("float32") * 1e-3)
        for v in variables
    ]
    return variables, grads


def time_mode(
    make_optimizer, mode: str, layers: int, width: int, repeats: int, calls: int
):
    variables, grads = make_variables(layers, width)
    optimizer = make_optimizer()
    optimizer.build(variables)

    def step():
        optimizer.apply(grads, variables)

    if mode == "tf.function":
        step = tf.function(step)
    elif mode == "XLA":
        step = tf.function(step, jit_compile=True)
    for _ in range(3):  # warm-up, compiling included
        step()
    _ = variables[0].numpy()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        _ = variables[-1].numpy()  # wait for the last update
        samples.append((time.perf_counter() - start) / calls)
    return statistics.median(samples)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--layers", type=int, default=60)
    parser.add_argument("--width", type=int, default=256)
    args = parser.parse_args(argv)

    params = args.layers * (args.width * args.width + args.width)
    print(
        f"Adam.apply() on {params / 1e6:.2f}M parameters in {2 * args.layers} variables; "
        f"median of {args.repeats} × {args.calls} calls; "
        f"TF {tf.__version__}, Keras {keras.__version__}, {os.cpu_count()} CPU cores\n"
    )
    print(
        "| mode | keras.optimizers.Adam (ms) | keras_optnotes Adam (ms) | keras / ours |"
    )
    print("|---|---:|---:|---:|")
    for mode in ("eager", "tf.function", "XLA"):
        theirs = time_mode(
            keras.optimizers.Adam,
            mode,
            args.layers,
            args.width,
            args.repeats,
            args.calls,
        )
        ours = time_mode(
            optimizers.Adam, mode, args.layers, args.width, args.repeats, args.calls
        )
        print(
            f"| {mode} | {theirs * 1e3:.2f} | {ours * 1e3:.2f} | {theirs / ours:.2f}× |",
            flush=True,
        )


if __name__ == "__main__":
    main()
