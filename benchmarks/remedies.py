"""Time LARS and Lookahead against Momentum: one `apply()`, and one step of `model.fit`.

- apply (TensorFlow only): `optimizer.apply(grads, variables)` called eagerly on the
  variables of `--layers` dense layers of `--width`² with biases (the XLA-fused path of
  this package's rules; Lookahead's synchronization runs as a `tf.cond` after it);
- fit: the time per batch of `model.fit` on an MLP 784-512-512-10 (0.67M parameters)
  with random data, on whichever backend `KERAS_BACKEND` selects.

Lookahead wraps a `Momentum` with the same settings, k = 5, α = 0.5. Each optimizer is
timed over several repetitions after a warm-up (compiling included); the median time
per step and the ratio to Momentum's are printed as Markdown tables. The optimizers are
timed in turn within each repetition, and the ratio is the median of the ratios within
the repeats, so that a slow spell of a shared machine hits all of one ratio alike.

`--clock cpu` times the CPU seconds of the process (all its threads) instead of the
wall clock: on a machine shared with other jobs that measures the work of a step, not
how long it waited for a core.

    python benchmarks/remedies.py [--repeats 7] [--calls 20] [--layers 20] [--steps 40]
                                  [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_optnotes import optimizers  # noqa: E402

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter

OPTIMIZERS = {
    "Momentum": lambda: optimizers.Momentum(0.01, momentum=0.9),
    "LARS": lambda: optimizers.LARS(0.1, momentum=0.9, weight_decay=1e-4),
    "Lookahead(Momentum)": lambda: optimizers.Lookahead(
        optimizers.Momentum(0.01, momentum=0.9), sync_period=5, slow_step_size=0.5
    ),
}


def _apply_timer(make_optimizer, layers: int, width: int, calls: int):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    variables, grads = [], []
    for _ in range(layers):
        for shape in ((width, width), (width,)):
            variables.append(keras.Variable(rng.normal(size=shape).astype("float32")))
            grads.append(tf.constant(rng.normal(size=shape).astype("float32") * 1e-3))
    optimizer = make_optimizer()
    optimizer.build(variables)
    for _ in range(3):  # warm-up, compiling included
        optimizer.apply(grads, variables)
    _ = variables[-1].numpy()

    def timed() -> float:
        start = clock()
        for _ in range(calls):
            optimizer.apply(grads, variables)
        _ = variables[-1].numpy()  # wait for the last update
        return (clock() - start) / calls

    return timed


def _fit_timer(make_optimizer, steps: int, batch_size: int = 128):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(steps * batch_size, 784)).astype("float32")
    y = rng.integers(0, 10, size=steps * batch_size)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(512, "relu"),
            keras.layers.Dense(512, "relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        make_optimizer(),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)  # warm-up, tracing

    def timed() -> float:
        start = clock()
        model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0, shuffle=False)
        return (clock() - start) / steps

    return timed


def _table(title: str, timers: dict, repeats: int) -> None:
    samples = {name: [] for name in timers}
    for _ in range(repeats):
        for name, timed in timers.items():
            samples[name].append(timed())
    base = samples["Momentum"]
    print(f"\n{title}\n")
    print("| optimizer | median per step (ms) | / Momentum (median of the repeats) |")
    print("|---|---:|---:|")
    for name, times in samples.items():
        # The ratio within each repeat, then its median: a slow spell of the machine
        # during one repeat slows the optimizers of that repeat alike.
        ratio = statistics.median(t / b for t, b in zip(times, base))
        print(
            f"| {name} | {statistics.median(times) * 1e3:.2f} | {ratio:.2f}× |",
            flush=True,
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40, help="fit steps per repeat")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    args = parser.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]

    backend = keras.backend.backend()
    print(
        f"Keras {keras.__version__}, backend {backend}, {os.cpu_count()} CPU cores; "
        f"median of {args.repeats} repeats, {args.clock} clock"
    )
    if backend == "tensorflow":
        params = args.layers * (args.width**2 + args.width)
        _table(
            f"apply() on {params / 1e6:.2f}M parameters in {2 * args.layers} "
            f"variables, {args.calls} calls per repeat",
            {
                name: _apply_timer(make, args.layers, args.width, args.calls)
                for name, make in OPTIMIZERS.items()
            },
            args.repeats,
        )
    _table(
        f"model.fit, MLP 784-512-512-10, batch 128, {args.steps} steps per repeat",
        {name: _fit_timer(make, args.steps) for name, make in OPTIMIZERS.items()},
        args.repeats,
    )


if __name__ == "__main__":
    main()
